// The lean server of the peer protocol (h2_peer.h): gRPC's wire over
// HTTP/2, written with nghttp2 (HTTP/2, HPACK, flow control) on libevent
// loops. What a request gets is PeerService's decision, as on the gRPC
// server; this file only carries bytes.
//
// Threads: `io_threads` loops, each an event_base on its own thread owning
// its connections outright (no locks on the request path). Loop 0 also
// accepts and hands connections round-robin to the loops. Other threads talk
// to a loop only by posting a task (Loop::Post: a queue and an eventfd): a
// load thread posts the reply of a miss; Shutdown posts the drain.
//
// A request: HEADERS (:path, content-type, grpc-timeout, lcache-forwarded)
// and DATA (the prefixed message, buffered up to the size limit) arrive
// through nghttp2's callbacks into a Stream; at END_STREAM the stream is
// answered at once (errors, hits, health) or when its load completes. A
// reply is HEADERS, one DATA (the prefixed JSON) and trailers (grpc-status),
// or a trailers-only HEADERS for an error. A stream the client reset (or
// whose connection closed) before its load completed is gone from nghttp2:
// a load still queued for it is dropped (Stream::~Stream flags it), and the
// reply of one that ran finds no stream and is dropped.
//
// Limits (PeerServerOptions, docs/SECURITY.md), so that one client cannot
// hold the node's memory or descriptors: connections beyond max_connections
// are closed at accept; at the descriptor limit accepting pauses and backs
// off instead of spinning; each loop's sweep (every kSweepEvery) closes
// connections idle past idle_timeout (GOAWAY first) or without a preface
// after request_timeout, and resets requests not complete after
// request_timeout; request bytes held for incomplete requests are counted
// per connection and server-wide, and the request that would pass a limit is
// reset. After a burst of held bytes, memory is given back to the system
// (malloc_trim) once it has been freed.
//
// Shutdown: health turns NOT_SERVING, the listener closes, each connection
// gets GOAWAY (streams already received are still answered, new ones are
// refused, so gRPC clients retry them elsewhere) and closes when its last
// stream is done; after the grace the rest are closed.

#include <event2/event.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lcache/grpc_wire.h"
#include "lcache/h2_peer.h"
#include "peer/h2/event_loop.h"
#include "peer/h2/h2_peer_client_loops.h"
#include "peer/h2/h2_socket.h"
#include "peer/h2/tls.h"
#include "peer/peer_service.h"
#include "peer/warn_limiter.h"

namespace lcache {
namespace {

using internal::PeerReply;

// HTTP/2 settings: enough concurrent streams and window that a peer with
// many calls in flight is never throttled by flow control on loopback or LAN.
constexpr uint32_t kMaxConcurrentStreams = 1024;
constexpr int32_t kStreamWindow = 1 << 20;
constexpr int32_t kConnectionWindow = 16 << 20;
// How often each loop looks for idle connections and stalled requests.
constexpr absl::Duration kSweepEvery = absl::Seconds(1);
// Accepting again after the descriptor limit: the first wait, doubled up to the last.
constexpr absl::Duration kFirstAcceptBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxAcceptBackoff = absl::Seconds(1);
// Held bytes past which, once they are freed again, memory is trimmed.
constexpr size_t kTrimAfterBytes = size_t{8} << 20;

class H2PeerServer;
class Loop;

nghttp2_nv Header(std::string_view name, std::string_view value, uint8_t flags) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          flags};
}
// A header whose name and value outlive the submit call (static strings, or
// strings in the Stream, which nghttp2 keeps until the stream closes).
nghttp2_nv StaticHeader(std::string_view name, std::string_view value) {
  return Header(name, value, NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE);
}

struct Stream {
  // A stream that goes unanswered (reset by the client, or its connection
  // closed) tells its load that nobody will read the answer: the flag now,
  // and the group soon (a posted task: it may reset a peer call, whose end
  // answers streams of this very connection, which is being torn down).
  ~Stream();

  int32_t id = 0;
  std::string path;
  std::string content_type;
  bool forwarded = false;
  absl::Time deadline = absl::InfiniteFuture();
  std::string body;                                // the request body, up to the limit
  size_t body_bytes = 0;                           // the whole body's size, kept past the limit
  size_t held = 0;                                 // of body, counted against the buffer limits
  absl::Time began = absl::InfinitePast();         // its HEADERS arrived
  bool request_done = false;                       // END_STREAM arrived
  bool reset = false;                              // we reset it (a limit): ignore the rest
  bool answered = false;                           // a reply was submitted
  internal::CallerGone caller_gone;                // a miss's (PeerService::Get)
  Loop* loop = nullptr;                            // the connection's
  std::string out;                                 // the response's DATA (prefixed message)
  size_t sent = 0;                                 // of `out`, taken by nghttp2
  // The connection's open streams, for its destructor: nghttp2 does not
  // report the streams it drops with a deleted session.
  Stream* prev = nullptr;
  Stream* next = nullptr;
};

class Connection {
 public:
  Connection(H2PeerServer* server, Loop* loop, int fd, uint64_t id)
      : server_(server), loop_(loop), fd_(fd), id_(id) {}
  ~Connection();

  // False if it could not be set up (the fd is then closed by the destructor).
  bool Start(event_base* base, const nghttp2_session_callbacks* callbacks);
  // Sends GOAWAY: streams received so far are answered, new ones refused.
  void Drain();
  // Answers `stream_id` if it is still open.
  void Deliver(int32_t stream_id, PeerReply reply);
  // Writes what nghttp2 has to send. False: the connection is finished.
  bool Flush();
  // The sweep: resets requests begun before `stalled_before` and not
  // complete; false if the connection is to be closed now (no preface by
  // `stalled_before`); sends GOAWAY if it has been idle since `idle_before`.
  bool Sweep(absl::Time stalled_before, absl::Time idle_before);

  uint64_t id() const { return id_; }
  // Inside nghttp2_session_mem_recv: our callbacks run, and nghttp2 must not
  // be asked to send (a reply delivered now goes out when the read ends).
  bool reading() const { return reading_; }
  // Replies were submitted outside a read: Loop::FlushLater will write them.
  bool flush_pending = false;

  // nghttp2 callbacks (user_data is the Connection).
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* self);
  static int OnDataChunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                         size_t len, void* self);
  static int OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);
  static ssize_t ReadBody(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* flags, nghttp2_data_source* source, void*);

 private:
  static void OnEvent(evutil_socket_t, short what, void* self);
  // Reads what the socket has; false on EOF or error.
  bool Read();
  void Process(Stream* s);
  void Reply(Stream* s, PeerReply reply);
  void TlsFailed(const std::string& error);
  bool Trusted();
  // Counts `bytes` more held by `s`, false (nothing counted) if that would
  // pass the connection's or the server's limit.
  bool Hold(Stream* s, size_t bytes);
  // `s` holds nothing any more.
  void Release(Stream* s);
  // Resets `s` (a limit): frees what it holds and ignores the rest of it.
  void ResetStream(Stream* s, uint32_t error_code);
  // The client's address, for log lines (read at Start: once the client has
  // gone, the socket no longer knows it).
  std::string PeerAddress() const;
  std::string ReadPeerAddress() const;
  std::string_view ResponseContentType(const Stream& s) const;

  H2PeerServer* const server_;
  Loop* const loop_;
  const int fd_;
  const uint64_t id_;
  nghttp2_session* session_ = nullptr;
  event* read_event_ = nullptr;
  event* write_event_ = nullptr;
  std::string out_;  // bytes for the socket, from out_offset_ on
  size_t out_offset_ = 0;
  Stream* streams_ = nullptr;  // open streams, linked through Stream::next
  bool reading_ = false;
  size_t held_ = 0;  // the streams' held bytes
  absl::Time last_read_ = absl::Now();
  bool preface_done_ = false;  // the client's SETTINGS arrived
  bool going_away_ = false;    // GOAWAY sent (idle, or draining)
  SSL* ssl_ = nullptr;         // TLS; null: plaintext
  std::string peer_;           // host:port of the client
  // Whether requests marked forwarded are served as such (TLS: a client
  // certificate the CA signed; plaintext: everyone, as documented).
  bool trusted_ = true;
  bool trust_known_ = false;
};

// One event loop and the connections it owns. The loop is its own, or a
// peer client's (`shared`): then the client runs it, and the requests'
// peer calls are made and answered on the same thread. Shared-owned: a
// reply may still be on its way to it (from a peer call or a load) after
// the server has gone; it then finds no connection.
class Loop : public std::enable_shared_from_this<Loop> {
 public:
  Loop(H2PeerServer* server, const nghttp2_session_callbacks* callbacks,
       internal::EventLoop* shared)
      : server_(server),
        callbacks_(callbacks),
        owned_(shared == nullptr ? std::make_unique<internal::EventLoop>() : nullptr),
        loop_(shared == nullptr ? owned_.get() : shared) {}
  ~Loop();

  bool ok() const { return loop_->ok(); }
  bool shared() const { return owned_ == nullptr; }
  void Start() {
    if (owned_ != nullptr) owned_->Start();
  }
  // Stops the loop's thread if it is ours.
  void Stop() {
    if (owned_ != nullptr) owned_->Stop();
  }
  void Post(std::function<void()> task) { loop_->Post(std::move(task)); }
  bool InLoop() const { return loop_->InLoop(); }
  event_base* base() const { return loop_->base(); }

  // Loop thread only.
  void AddConnection(int fd);
  // Starts the sweep timer (on the loop's thread).
  void StartSweep();
  void Deliver(uint64_t connection, int32_t stream, PeerReply reply);
  void FlushLater(Connection* c);
  void Close(Connection* c);
  void BeginDrain();
  // Closes every connection: on the loop's thread, or once it has stopped.
  void CloseAll() {
    connections_.clear();
    closed_.clear();
    for (event** e : {&reap_event_, &flush_event_, &sweep_event_}) {
      if (*e != nullptr) event_free(*e);
      *e = nullptr;
    }
    to_flush_.clear();
    connection_count_.store(0, std::memory_order_release);
  }

  size_t connections() const { return connection_count_.load(std::memory_order_acquire); }

 private:
  static void OnReap(evutil_socket_t, short, void* self);
  static void OnFlush(evutil_socket_t, short, void* self);
  static void OnSweep(evutil_socket_t, short, void* self);

  H2PeerServer* const server_;
  const nghttp2_session_callbacks* const callbacks_;
  const std::unique_ptr<internal::EventLoop> owned_;  // null when shared
  internal::EventLoop* const loop_;

  // Loop thread only.
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> closed_;  // freed outside their callbacks
  // Frees closed_ once the callback running now has returned. An event of
  // ours rather than event_base_once: a shared base outlives this loop, and
  // must not keep a pending callback into it.
  event* reap_event_ = nullptr;
  std::vector<uint64_t> to_flush_;  // connections with replies to write (FlushLater)
  event* flush_event_ = nullptr;
  event* sweep_event_ = nullptr;
  bool draining_ = false;
  uint64_t next_id_ = 1;
  std::atomic<size_t> connection_count_{0};
};

class H2PeerServer final : public PeerServer {
 public:
  // With a client, serves on its loops (io_threads is then its count).
  H2PeerServer(const PeerServerOptions& options, int io_threads,
               std::shared_ptr<H2PeerClient> client);
  ~H2PeerServer() override;

  absl::Status Start(const PeerServerOptions& options);
  int port() const override { return port_; }
  void Shutdown(absl::Duration grace) override;

  internal::PeerService& service() { return service_; }
  size_t max_body_bytes() const { return service_.max_request_bytes() + wire::kGrpcPrefixBytes; }
  const PeerServerLimits& limits() const { return limits_; }
  const Loop* first_loop() const { return loops_.empty() ? nullptr : loops_[0].get(); }
  internal::WarnLimiter& warn() { return warn_; }
  // Server-wide held request bytes (Connection::Hold): false, nothing
  // counted, if `bytes` more would pass max_buffer_bytes.
  bool Hold(size_t bytes);
  void Release(size_t bytes) { held_.fetch_sub(bytes, std::memory_order_relaxed); }
  // Called by loop 0's sweep: gives memory back after a burst of held bytes.
  void TrimAfterBurst();
  internal::TlsContext* tls() const { return tls_.get(); }
  absl::Status ReloadTls() override {
    return tls_ != nullptr ? tls_->Reload() : absl::OkStatus();
  }
  // Called by a loop when a connection closed while draining.
  void ConnectionClosed() {
    std::lock_guard lock(idle_mu_);
    idle_cv_.notify_all();
  }

 private:
  static void OnAccept(evutil_socket_t fd, short, void* self);
  static void OnAcceptRetry(evutil_socket_t, short, void* self);
  size_t Connections() const;
  // accept() failed for want of descriptors or memory: stop watching the
  // listener for a while instead of failing on it in a loop.
  void PauseAccepting(int error);

  internal::PeerService service_;
  std::shared_ptr<internal::TlsContext> tls_;  // null: plaintext
  const PeerServerLimits limits_;
  internal::WarnLimiter warn_;
  std::atomic<size_t> held_{0};
  std::atomic<size_t> peak_held_{0};  // since the last trim
  const int io_threads_;
  const std::shared_ptr<H2PeerClient> client_;  // null: the loops are ours
  nghttp2_session_callbacks* callbacks_ = nullptr;
  std::vector<std::shared_ptr<Loop>> loops_;
  int listen_fd_ = -1;
  event* accept_event_ = nullptr;  // on loop 0
  size_t next_loop_ = 0;           // loop 0's thread only
  event* accept_retry_event_ = nullptr;  // loop 0: accepting again after a pause
  absl::Duration accept_backoff_ = kFirstAcceptBackoff;  // loop 0's thread only
  int port_ = 0;

  std::mutex idle_mu_;
  std::condition_variable idle_cv_;
  std::mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

// --- Stream -------------------------------------------------------------------

Stream::~Stream() {
  if (answered || caller_gone.flag == nullptr) return;
  caller_gone.flag->store(true, std::memory_order_relaxed);
  if (caller_gone.tell != nullptr) loop->Post(std::move(caller_gone.tell));
}

// --- Connection -------------------------------------------------------------

Connection::~Connection() {
  while (streams_ != nullptr) {
    Stream* s = streams_;
    streams_ = s->next;
    delete s;
  }
  server_->Release(held_);
  if (read_event_ != nullptr) event_free(read_event_);
  if (write_event_ != nullptr) event_free(write_event_);
  nghttp2_session_del(session_);
  SSL_free(ssl_);
  close(fd_);
}

bool Connection::Start(event_base* base, const nghttp2_session_callbacks* callbacks) {
  read_event_ = event_new(base, fd_, EV_READ | EV_PERSIST, &Connection::OnEvent, this);
  write_event_ = event_new(base, fd_, EV_WRITE, &Connection::OnEvent, this);
  if (read_event_ == nullptr || write_event_ == nullptr) return false;
  peer_ = ReadPeerAddress();
  if (internal::TlsContext* tls = server_->tls(); tls != nullptr) {
    ssl_ = tls->NewSsl(fd_);
    if (ssl_ == nullptr) return false;
    trusted_ = false;  // until a verified certificate is seen
  }
  if (nghttp2_session_server_new(&session_, callbacks, this) != 0) return false;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow) !=
          0) {
    return false;
  }
  event_add(read_event_, nullptr);
  return Flush();
}

void Connection::OnEvent(evutil_socket_t, short what, void* self) {
  auto* c = static_cast<Connection*>(self);
  if ((what & EV_READ) && !c->Read()) {
    c->loop_->Close(c);
    return;
  }
  if (!c->Flush()) c->loop_->Close(c);
}

bool Connection::Read() {
  reading_ = true;
  last_read_ = absl::Now();  // before: the streams this read begins take it as their start
  std::string error;
  const bool ok = internal::ReadIntoSession(fd_, ssl_, session_, &error);
  reading_ = false;
  if (!error.empty()) TlsFailed(error);
  return ok;
}

void Connection::TlsFailed(const std::string& error) {
  server_->warn().Count(internal::WarnLimiter::kTlsFailed, [&] {
    return absl::StrCat("lcache: TLS with ", PeerAddress(), " failed: ", error,
                        SSL_is_init_finished(ssl_) ? "" : " (a plaintext client?)");
  });
}

bool Connection::Trusted() {
  if (!trust_known_ && ssl_ != nullptr && SSL_is_init_finished(ssl_)) {
    trusted_ = internal::TlsContext::PeerVerified(ssl_);
    trust_known_ = true;
  }
  return trusted_;
}

bool Connection::Hold(Stream* s, size_t bytes) {
  if (held_ + bytes > server_->limits().max_connection_buffer_bytes || !server_->Hold(bytes)) {
    return false;
  }
  held_ += bytes;
  s->held += bytes;
  return true;
}

void Connection::Release(Stream* s) {
  held_ -= s->held;
  server_->Release(s->held);
  s->held = 0;
}

void Connection::ResetStream(Stream* s, uint32_t error_code) {
  s->reset = true;
  s->answered = true;  // nobody waits for a load of it
  Release(s);
  std::string().swap(s->body);
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, error_code);
}

std::string Connection::PeerAddress() const { return peer_; }

std::string Connection::ReadPeerAddress() const {
  sockaddr_storage addr = {};
  socklen_t len = sizeof addr;
  char host[NI_MAXHOST] = "?";
  char port[NI_MAXSERV] = "?";
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
  }
  return absl::StrCat(host, ":", port);
}

bool Connection::Sweep(absl::Time stalled_before, absl::Time idle_before) {
  if (!preface_done_ && last_read_ < stalled_before) {
    server_->warn().Count(internal::WarnLimiter::kIdleClosed, [&] {
      return absl::StrCat("lcache: closed a connection from ", PeerAddress(),
                          " that sent no HTTP/2 preface within the request timeout");
    });
    return false;
  }
  bool reset_any = false;
  for (Stream* s = streams_; s != nullptr; s = s->next) {
    if (s->request_done || s->reset || s->began >= stalled_before) continue;
    server_->warn().Count(internal::WarnLimiter::kRequestTimedOut, [&] {
      return absl::StrCat("lcache: reset a request from ", PeerAddress(),
                          " not complete within the request timeout");
    });
    ResetStream(s, NGHTTP2_CANCEL);
    reset_any = true;
  }
  if (streams_ == nullptr && !going_away_ && last_read_ < idle_before) {
    // Streams the client opens before it reads the GOAWAY are refused; a
    // gRPC client retries them on a new connection.
    going_away_ = true;
    Drain();  // closes the connection once the GOAWAY is out
    return true;
  }
  if (reset_any && !Flush()) loop_->Close(this);
  return true;
}

bool Connection::Flush() {
  std::string error;
  switch (internal::WriteFromSession(fd_, ssl_, session_, &out_, &out_offset_, &error)) {
    case internal::WriteResult::kFailed:
      if (!error.empty()) TlsFailed(error);
      return false;
    case internal::WriteResult::kBlocked:
      event_add(write_event_, nullptr);  // the rest when the socket can take it
      return true;
    case internal::WriteResult::kWantsRead:
      return true;  // the TLS handshake goes on when the client's next bytes come
    case internal::WriteResult::kWritten:
      break;
  }
  // Neither: GOAWAY went out (or came in) and no stream is left.
  return nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0;
}

void Connection::Drain() {
  going_away_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  if (!Flush()) loop_->Close(this);
}

int Connection::OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* c = static_cast<Connection*>(self);
  auto* s = new Stream();
  s->id = frame->hd.stream_id;
  s->began = c->last_read_;  // when the read that brought it began: no clock call per request
  s->loop = c->loop_;
  s->next = c->streams_;
  if (c->streams_ != nullptr) c->streams_->prev = s;
  c->streams_ = s;
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

int Connection::OnHeader(nghttp2_session* session, const nghttp2_frame* frame,
                         const uint8_t* name_bytes, size_t namelen, const uint8_t* value_bytes,
                         size_t valuelen, uint8_t, void* self) {
  auto* s =
      static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (s == nullptr || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  const std::string_view name(reinterpret_cast<const char*>(name_bytes), namelen);
  const std::string_view value(reinterpret_cast<const char*>(value_bytes), valuelen);
  if (name == ":path") {
    s->path = value;
  } else if (name == "content-type") {
    s->content_type = value;
  } else if (name == "grpc-timeout") {
    if (std::optional<absl::Duration> t = wire::ParseGrpcTimeout(value)) {
      s->deadline = absl::Now() + *t;
    }
  } else if (name == kForwardedMetadataKey) {
    s->forwarded = static_cast<Connection*>(self)->Trusted();
  }
  return 0;
}

int Connection::OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                            const uint8_t* data, size_t len, void* self) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (s == nullptr || s->reset) return 0;
  auto* c = static_cast<Connection*>(self);
  s->body_bytes += len;
  // Past the limit the bytes are counted, not kept: the answer is an error
  // that says how large the message was.
  if (s->body_bytes > c->server_->max_body_bytes()) {
    c->Release(s);
    std::string().swap(s->body);
    return 0;
  }
  if (!c->Hold(s, len)) {
    c->server_->warn().Count(internal::WarnLimiter::kBufferFull, [&] {
      return absl::StrCat("lcache: reset a request from ", c->PeerAddress(),
                          ": request bytes held would pass the connection's (",
                          c->server_->limits().max_connection_buffer_bytes,
                          ") or the server's (", c->server_->limits().max_buffer_bytes, ") limit");
    });
    c->ResetStream(s, NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
  }
  s->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int Connection::OnFrame(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  auto* c = static_cast<Connection*>(self);
  if (frame->hd.type == NGHTTP2_SETTINGS) c->preface_done_ = true;
  const bool request_done = (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
                            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (!request_done) return 0;
  auto* s =
      static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (s == nullptr || s->reset) return 0;
  s->request_done = true;
  if (!s->answered) c->Process(s);
  // The request is read: it holds nothing against the limits any more.
  c->Release(s);
  std::string().swap(s->body);
  return 0;
}

int Connection::OnStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t, void* self) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (s == nullptr) return 0;
  auto* c = static_cast<Connection*>(self);
  c->Release(s);
  if (s->prev != nullptr) s->prev->next = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  if (c->streams_ == s) c->streams_ = s->next;
  nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
  delete s;
  return 0;
}

ssize_t Connection::ReadBody(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                             size_t length, uint32_t* flags, nghttp2_data_source* source, void*) {
  auto* s = static_cast<Stream*>(source->ptr);
  const size_t n = std::min(length, s->out.size() - s->sent);
  std::memcpy(buf, s->out.data() + s->sent, n);
  s->sent += n;
  if (s->sent == s->out.size()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    const nghttp2_nv trailers[] = {StaticHeader("grpc-status", "0")};
    if (nghttp2_submit_trailer(session, stream_id, trailers, std::size(trailers)) != 0) {
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
    }
  }
  return static_cast<ssize_t>(n);
}

std::string_view Connection::ResponseContentType(const Stream& s) const {
  // Answer in the client's own subtype (application/grpc+json from a Go
  // client), as Go's server does.
  if (s.content_type.starts_with("application/grpc")) return s.content_type;
  return "application/grpc";
}

void Connection::Process(Stream* s) {
  if (!s->content_type.starts_with("application/grpc")) {
    s->answered = true;
    const nghttp2_nv headers[] = {StaticHeader(":status", "415")};
    nghttp2_submit_response(session_, s->id, headers, std::size(headers), nullptr);
    return;
  }
  const bool get = s->path == kGetMethod;
  const bool mutation = internal::PeerService::IsMutationMethod(s->path);
  const bool peek = s->path == kPeekMethod;
  if (!get && !mutation && !peek && s->path != kHealthCheckMethod) {
    Reply(s, PeerReply::Error(absl::StatusCode::kUnimplemented,
                              absl::StrCat("lcache: unknown method ", s->path,
                                           "; this server serves ", internal::kServedMethods)));
    return;
  }
  if (s->body_bytes > 4 * server_->max_body_bytes()) {
    // As gRPC C++ does for a message far over its limit.
    Reply(s, PeerReply::Error(
                 absl::StatusCode::kResourceExhausted,
                 absl::StrCat("lcache: request of ", s->body_bytes - wire::kGrpcPrefixBytes,
                              " bytes is over 4 times the limit of ",
                              server_->service().max_request_bytes())));
    return;
  }
  if (s->body_bytes > server_->max_body_bytes()) {
    Reply(s, PeerReply::Error(
                 absl::StatusCode::kInvalidArgument,
                 absl::StrCat("lcache: request of ", s->body_bytes - wire::kGrpcPrefixBytes,
                              " bytes is over the limit of ",
                              server_->service().max_request_bytes())));
    return;
  }
  absl::StatusOr<std::string_view> message = wire::SingleGrpcMessage(s->body);
  if (!message.ok()) {
    Reply(s, PeerReply::Error(absl::StatusCode::kInvalidArgument,
                              std::string(message.status().message())));
    return;
  }
  if (peek) {
    Reply(s, server_->service().Peek(*message));
    return;
  }
  if (!get && !mutation) {
    Reply(s, server_->service().HealthCheck(*message));
    return;
  }
  // A miss (or a mutation) is answered by whichever thread ends it: this
  // loop itself when it was a peer call made from here (or ended at once),
  // a load thread or another loop otherwise.
  auto reply_later = [loop = loop_->shared_from_this(), connection = id_,
                      stream = s->id](PeerReply r) {
    if (loop->InLoop()) {
      loop->Deliver(connection, stream, std::move(r));
    } else {
      loop->Post([loop, connection, stream, r = std::move(r)]() mutable {
        loop->Deliver(connection, stream, std::move(r));
      });
    }
  };
  std::optional<PeerReply> reply =
      mutation ? server_->service().Mutate(s->path, *message, s->forwarded, s->deadline,
                                           std::move(reply_later))
               : server_->service().Get(*message, s->forwarded, s->deadline,
                                        std::move(reply_later), &s->caller_gone);
  if (reply) Reply(s, *std::move(reply));
}

void Connection::Deliver(int32_t stream_id, PeerReply reply) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  if (s == nullptr) return;  // the client gave up on it
  Reply(s, std::move(reply));
}

void Connection::Reply(Stream* s, PeerReply reply) {
  s->answered = true;
  const std::string_view content_type = ResponseContentType(*s);
  if (reply.code != absl::StatusCode::kOk) {
    // Trailers-only: one HEADERS frame that ends the stream.
    const std::string code = absl::StrCat(static_cast<int>(reply.code));
    const std::string message = wire::PercentEncode(reply.message);
    const nghttp2_nv headers[] = {
        StaticHeader(":status", "200"),
        StaticHeader("content-type", content_type),
        Header("grpc-status", code, NGHTTP2_NV_FLAG_NO_COPY_NAME),
        Header("grpc-message", message, NGHTTP2_NV_FLAG_NO_COPY_NAME),
    };
    nghttp2_submit_response(session_, s->id, headers, std::size(headers), nullptr);
    return;
  }
  s->out.reserve(wire::kGrpcPrefixBytes + reply.body.size());
  wire::AppendGrpcMessage(reply.body, &s->out);
  const nghttp2_nv headers[] = {StaticHeader(":status", "200"),
                                StaticHeader("content-type", content_type)};
  nghttp2_data_provider body;
  body.source.ptr = s;
  body.read_callback = &Connection::ReadBody;
  nghttp2_submit_response(session_, s->id, headers, std::size(headers), &body);
}

// --- Loop ---------------------------------------------------------------------

Loop::~Loop() {
  // Before the connections go: their events are on its base. A shared loop
  // had them closed on its thread by Shutdown.
  Stop();
  CloseAll();
}

void Loop::AddConnection(int fd) {
  if (draining_) {
    close(fd);
    return;
  }
  const uint64_t id = next_id_++;
  auto c = std::make_unique<Connection>(server_, this, fd, id);
  if (!c->Start(base(), callbacks_)) return;  // the destructor closes fd
  connections_.emplace(id, std::move(c));
  connection_count_.fetch_add(1, std::memory_order_release);
}

void Loop::StartSweep() {
  sweep_event_ = event_new(base(), -1, EV_PERSIST, &Loop::OnSweep, this);
  if (sweep_event_ == nullptr) return;
  const timeval every = absl::ToTimeval(kSweepEvery);
  event_add(sweep_event_, &every);
}

void Loop::OnSweep(evutil_socket_t, short, void* self) {
  auto* loop = static_cast<Loop*>(self);
  const absl::Time now = absl::Now();
  const PeerServerLimits& limits = loop->server_->limits();
  std::vector<Connection*> all;
  all.reserve(loop->connections_.size());
  for (auto& [id, c] : loop->connections_) all.push_back(c.get());
  for (Connection* c : all) {
    if (!c->Sweep(now - limits.request_timeout, now - limits.idle_timeout)) loop->Close(c);
  }
  if (loop == loop->server_->first_loop()) loop->server_->TrimAfterBurst();
}

void Loop::Deliver(uint64_t connection, int32_t stream, PeerReply reply) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  Connection* c = it->second.get();
  c->Deliver(stream, std::move(reply));
  if (c->reading()) return;  // Connection::OnEvent flushes when the read ends
  FlushLater(c);
}

// The replies of one flight reach a connection one by one (every waiter's
// callback), and a write per reply would cost a send() each: they are
// written together, once the callbacks running now have returned.
void Loop::FlushLater(Connection* c) {
  if (c->flush_pending) return;
  c->flush_pending = true;
  to_flush_.push_back(c->id());
  if (to_flush_.size() > 1) return;
  if (flush_event_ == nullptr) flush_event_ = event_new(base(), -1, 0, &Loop::OnFlush, this);
  if (flush_event_ != nullptr) {
    event_active(flush_event_, EV_TIMEOUT, 1);
  } else {
    OnFlush(-1, 0, this);
  }
}

void Loop::OnFlush(evutil_socket_t, short, void* self) {
  auto* loop = static_cast<Loop*>(self);
  std::vector<uint64_t> ids;
  ids.swap(loop->to_flush_);
  for (uint64_t id : ids) {
    auto it = loop->connections_.find(id);
    if (it == loop->connections_.end()) continue;
    Connection* c = it->second.get();
    c->flush_pending = false;
    if (!c->Flush()) loop->Close(c);
  }
}

void Loop::Close(Connection* c) {
  auto it = connections_.find(c->id());
  if (it == connections_.end()) return;
  // Freed after the current callback returns: `c` may be on the stack.
  closed_.push_back(std::move(it->second));
  connections_.erase(it);
  if (closed_.size() == 1) {
    if (reap_event_ == nullptr) reap_event_ = event_new(base(), -1, 0, &Loop::OnReap, this);
    if (reap_event_ != nullptr) event_active(reap_event_, EV_TIMEOUT, 1);
  }
  connection_count_.fetch_sub(1, std::memory_order_release);
  if (draining_) server_->ConnectionClosed();
}

void Loop::OnReap(evutil_socket_t, short, void* self) { static_cast<Loop*>(self)->closed_.clear(); }

void Loop::BeginDrain() {
  draining_ = true;
  std::vector<Connection*> all;
  for (auto& [id, c] : connections_) all.push_back(c.get());
  for (Connection* c : all) c->Drain();
  server_->ConnectionClosed();  // in case there was none
}

// --- H2PeerServer ---------------------------------------------------------------

absl::StatusOr<int> Listen(const std::string& address) {
  const auto fail = [&](absl::string_view why) {
    return absl::UnavailableError(absl::StrCat("lcache: cannot listen on \"", address, "\" (", why,
                                               "; expected a free host:port, e.g. "
                                               "127.0.0.1:9001 or 0.0.0.0:0)"));
  };
  const std::optional<wire::HostPort> host_port = wire::SplitHostPort(address);
  if (!host_port) return fail("no port");
  const std::string& host = host_port->host;
  const std::string& port = host_port->port;
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return fail(gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const int on = 1;
    // SO_REUSEADDR only (rebinding after a restart); no SO_REUSEPORT, so a
    // port another process serves is an error, not a silent share.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0) return fd;
    last_error = std::strerror(errno);
    close(fd);
  }
  return fail(last_error);
}

H2PeerServer::H2PeerServer(const PeerServerOptions& options, int io_threads,
                           std::shared_ptr<H2PeerClient> client)
    : service_(options),
      limits_(options.limits),
      warn_(options.warn, absl::Seconds(10)),
      io_threads_(io_threads),
      client_(std::move(client)) {
  nghttp2_session_callbacks_new(&callbacks_);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks_, &Connection::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks_, &Connection::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks_, &Connection::OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks_, &Connection::OnFrame);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks_, &Connection::OnStreamClose);
}

H2PeerServer::~H2PeerServer() {
  Shutdown(absl::ZeroDuration());
  nghttp2_session_callbacks_del(callbacks_);
}

absl::Status H2PeerServer::Start(const PeerServerOptions& options) {
  if (options.tls) {
    absl::StatusOr<std::shared_ptr<internal::TlsContext>> tls = internal::TlsContext::Create(
        internal::TlsContext::Side::kServer, *options.tls, options.warn);
    if (!tls.ok()) {
      std::lock_guard lock(shutdown_mu_);
      shut_down_ = true;
      service_.Stop(absl::Now());
      return tls.status();
    }
    tls_ = *std::move(tls);
  }
  const std::string& address = options.address;
  absl::StatusOr<int> fd = Listen(address);
  if (!fd.ok()) {
    std::lock_guard lock(shutdown_mu_);
    shut_down_ = true;
    service_.Stop(absl::Now());
    return fd.status();
  }
  listen_fd_ = *fd;
  sockaddr_storage bound = {};
  socklen_t len = sizeof bound;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const std::vector<internal::EventLoop*> shared =
      client_ != nullptr ? internal::H2PeerClientLoops(*client_)
                         : std::vector<internal::EventLoop*>(io_threads_, nullptr);
  for (internal::EventLoop* event_loop : shared) {
    loops_.push_back(std::make_shared<Loop>(this, callbacks_, event_loop));
    if (!loops_.back()->ok()) {
      Shutdown(absl::ZeroDuration());
      return absl::InternalError("lcache: cannot create an event loop");
    }
  }
  const auto listen = [this] {
    accept_event_ = event_new(loops_[0]->base(), listen_fd_, EV_READ | EV_PERSIST,
                              &H2PeerServer::OnAccept, this);
    accept_retry_event_ = event_new(loops_[0]->base(), -1, 0, &H2PeerServer::OnAcceptRetry, this);
    if (accept_event_ != nullptr) event_add(accept_event_, nullptr);
  };
  if (client_ == nullptr) {
    listen();  // our loops do not run yet
    for (auto& loop : loops_) {
      loop->StartSweep();
      loop->Start();
    }
  } else {
    // The client's loops already run, and a libevent base is not thread-safe
    // here: the events are added on each loop's own thread.
    std::vector<std::promise<void>> added(loops_.size());
    for (size_t i = 0; i < loops_.size(); ++i) {
      loops_[i]->Post([&, i] {
        if (i == 0) listen();
        loops_[i]->StartSweep();
        added[i].set_value();
      });
    }
    for (auto& a : added) a.get_future().wait();
  }
  if (accept_event_ == nullptr) {
    Shutdown(absl::ZeroDuration());
    return absl::InternalError("lcache: cannot watch the listening socket");
  }
  return absl::OkStatus();
}

bool H2PeerServer::Hold(size_t bytes) {
  const size_t before = held_.fetch_add(bytes, std::memory_order_relaxed);
  if (before + bytes > limits_.max_buffer_bytes) {
    held_.fetch_sub(bytes, std::memory_order_relaxed);
    return false;
  }
  size_t peak = peak_held_.load(std::memory_order_relaxed);
  while (before + bytes > peak &&
         !peak_held_.compare_exchange_weak(peak, before + bytes, std::memory_order_relaxed)) {
  }
  return true;
}

void H2PeerServer::TrimAfterBurst() {
  // Request bodies are small allocations, served from malloc's arenas, which
  // keep freed memory: without a trim, an attack's peak would stay resident.
  const size_t held = held_.load(std::memory_order_relaxed);
  const size_t peak = peak_held_.load(std::memory_order_relaxed);
  if (peak < kTrimAfterBytes || held > peak / 8) return;
  peak_held_.store(held, std::memory_order_relaxed);
  malloc_trim(0);
}

size_t H2PeerServer::Connections() const {
  size_t n = 0;
  for (const auto& loop : loops_) n += loop->connections();
  return n;
}

void H2PeerServer::PauseAccepting(int error) {
  warn_.Count(internal::WarnLimiter::kAcceptFailed, [&] {
    return absl::StrCat("lcache: cannot accept connections (", std::strerror(error),
                        "); accepting again in ", absl::FormatDuration(accept_backoff_),
                        ", backing off up to ", absl::FormatDuration(kMaxAcceptBackoff));
  });
  if (accept_event_ == nullptr || accept_retry_event_ == nullptr) return;
  event_del(accept_event_);
  const timeval wait = absl::ToTimeval(accept_backoff_);
  event_add(accept_retry_event_, &wait);
  accept_backoff_ = std::min(accept_backoff_ * 2, kMaxAcceptBackoff);
}

void H2PeerServer::OnAcceptRetry(evutil_socket_t, short, void* self) {
  auto* server = static_cast<H2PeerServer*>(self);
  if (server->accept_event_ != nullptr) event_add(server->accept_event_, nullptr);
}

void H2PeerServer::OnAccept(evutil_socket_t listen_fd, short, void* self) {
  auto* server = static_cast<H2PeerServer*>(self);
  while (true) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      if (error == EINTR || error == ECONNABORTED) continue;
      if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        server->PauseAccepting(error);
      }
      return;  // EAGAIN: all taken
    }
    server->accept_backoff_ = kFirstAcceptBackoff;
    if (server->Connections() >= static_cast<size_t>(server->limits_.max_connections)) {
      close(fd);
      server->warn_.Count(internal::WarnLimiter::kConnectionRefused, [&] {
        return absl::StrCat("lcache: refused a connection: ", server->limits_.max_connections,
                            " are open (the limit)");
      });
      continue;
    }
    const int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    Loop* loop = server->loops_[server->next_loop_++ % server->loops_.size()].get();
    if (loop == server->loops_[0].get()) {
      loop->AddConnection(fd);
    } else {
      loop->Post([loop, fd] { loop->AddConnection(fd); });
    }
  }
}

void H2PeerServer::Shutdown(absl::Duration grace) {
  std::lock_guard lock(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  service_.SetDraining();
  const absl::Time deadline = absl::Now() + grace;
  service_.SkipLoadsAfter(deadline);
  if (!loops_.empty()) {
    Loop* first = loops_[0].get();
    first->Post([this] {
      if (accept_event_ != nullptr) event_free(accept_event_);
      accept_event_ = nullptr;
      if (accept_retry_event_ != nullptr) event_free(accept_retry_event_);
      accept_retry_event_ = nullptr;
      close(listen_fd_);
      listen_fd_ = -1;
    });
    for (auto& loop : loops_) loop->Post([l = loop.get()] { l->BeginDrain(); });
    std::unique_lock idle(idle_mu_);
    idle_cv_.wait_until(idle, absl::ToChronoTime(deadline), [this] {
      for (auto& loop : loops_) {
        if (loop->connections() != 0) return false;
      }
      return true;
    });
  }
  // The grace is over: close what is left, so that its clients see their
  // calls fail now rather than when a stuck getter returns. Load threads may
  // still post replies: the loops exist (stopped) until they are joined. A
  // shared loop keeps running for its client: its connections are closed on
  // its thread, and replies still on their way find none.
  for (auto& loop : loops_) {
    if (!loop->shared()) {
      loop->Stop();
      loop->CloseAll();
      continue;
    }
    std::mutex mu;
    std::condition_variable cv;
    bool closed = false;
    loop->Post([&, l = loop.get()] {
      l->CloseAll();
      std::lock_guard lock(mu);
      closed = true;
      cv.notify_one();
    });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return closed; });
  }
  service_.Stop(deadline);
  if (accept_event_ != nullptr) event_free(accept_event_);
  accept_event_ = nullptr;
  if (accept_retry_event_ != nullptr) event_free(accept_retry_event_);
  accept_retry_event_ = nullptr;
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  loops_.clear();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerServer>> StartH2PeerServer(PeerServerOptions options,
                                                              int io_threads) {
  if (absl::Status s = internal::ValidatePeerServerOptions(options); !s.ok()) return s;
  if (io_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: io_threads must be >= 1, got ", io_threads));
  }
  auto server = std::make_unique<H2PeerServer>(options, io_threads, nullptr);
  if (absl::Status s = server->Start(options); !s.ok()) return s;
  return server;
}

absl::StatusOr<std::unique_ptr<PeerServer>> StartH2PeerServer(
    PeerServerOptions options, std::shared_ptr<H2PeerClient> client) {
  if (absl::Status s = internal::ValidatePeerServerOptions(options); !s.ok()) return s;
  if (client == nullptr) {
    return absl::InvalidArgumentError("lcache: StartH2PeerServer: the client is null");
  }
  const int io_threads = static_cast<int>(internal::H2PeerClientLoops(*client).size());
  auto server = std::make_unique<H2PeerServer>(options, io_threads, std::move(client));
  if (absl::Status s = server->Start(options); !s.ok()) return s;
  return server;
}

}  // namespace lcache
