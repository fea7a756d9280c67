#include "peer/h2/h2_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lcache/grpc_wire.h"
#include "lcache/peers.h"
#include "peer/h2/event_loop.h"
#include "peer/h2/h2_socket.h"
#include "peer/h2/round_trips.h"
#include "peer/h2/tls.h"

namespace lcache::internal {
namespace {

constexpr int32_t kStreamWindow = 1 << 20;
constexpr int32_t kConnectionWindow = 16 << 20;
// Responses larger than this fail the call (RESOURCE_EXHAUSTED): a bound on
// what one misbehaving peer can make us buffer.
constexpr size_t kMaxResponseBytes = 256 << 20;
// A connection stops opening streams this close to HTTP/2's 2^31 stream
// ids, and is replaced once its last stream is done.
constexpr int32_t kLastStreamId = (1 << 30);
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);
// Liveness. A connect that has not completed in kConnectTimeout is given up
// (a partitioned peer's SYNs back off for seconds; a new connect after the
// heal gets through at once). A ready connection on which a call timed out,
// or which has read nothing for kIdlePing, is sent a PING; if nothing at all
// comes back within kPingTimeout, the connection is dead (a peer stopped or
// cut off, TCP retransmitting into the void): its calls fail UNAVAILABLE now
// rather than at their deadlines, and the next call opens a new connection
// without waiting behind the dead one's TCP backoff.
constexpr absl::Duration kConnectTimeout = absl::Seconds(1);
constexpr absl::Duration kPingTimeout = absl::Seconds(1);
constexpr absl::Duration kIdlePing = absl::Seconds(10);
// Round trips (round_trips.h): a connection on which calls go out is PINGed
// at most this often, to know its usual round trip and notice a slow link.
// The PING goes out with a call, and only once the server has sent an
// answer since the last one: gRPC servers (C++ and Go) count a PING that
// follows no data of theirs as a strike, and close the connection after
// three (too_many_pings). Its opaque data tells its answer from a liveness
// PING's.
constexpr absl::Duration kRoundTripEvery = absl::Seconds(1);
constexpr uint8_t kRoundTripOpaque[8] = {'l', 'c', 'a', 'c', 'h', 'e', 'r', 't'};
// Call records kept for reuse: about the most calls a client has in flight;
// beyond that, finished ones are freed.
constexpr size_t kMaxFreeCalls = 1024;
// A recycled call keeps its buffers up to this size, so that one large
// response is not held for the client's lifetime.
constexpr size_t kMaxKeptBufferBytes = 64 << 10;

nghttp2_nv Header(std::string_view name, std::string_view value) {
  // Names and values live in the Call, which outlives the submit.
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

}  // namespace

// nghttp2's allocations (a stream, its queued frames, header buffers: about
// four per call) come in batches as large as the calls in flight, which is
// more than glibc's per-thread cache keeps per size, so most went to its
// slower paths. This keeps freed blocks of up to 1 KiB in free lists by
// 64-byte class, up to a bound per class, for the sessions of one client,
// all on its loop thread.
class SessionMemory {
 public:
  SessionMemory()
      : mem_{this, &SessionMemory::Malloc, &SessionMemory::Free, &SessionMemory::Calloc,
             &SessionMemory::Realloc} {}
  ~SessionMemory() {
    for (std::vector<void*>& list : free_) {
      for (void* block : list) std::free(block);
    }
  }
  SessionMemory(const SessionMemory&) = delete;
  SessionMemory& operator=(const SessionMemory&) = delete;

  nghttp2_mem* mem() { return &mem_; }

 private:
  static constexpr size_t kClassBytes = 64;
  static constexpr size_t kClasses = 16;  // blocks up to 1 KiB
  static constexpr size_t kMaxFreePerClass = 512;
  static constexpr uint32_t kLarge = kClasses;  // class of a block malloc'ed as is
  // Before each block: its class, and for a large block its size. 16 bytes,
  // so that the block keeps malloc's alignment.
  struct alignas(16) Header {
    uint32_t size_class;
    uint64_t size;
  };

  void* Allocate(size_t size) {
    const size_t c = size == 0 ? 0 : (size - 1) / kClassBytes;
    Header* h;
    if (c >= kClasses) {
      h = static_cast<Header*>(std::malloc(sizeof(Header) + size));
      if (h == nullptr) return nullptr;
      h->size_class = kLarge;
      h->size = size;
    } else if (!free_[c].empty()) {
      h = static_cast<Header*>(free_[c].back());
      free_[c].pop_back();
    } else {
      h = static_cast<Header*>(std::malloc(sizeof(Header) + (c + 1) * kClassBytes));
      if (h == nullptr) return nullptr;
      h->size_class = static_cast<uint32_t>(c);
    }
    return h + 1;
  }
  void Release(void* p) {
    if (p == nullptr) return;
    Header* h = static_cast<Header*>(p) - 1;
    if (h->size_class == kLarge || free_[h->size_class].size() >= kMaxFreePerClass) {
      std::free(h);
      return;
    }
    free_[h->size_class].push_back(h);
  }
  static size_t Capacity(void* p) {
    const Header* h = static_cast<Header*>(p) - 1;
    return h->size_class == kLarge ? h->size : (h->size_class + 1) * kClassBytes;
  }

  static void* Malloc(size_t size, void* self) {
    return static_cast<SessionMemory*>(self)->Allocate(size);
  }
  static void Free(void* p, void* self) { static_cast<SessionMemory*>(self)->Release(p); }
  static void* Calloc(size_t n, size_t size, void* self) {
    if (size != 0 && n > SIZE_MAX / size) return nullptr;
    void* p = static_cast<SessionMemory*>(self)->Allocate(n * size);
    if (p != nullptr) std::memset(p, 0, n * size);
    return p;
  }
  static void* Realloc(void* p, size_t size, void* self) {
    auto* m = static_cast<SessionMemory*>(self);
    if (p == nullptr) return m->Allocate(size);
    const size_t capacity = Capacity(p);
    if (size <= capacity && (size > capacity / 2 || capacity <= kClassBytes)) return p;
    void* q = m->Allocate(size);
    if (q == nullptr) return nullptr;
    std::memcpy(q, p, std::min(size, capacity));
    m->Release(p);
    return q;
  }

  nghttp2_mem mem_;
  std::vector<void*> free_[kClasses];  // loop thread only
};

// Links of an intrusive, circular list: a call leaves whichever list holds
// it in O(1), without knowing which.
struct CallLink {
  CallLink* prev = nullptr;
  CallLink* next = nullptr;
};

// One call, from Call() until its `done` has run; then recycled (Impl::Release),
// keeping its strings' capacity for the next call.
struct PendingCall : CallLink {
  bool linked() const { return next != nullptr; }  // unfinished

  H2Client::Connection* connection = nullptr;
  std::string path;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::string timeout_header;
  absl::Time deadline;
  absl::Duration budget;   // deadline - start: less than `timeout` when the caller's came first
  absl::Duration timeout;  // CallOptions::timeout
  std::string request;  // prefixed
  size_t sent = 0;
  H2Client::Done done;
  uint64_t serial = 0;    // > 0: a CallHandle names it
  int32_t stream_id = 0;  // > 0: open on the wire
  bool resent = false;    // refused once (REFUSED_STREAM) and sent again

  int http_status = 0;
  std::string grpc_status;
  std::string grpc_message;
  std::string body;
};

// Calls ordered by deadline, earliest first (equal deadlines in the order
// they came).
class CallList {
 public:
  CallList() { head_.prev = head_.next = &head_; }
  CallList(const CallList&) = delete;
  CallList& operator=(const CallList&) = delete;

  bool empty() const { return head_.next == &head_; }
  PendingCall* front() const { return static_cast<PendingCall*>(head_.next); }
  // Whether `call` is on this list (compares addresses only: `call` may be
  // gone). O(calls); for the rare Cancel.
  bool Contains(const void* call) const {
    for (const CallLink* l = head_.next; l != &head_; l = l->next) {
      if (l == call) return true;
    }
    return false;
  }

  // After every call whose deadline is not later: O(1) when deadlines come
  // in order, as they do on a connection whose calls share one timeout.
  void Insert(PendingCall* call) {
    CallLink* after = head_.prev;
    while (after != &head_ && static_cast<PendingCall*>(after)->deadline > call->deadline) {
      after = after->prev;
    }
    call->prev = after;
    call->next = after->next;
    after->next->prev = call;
    after->next = call;
  }
  static void Remove(PendingCall* call) {
    call->prev->next = call->next;
    call->next->prev = call->prev;
    call->prev = call->next = nullptr;
  }
  // Moves the calls from the front while `take` holds to the (empty) `to`.
  template <typename Take>
  void MoveFrontTo(CallList* to, Take take) {
    CallLink* last = &head_;
    while (last->next != &head_ && take(static_cast<PendingCall*>(last->next))) last = last->next;
    if (last == &head_) return;
    CallLink* first = head_.next;
    head_.next = last->next;
    last->next->prev = &head_;
    first->prev = &to->head_;
    last->next = &to->head_;
    to->head_.next = first;
    to->head_.prev = last;
  }

 private:
  CallLink head_;
};

class H2Client::Connection : public std::enable_shared_from_this<H2Client::Connection> {
 public:
  Connection(Impl* client, std::string address) : client_(client), address_(std::move(address)) {}
  ~Connection() { Disconnect(); }

  // Loop thread only, from here on. `now`: about now, for the call's
  // grpc-timeout (saves reading the clock again).
  void Start(PendingCall* call, absl::Time now);
  // Fails every call with `status` and closes the socket.
  void Fail(const absl::Status& status);
  // Runs the call's `done` (once: a finished call is ignored) and recycles
  // the call. `message` may point into the call's body.
  void Finish(PendingCall* call, absl::Status status, std::string_view message = {});
  // For good: fails every call with `status`, and the calls made on it from
  // now on with CANCELLED.
  void Close(const absl::Status& status);
  // Writes what is pending (outside nghttp2's callbacks); fails every call if
  // the connection broke.
  void FlushOrFail() {
    if (!Flush()) {
      Fail(Lost());
    }
  }
  bool closed() const { return closed_; }
  bool flush_pending = false;  // on Impl::to_flush
  // Cancels `call` if it is still one of this connection's, the same call
  // (serial) and not finished. Loop thread only.
  void Cancel(const void* call, uint64_t serial);
  const std::string& address() const { return address_; }

 private:
  enum class State { kIdle, kConnecting, kReady };

  void Connect();
  void OnConnected();
  // Sends a PING unless one is out, and arms the liveness timer for its answer.
  void Ping(absl::Time now);
  void ArmLiveness(absl::Duration after);
  static void OnLiveness(evutil_socket_t, short, void* self);
  void Submit(PendingCall* call, absl::Time now);
  // Arms the timer for `deadline` if it is armed for later (or not at all).
  void ArmFor(absl::Time deadline, absl::Time now);
  // The call on `stream_id`, or null. The last one found is remembered: a
  // response's frames come one after the other.
  PendingCall* CallOf(nghttp2_session* session, int32_t stream_id) {
    if (stream_id != found_stream_id_) {
      found_stream_id_ = stream_id;
      found_call_ =
          static_cast<PendingCall*>(nghttp2_session_get_stream_user_data(session, stream_id));
    }
    return found_call_;
  }
  // The stream is gone from the wire (closed, reset, or the session ended).
  void StreamEnded(PendingCall* call) {
    if (call->stream_id > 0) --streams_;
    call->stream_id = 0;
  }
  bool Read();
  // Writes what nghttp2 has; false if the connection broke.
  bool Flush();
  void Disconnect();
  // Why the connection broke: "lost", or what TLS said.
  absl::Status Lost() const;
  // After a stream closed: replace a connection out of stream ids.
  void MaybeRecycle();

  static void OnSocket(evutil_socket_t, short what, void* self);
  static void OnDeadline(evutil_socket_t, short, void* self);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* self);
  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);
  static int OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int OnFrameSent(nghttp2_session*, const nghttp2_frame* frame, void* self);
  // Submits a PING: a timed one (round_trips.h) unless one is out already.
  // Whether nghttp2 took it.
  bool SubmitPing();
  static ssize_t ReadRequest(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                             uint32_t* flags, nghttp2_data_source* source, void*);

  Impl* const client_;
  const std::string address_;
  State state_ = State::kIdle;
  bool closed_ = false;
  bool recycle_ = false;
  bool reading_ = false;  // inside nghttp2_session_mem_recv (our callbacks run)
  bool writing_ = false;  // inside nghttp2_session_mem_send (OnStreamClose may run)
  int fd_ = -1;
  SSL* ssl_ = nullptr;     // TLS (the client's context); null: plaintext
  std::string tls_error_;  // why TLS failed on this connection, if it did
  nghttp2_session* session_ = nullptr;
  event* read_event_ = nullptr;
  event* write_event_ = nullptr;
  std::string out_;
  size_t out_offset_ = 0;
  absl::Time retry_at_ = absl::InfinitePast();
  absl::Duration backoff_ = kFirstBackoff;
  std::string last_error_;
  CallList calls_;                     // every unfinished call, by deadline
  size_t streams_ = 0;                 // calls open on the wire
  std::vector<PendingCall*> waiting_;  // not submitted yet (connecting, recycling)
  // One timer for the earliest deadline. It may stay armed for a call that
  // has finished: it then finds the next deadline in the future and re-arms
  // for it, which costs one wake-up per timeout rather than a timer per call.
  event* timer_ = nullptr;
  event* liveness_timer_ = nullptr;  // connect timeout, PING answer, idle PING
  absl::Time connect_started_ = absl::InfinitePast();
  absl::Time last_read_ = absl::InfinitePast();
  absl::Time ping_sent_ = absl::InfinitePast();  // InfinitePast: no PING out
  // Round trips (steady clock): a timed PING is submitted (queued), then
  // written (sent, at its frame's send), then answered (its ACK, timed at
  // the start of the read that brought it, before our callbacks' work).
  bool round_trip_queued_ = false;
  absl::Time round_trip_sent_ = absl::InfinitePast();
  absl::Time round_trip_due_ = absl::InfinitePast();  // wall clock: the next may go then
  bool answered_since_round_trip_ = true;             // HEADERS or DATA came since the last PING
  absl::Time read_at_ = absl::InfinitePast();         // steady: when the current read began
  RoundTrips round_trips_;                            // of every connection made to address_
  absl::Time armed_for_ = absl::InfiniteFuture();
  std::vector<nghttp2_nv> headers_;  // Submit's, kept for its capacity
  int32_t found_stream_id_ = -1;     // CallOf's last answer; -1: none
  PendingCall* found_call_ = nullptr;

  friend class H2Client;
  friend class H2Client::Impl;
};

class H2Client::Impl {
 public:
  ~Impl() {
    if (flush_event != nullptr) event_free(flush_event);
    for (event* e : graveyard) event_free(e);
    for (PendingCall* call : free_calls) delete call;
  }

  EventLoop loop;
  nghttp2_session_callbacks* callbacks = nullptr;
  std::shared_ptr<TlsContext> tls;  // null: plaintext
  // Outlives every session: they are deleted on the loop thread before it
  // stops (Close, from ~H2Client at the latest).
  SessionMemory session_memory;
  std::unordered_set<std::shared_ptr<Connection>> connections;  // loop thread only

  // Whether most of this loop's links that carried a PING lately had a
  // slow last round trip: then the trouble is more likely ours (a loop too
  // busy to read its answers in time) than theirs, and none is judged slow.
  // Recomputed on the loop at each round trip; read by LinkHealth from any
  // thread. With one link there is nothing to compare: never.
  std::atomic<bool> local_trouble{false};
  void JudgeLinks();

  // Frees `e` once the callback running now has returned (it may be e's).
  void Bury(event* e) {
    if (e == nullptr) return;
    event_del(e);
    graveyard.push_back(e);
    if (graveyard.size() == 1) {
      const timeval now = {0, 0};
      event_base_once(loop.base(), -1, EV_TIMEOUT, &Impl::OnReap, this, &now);
    }
  }
  static void OnReap(evutil_socket_t, short, void* self) {
    auto* impl = static_cast<Impl*>(self);
    for (event* e : impl->graveyard) event_free(e);
    impl->graveyard.clear();
  }
  std::vector<event*> graveyard;  // loop thread only

  // Connections with calls submitted and not written yet, written together
  // once the callbacks running now have returned. Loop thread only.
  void FlushLater(Connection* c) {
    if (c->flush_pending) return;
    c->flush_pending = true;
    to_flush.push_back(c->shared_from_this());
    if (to_flush.size() > 1) return;
    if (flush_event == nullptr) flush_event = event_new(loop.base(), -1, 0, &Impl::OnFlush, this);
    if (flush_event != nullptr) {
      event_active(flush_event, EV_TIMEOUT, 1);
    } else {
      OnFlush(-1, 0, this);
    }
  }
  static void OnFlush(evutil_socket_t, short, void* self) {
    auto* impl = static_cast<Impl*>(self);
    std::vector<std::shared_ptr<Connection>> connections;
    connections.swap(impl->to_flush);
    for (const std::shared_ptr<Connection>& c : connections) {
      c->flush_pending = false;
      c->FlushOrFail();
    }
  }
  std::vector<std::shared_ptr<Connection>> to_flush;
  event* flush_event = nullptr;

  // A call record, recycled if one is free. Loop thread only.
  PendingCall* Acquire() {
    if (free_calls.empty()) return new PendingCall();
    PendingCall* call = free_calls.back();
    free_calls.pop_back();
    return call;
  }
  // Takes back a finished call. Loop thread only. The strings keep their
  // capacity (path, content type and metadata are overwritten by the next
  // call; the buffers are cleared), unless one large response would be kept.
  void Release(PendingCall* call) {
    if (free_calls.size() >= kMaxFreeCalls) {
      delete call;
      return;
    }
    call->done = nullptr;  // its captures go now, not when the record is reused
    for (std::string* s : {&call->request, &call->body, &call->grpc_message}) {
      if (s->capacity() > kMaxKeptBufferBytes) {
        std::string().swap(*s);
      } else {
        s->clear();
      }
    }
    call->grpc_status.clear();
    free_calls.push_back(call);
  }
  std::vector<PendingCall*> free_calls;  // loop thread only

  std::atomic<uint64_t> next_serial{1};

  PendingCall* NewCall(const CallOptions& options, std::string_view message, absl::Time now,
                       absl::Time deadline) {
    PendingCall* call = loop.InLoop() ? Acquire() : new PendingCall();
    call->path = options.path;
    call->content_type = options.content_type;
    call->metadata = options.metadata;
    call->deadline = std::min(now + options.timeout, deadline);
    call->budget = call->deadline - now;
    call->timeout = options.timeout;
    call->request.reserve(wire::kGrpcPrefixBytes + message.size());
    wire::AppendGrpcMessage(message, &call->request);
    call->sent = 0;
    call->resent = false;
    call->http_status = 0;
    return call;
  }
  void Start(const std::shared_ptr<Connection>& connection, PendingCall* call, absl::Time now) {
    call->connection = connection.get();
    if (loop.InLoop()) {
      connection->Start(call, now);
    } else {
      // The lambda keeps the connection alive until the call has started.
      loop.Post([connection, call] { connection->Start(call, absl::Now()); });
    }
  }
};

// --- Connection -------------------------------------------------------------

void H2Client::Connection::Start(PendingCall* call, absl::Time now) {
  calls_.Insert(call);
  if (closed_) {
    Finish(call, absl::CancelledError("lcache: connection closed"));
    return;
  }
  if (call->deadline <= now) {  // the caller's deadline left it no time
    Finish(call, PeerDeadlineExceeded(absl::StrCat("lcache: no time left to call ", call->path,
                                                   " on ", address_),
                                      call->budget, call->timeout));
    return;
  }
  if (timer_ == nullptr) timer_ = evtimer_new(client_->loop.base(), &OnDeadline, this);
  ArmFor(call->deadline, now);
  switch (state_) {
    case State::kReady:
      if (!recycle_) {
        Submit(call, now);
        // Written with the other calls made before the loop looks at its
        // sockets again (a batch of requests forwarded at once: one send).
        if (!reading_) client_->FlushLater(this);
        return;
      }
      waiting_.push_back(call);
      return;
    case State::kConnecting:
      waiting_.push_back(call);
      return;
    case State::kIdle:
      if (now < retry_at_) {
        // A connect failed moments ago: fail at once rather than make every
        // call wait for its own attempt against a peer that is down.
        Finish(
            call,
            absl::UnavailableError(absl::StrCat(
                "lcache: cannot connect to ", address_, ": ", last_error_, " (next attempt in ",
                absl::FormatDuration(absl::Trunc(retry_at_ - now, absl::Milliseconds(1))), ")")));
        return;
      }
      waiting_.push_back(call);
      Connect();
      return;
  }
}

void H2Client::Connection::Cancel(const void* call, uint64_t serial) {
  if (!calls_.Contains(call)) return;
  auto* c = static_cast<PendingCall*>(const_cast<void*>(call));
  if (c->serial != serial) return;  // recycled for another call meanwhile
  Finish(c, absl::CancelledError(absl::StrCat("lcache: call to ", address_, " called off")));
  client_->FlushLater(this);  // the stream's reset
}

void H2Client::Connection::ArmFor(absl::Time deadline, absl::Time now) {
  if (deadline >= armed_for_ || deadline == absl::InfiniteFuture()) return;
  armed_for_ = deadline;
  const absl::Duration left = std::max(deadline - now, absl::ZeroDuration());
  const timeval tv = absl::ToTimeval(absl::Ceil(left, absl::Microseconds(1)));
  evtimer_add(timer_, &tv);
}

void H2Client::Connection::OnDeadline(evutil_socket_t, short, void* self) {
  auto* c = static_cast<Connection*>(self);
  c->armed_for_ = absl::InfiniteFuture();
  // libevent measures timeouts from the time it cached at the top of the
  // loop, so the timer may fire a little early: a call fails only once the
  // clock has passed its deadline, and the timer re-arms for the rest.
  const absl::Time now = absl::Now();
  // The expired calls move to a list of their own first: calls their `done`
  // starts join calls_ and wait for their own deadline.
  CallList expired;
  c->calls_.MoveFrontTo(&expired, [now](const PendingCall* call) { return call->deadline <= now; });
  while (!expired.empty()) {
    PendingCall* call = expired.front();
    c->Finish(call, PeerDeadlineExceeded(absl::StrCat("lcache: deadline exceeded calling ",
                                                      call->path, " on ", c->address(), " (after ",
                                                      absl::FormatDuration(call->budget), ")"),
                                         call->budget, call->timeout));
  }
  // A call timed out: is the connection itself still alive?
  if (c->state_ == State::kReady) c->Ping(now);
  c->FlushOrFail();  // the streams' resets go out now
  if (!c->calls_.empty() && c->timer_ != nullptr) {
    c->ArmFor(c->calls_.front()->deadline, absl::Now());  // the callbacks took time
  }
}

void H2Client::Connection::Connect() {
  const std::optional<wire::HostPort> host_port = wire::SplitHostPort(address_);
  const auto fail = [this](std::string why) {
    last_error_ = std::move(why);
    retry_at_ = absl::Now() + backoff_;
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    Fail(absl::UnavailableError(
        absl::StrCat("lcache: cannot connect to ", address_, ": ", last_error_)));
  };
  if (!host_port) {
    fail("no port (expected host:port)");
    return;
  }
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  // A host name blocks the loop while it resolves; peers are addresses in
  // practice (the ring's identities), which resolve at once.
  if (int rc = getaddrinfo(host_port->host.c_str(), host_port->port.c_str(), &hints, &found);
      rc != 0) {
    fail(gai_strerror(rc));
    return;
  }
  fd_ = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    freeaddrinfo(found);
    fail(std::strerror(errno));
    return;
  }
  const int on = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  const int rc = connect(fd_, found->ai_addr, found->ai_addrlen);
  const int error = errno;
  freeaddrinfo(found);
  if (rc != 0 && error != EINPROGRESS) {
    fail(std::strerror(error));
    return;
  }
  state_ = State::kConnecting;
  connect_started_ = absl::Now();
  read_event_ = event_new(client_->loop.base(), fd_, EV_READ | EV_PERSIST, &OnSocket, this);
  write_event_ = event_new(client_->loop.base(), fd_, EV_WRITE, &OnSocket, this);
  event_add(write_event_, nullptr);  // writable: the connect finished, one way or the other
  ArmLiveness(kConnectTimeout);
}

void H2Client::Connection::ArmLiveness(absl::Duration after) {
  if (liveness_timer_ == nullptr) {
    liveness_timer_ = evtimer_new(client_->loop.base(), &OnLiveness, this);
    if (liveness_timer_ == nullptr) return;
  }
  const timeval tv = absl::ToTimeval(absl::Ceil(after, absl::Microseconds(1)));
  evtimer_add(liveness_timer_, &tv);
}

bool H2Client::Connection::SubmitPing() {
  const bool timed = !round_trip_queued_ && round_trip_sent_ == absl::InfinitePast();
  if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, timed ? kRoundTripOpaque : nullptr) != 0) {
    return false;
  }
  round_trip_queued_ = round_trip_queued_ || timed;
  answered_since_round_trip_ = false;
  return true;
}

void H2Client::Connection::Ping(absl::Time now) {
  if (ping_sent_ != absl::InfinitePast() || session_ == nullptr) return;
  if (!SubmitPing()) return;
  ping_sent_ = now;
  ArmLiveness(kPingTimeout);
}

void H2Client::Connection::OnLiveness(evutil_socket_t, short, void* self) {
  auto* c = static_cast<Connection*>(self);
  const absl::Time now = absl::Now();
  switch (c->state_) {
    case State::kIdle:
      return;
    case State::kConnecting:
      if (now - c->connect_started_ < kConnectTimeout) {
        c->ArmLiveness(kConnectTimeout - (now - c->connect_started_));
        return;
      }
      // No backoff: the peer did not refuse, it did not answer; the next
      // call tries again at once (so a healed link is used at once).
      c->Fail(absl::UnavailableError(absl::StrCat("lcache: cannot connect to ", c->address_,
                                                  ": no answer in ",
                                                  absl::FormatDuration(kConnectTimeout))));
      return;
    case State::kReady:
      break;
  }
  if (c->ping_sent_ != absl::InfinitePast()) {
    if (c->last_read_ < c->ping_sent_) {
      if (now - c->ping_sent_ < kPingTimeout) {
        c->ArmLiveness(kPingTimeout - (now - c->ping_sent_));
        return;
      }
      c->Fail(absl::UnavailableError(absl::StrCat("lcache: connection to ", c->address_,
                                                  " is dead: no answer to a PING in ",
                                                  absl::FormatDuration(kPingTimeout))));
      return;
    }
    c->ping_sent_ = absl::InfinitePast();  // answered (or anything else came)
  }
  if (now - c->last_read_ >= kIdlePing) {
    c->Ping(now);
    c->FlushOrFail();
  } else {
    c->ArmLiveness(kIdlePing - (now - c->last_read_));
  }
}

void H2Client::Connection::OnConnected() {
  int error = 0;
  socklen_t len = sizeof error;
  getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len);
  if (error != 0) {
    last_error_ = std::strerror(error);
    retry_at_ = absl::Now() + backoff_;
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    Fail(absl::UnavailableError(
        absl::StrCat("lcache: cannot connect to ", address_, ": ", last_error_)));
    return;
  }
  backoff_ = kFirstBackoff;
  retry_at_ = absl::InfinitePast();
  tls_error_.clear();
  if (client_->tls != nullptr) {
    const std::optional<wire::HostPort> host_port = wire::SplitHostPort(address_);
    ssl_ = client_->tls->NewSsl(fd_, host_port ? host_port->host : address_);
    if (ssl_ == nullptr) {
      Fail(absl::UnavailableError(
          absl::StrCat("lcache: cannot start TLS with ", address_, " (OpenSSL)")));
      return;
    }
  }
  nghttp2_session_client_new3(&session_, client_->callbacks, this, nullptr,
                              client_->session_memory.mem());
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  state_ = State::kReady;
  last_read_ = absl::Now();
  ArmLiveness(kIdlePing);
  event_add(read_event_, nullptr);
  std::vector<PendingCall*> waiting;
  waiting.swap(waiting_);
  const absl::Time now = absl::Now();
  for (PendingCall* call : waiting) Submit(call, now);
  if (!Flush()) Fail(Lost());
}

absl::Status H2Client::Connection::Lost() const {
  if (tls_error_.empty()) {
    return absl::UnavailableError(absl::StrCat("lcache: connection to ", address_, " lost"));
  }
  const bool handshake = ssl_ == nullptr || !SSL_is_init_finished(ssl_);
  return absl::UnavailableError(
      absl::StrCat("lcache: TLS with ", address_, " failed: ", tls_error_,
                   handshake ? " (is the peer serving TLS? Go nodes speak plaintext only)" : ""));
}

void H2Client::Connection::Submit(PendingCall* call, absl::Time now) {
  // Out of stream ids, or the server sent GOAWAY and the connection is
  // finishing its last streams: the call waits for the next connection.
  if (nghttp2_session_get_next_stream_id(session_) > static_cast<uint32_t>(kLastStreamId) ||
      nghttp2_session_check_request_allowed(session_) == 0) {
    recycle_ = true;
    waiting_.push_back(call);
    // Not while nghttp2 runs: MaybeRecycle deletes the session. Read's and
    // Flush's callers recycle after it returns.
    if (!reading_ && !writing_) MaybeRecycle();
    return;
  }
  call->timeout_header = wire::GrpcTimeoutHeader(call->deadline - now);
  headers_ = {
      Header(":method", "POST"),
      Header(":scheme", ssl_ != nullptr ? "https" : "http"),
      Header(":path", call->path),
      Header(":authority", address_),
      Header("content-type", call->content_type),
      Header("te", "trailers"),
      Header("grpc-timeout", call->timeout_header),
  };
  for (const auto& [name, value] : call->metadata) headers_.push_back(Header(name, value));
  nghttp2_data_provider body;
  body.source.ptr = call;
  body.read_callback = &ReadRequest;
  // nghttp2 copies the array (not the names and values, which the call
  // keeps until it is done).
  const int32_t id =
      nghttp2_submit_request(session_, nullptr, headers_.data(), headers_.size(), &body, call);
  if (id < 0) {
    Finish(call, absl::UnavailableError(absl::StrCat("lcache: cannot start a call to ", address_,
                                                     ": ", nghttp2_strerror(id))));
    return;
  }
  call->stream_id = id;
  ++streams_;
  if (id == found_stream_id_) found_stream_id_ = -1;
  if (now >= round_trip_due_ && !round_trip_queued_ && round_trip_sent_ == absl::InfinitePast() &&
      answered_since_round_trip_ && SubmitPing()) {
    round_trip_due_ = now + kRoundTripEvery;
  }
}

int H2Client::Connection::OnFrameSent(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto* c = static_cast<Connection*>(self);
  if (frame->hd.type == NGHTTP2_PING && c->round_trip_queued_ &&
      (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 &&
      std::memcmp(frame->ping.opaque_data, kRoundTripOpaque, sizeof kRoundTripOpaque) == 0) {
    c->round_trip_queued_ = false;
    c->round_trip_sent_ = SteadyNow();
  }
  return 0;
}

int H2Client::Connection::OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto* c = static_cast<Connection*>(self);
  if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) {
    c->answered_since_round_trip_ = true;
  } else if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) != 0 &&
             c->round_trip_sent_ != absl::InfinitePast() &&
             std::memcmp(frame->ping.opaque_data, kRoundTripOpaque, sizeof kRoundTripOpaque) == 0) {
    c->round_trips_.Add(c->read_at_ - c->round_trip_sent_, c->read_at_);
    c->round_trip_sent_ = absl::InfinitePast();
    c->client_->JudgeLinks();
  }
  return 0;
}

ssize_t H2Client::Connection::ReadRequest(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                                          uint32_t* flags, nghttp2_data_source* source, void*) {
  auto* call = static_cast<PendingCall*>(source->ptr);
  const size_t n = std::min(length, call->request.size() - call->sent);
  std::memcpy(buf, call->request.data() + call->sent, n);
  call->sent += n;
  if (call->sent == call->request.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

void H2Client::Connection::Finish(PendingCall* call, absl::Status status,
                                  std::string_view message) {
  if (!call->linked()) return;  // finished already
  CallList::Remove(call);
  if (call == found_call_) found_stream_id_ = -1;
  if (!waiting_.empty()) std::erase(waiting_, call);
  if (call->stream_id > 0 && session_ != nullptr) {
    // Still open on the wire (a deadline): reset it, and forget the call.
    nghttp2_session_set_stream_user_data(session_, call->stream_id, nullptr);
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
  }
  StreamEnded(call);
  // The call is unlinked, so nothing finishes it twice while `done` runs,
  // and it is recycled only after: `message` may be its body.
  Impl* const client = client_;
  call->done(std::move(status), message);
  client->Release(call);
}

void H2Client::Connection::Fail(const absl::Status& status) {
  Disconnect();
  // The calls move to a list of their own first: calls their `done` starts
  // belong to the next connection attempt.
  CallList failing;
  calls_.MoveFrontTo(&failing, [](PendingCall* call) {
    call->stream_id = 0;  // the session is gone
    return true;
  });
  streams_ = 0;
  while (!failing.empty()) Finish(failing.front(), status);
}

void H2Client::Connection::Close(const absl::Status& status) {
  closed_ = true;
  Fail(status);
  client_->Bury(timer_);
  timer_ = nullptr;
  client_->Bury(liveness_timer_);
  liveness_timer_ = nullptr;
}

void H2Client::Connection::Disconnect() {
  found_stream_id_ = -1;  // stream ids start again with the next session
  client_->Bury(read_event_);
  client_->Bury(write_event_);
  read_event_ = write_event_ = nullptr;
  if (session_ != nullptr) nghttp2_session_del(session_);
  session_ = nullptr;
  SSL_free(ssl_);
  ssl_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  out_.clear();
  out_offset_ = 0;
  state_ = State::kIdle;
  recycle_ = false;
  ping_sent_ = absl::InfinitePast();
  round_trip_queued_ = false;
  round_trip_sent_ = absl::InfinitePast();
  answered_since_round_trip_ = true;
  if (liveness_timer_ != nullptr) evtimer_del(liveness_timer_);
}

void H2Client::Connection::MaybeRecycle() {
  if (!recycle_ || streams_ != 0) return;  // streams still open
  std::vector<PendingCall*> waiting;
  waiting.swap(waiting_);
  Disconnect();
  waiting_ = std::move(waiting);
  Connect();
}

void H2Client::Connection::OnSocket(evutil_socket_t, short what, void* self) {
  auto* c = static_cast<Connection*>(self);
  if (c->state_ == State::kConnecting) {
    c->OnConnected();
    return;
  }
  if ((what & EV_READ) && !c->Read()) {
    c->Fail(c->Lost());
    return;
  }
  if (!c->Flush()) {
    c->Fail(c->Lost());
    return;
  }
  c->MaybeRecycle();
}

bool H2Client::Connection::Read() {
  // While nghttp2 runs our callbacks, a `done` may start the next call on
  // this connection: that call is submitted, but not flushed and nothing is
  // recycled until nghttp2 has returned (OnSocket does both then).
  reading_ = true;
  read_at_ = SteadyNow();
  const bool ok = ReadIntoSession(fd_, ssl_, session_, &tls_error_);
  reading_ = false;
  last_read_ = absl::Now();
  return ok;
}

bool H2Client::Connection::Flush() {
  if (session_ == nullptr) return true;
  // nghttp2 may close a stream it cannot send (REFUSED_STREAM after a
  // GOAWAY) while it serializes: OnStreamClose then resubmits the call, and
  // the recycle that may need waits until nghttp2 has returned.
  writing_ = true;
  const WriteResult written =
      WriteFromSession(fd_, ssl_, session_, &out_, &out_offset_, &tls_error_);
  writing_ = false;
  switch (written) {
    case WriteResult::kFailed:
      return false;
    case WriteResult::kBlocked:
      event_add(write_event_, nullptr);
      return true;
    case WriteResult::kWantsRead:
      return true;  // the TLS handshake goes on when the server's next bytes come
    case WriteResult::kWritten:
      break;
  }
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
    // GOAWAY, and no stream left: this connection is done; the next call
    // opens a new one.
    std::vector<PendingCall*> waiting;
    waiting.swap(waiting_);
    Disconnect();
    waiting_ = std::move(waiting);
    if (!waiting_.empty()) Connect();
    return true;
  }
  MaybeRecycle();
  return true;
}

int H2Client::Connection::OnHeader(nghttp2_session* session, const nghttp2_frame* frame,
                                   const uint8_t* name_bytes, size_t namelen,
                                   const uint8_t* value_bytes, size_t valuelen, uint8_t,
                                   void* self) {
  PendingCall* call = static_cast<Connection*>(self)->CallOf(session, frame->hd.stream_id);
  if (call == nullptr) return 0;
  const std::string_view name(reinterpret_cast<const char*>(name_bytes), namelen);
  const std::string_view value(reinterpret_cast<const char*>(value_bytes), valuelen);
  if (name == ":status") {
    call->http_status = 0;
    for (char c : value) call->http_status = call->http_status * 10 + (c - '0');
  } else if (name == "grpc-status") {
    call->grpc_status = value;
  } else if (name == "grpc-message") {
    call->grpc_message = wire::PercentDecode(value);
  }
  return 0;
}

int H2Client::Connection::OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                      const uint8_t* data, size_t len, void* self) {
  PendingCall* call = static_cast<Connection*>(self)->CallOf(session, stream_id);
  if (call == nullptr) return 0;
  if (call->body.size() + len > kMaxResponseBytes) {
    static_cast<Connection*>(self)->Finish(
        call, absl::ResourceExhaustedError(
                  absl::StrCat("lcache: response over ", kMaxResponseBytes, " bytes")));
    return 0;
  }
  call->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int H2Client::Connection::OnStreamClose(nghttp2_session* session, int32_t stream_id,
                                        uint32_t error_code, void* self) {
  auto* c = static_cast<Connection*>(self);
  PendingCall* call = c->CallOf(session, stream_id);
  if (call != nullptr) {
    c->StreamEnded(call);  // closed: nothing to reset
    if (call->grpc_status.empty()) {
      if (error_code == NGHTTP2_REFUSED_STREAM && call->http_status == 0 && !call->resent) {
        // The server refused the stream unread (RFC 9113 8.7: it never
        // acted on it; it went away, or had too many streams): the call is
        // sent again, once, as gRPC's clients do. Submit puts it on this
        // connection, or on the next one after a GOAWAY.
        call->resent = true;
        call->sent = 0;
        c->Submit(call, absl::Now());
      } else if (error_code == NGHTTP2_REFUSED_STREAM) {
        c->Finish(call, absl::UnavailableError(absl::StrCat("lcache: ", c->address_,
                                                            " refused the call (going away)")));
      } else if (call->http_status != 200 && call->http_status != 0) {
        c->Finish(call, absl::Status(wire::GrpcStatusFromHttp(call->http_status),
                                     absl::StrCat("lcache: HTTP status ", call->http_status,
                                                  " from ", c->address_)));
      } else {
        c->Finish(call, absl::UnavailableError(absl::StrCat(
                            "lcache: call to ", c->address_, " ended without a status (",
                            nghttp2_http2_strerror(error_code), ")")));
      }
    } else if (absl::StatusCode code = wire::GrpcStatusCode(call->grpc_status);
               code != absl::StatusCode::kOk) {
      c->Finish(call, absl::Status(code, call->grpc_message));
    } else if (absl::StatusOr<std::string_view> message = wire::SingleGrpcMessage(call->body);
               !message.ok()) {
      c->Finish(call, absl::InternalError(absl::StrCat("lcache: bad response from ", c->address_,
                                                       ": ", message.status().message())));
    } else {
      c->Finish(call, absl::OkStatus(), *message);
    }
  }
  // Not MaybeRecycle() here: it deletes the session, which is inside
  // nghttp2_session_mem_recv now. OnSocket does it after reading.
  return 0;
}

// --- H2Client -------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<H2Client>> H2Client::Create(std::shared_ptr<TlsContext> tls) {
  auto impl = std::make_unique<Impl>();
  if (!impl->loop.ok()) return absl::InternalError("lcache: cannot create an event loop");
  impl->tls = std::move(tls);
  nghttp2_session_callbacks_new(&impl->callbacks);
  nghttp2_session_callbacks_set_on_header_callback(impl->callbacks, &Connection::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(impl->callbacks,
                                                            &Connection::OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(impl->callbacks, &Connection::OnFrame);
  nghttp2_session_callbacks_set_on_frame_send_callback(impl->callbacks, &Connection::OnFrameSent);
  nghttp2_session_callbacks_set_on_stream_close_callback(impl->callbacks,
                                                         &Connection::OnStreamClose);
  impl->loop.Start();
  return std::unique_ptr<H2Client>(new H2Client(std::move(impl)));
}

H2Client::H2Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

void H2Client::Impl::JudgeLinks() {
  const absl::Time now = SteadyNow();
  int judged = 0;
  int slow = 0;
  for (const std::shared_ptr<Connection>& c : connections) {
    if (!c->round_trips_.recent(now)) continue;
    ++judged;
    slow += c->round_trips_.last_slow() ? 1 : 0;
  }
  local_trouble.store(judged >= 2 && 2 * slow > judged, std::memory_order_relaxed);
}

absl::Status H2Client::LinkHealth(const Connection& connection) {
  if (!connection.round_trips_.slow(&SteadyNow) ||
      connection.client_->local_trouble.load(std::memory_order_relaxed)) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("lcache: the link to ", connection.address_,
                                             " is slow: ", connection.round_trips_.Why()));
}

H2Client::~H2Client() {
  Impl* impl = impl_.get();
  impl->loop.Post([impl] {
    for (const auto& c : impl->connections) {
      c->Close(absl::CancelledError("lcache: client shutting down"));
    }
    impl->connections.clear();
    impl->to_flush.clear();
  });
  impl->loop.Stop();
  nghttp2_session_callbacks_del(impl->callbacks);
}

std::shared_ptr<H2Client::Connection> H2Client::Open(const std::string& address) {
  auto c = std::make_shared<Connection>(impl_.get(), address);
  Impl* impl = impl_.get();
  impl->loop.Post([impl, c] { impl->connections.insert(c); });
  return c;
}

void H2Client::Close(const std::shared_ptr<Connection>& connection) {
  Impl* impl = impl_.get();
  impl->loop.Post([impl, connection] {
    connection->Close(absl::CancelledError("lcache: connection closed"));
    impl->connections.erase(connection);
  });
}

void H2Client::Call(const std::shared_ptr<Connection>& connection, const CallOptions& options,
                    std::string_view message, Done done, absl::Time deadline,
                    CallHandle* handle) {
  const absl::Time now = absl::Now();
  PendingCall* call = impl_->NewCall(options, message, now, deadline);
  call->done = std::move(done);
  call->serial = 0;
  if (handle != nullptr) {
    call->serial = impl_->next_serial.fetch_add(1, std::memory_order_relaxed);
    *handle = {.connection = connection, .call = call, .serial = call->serial};
  }
  impl_->Start(connection, call, now);
}

void H2Client::Cancel(const CallHandle& handle) {
  if (handle.connection == nullptr) return;
  if (impl_->loop.InLoop()) {
    handle.connection->Cancel(handle.call, handle.serial);
    return;
  }
  impl_->loop.Post([handle] { handle.connection->Cancel(handle.call, handle.serial); });
}

void H2Client::RunInLoop(std::function<void()> task) { impl_->loop.Post(std::move(task)); }

bool H2Client::InLoop() const { return impl_->loop.InLoop(); }

EventLoop* H2Client::event_loop() { return &impl_->loop; }

}  // namespace lcache::internal
