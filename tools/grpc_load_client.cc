#include "grpc_load_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "lcache/grpc_wire.h"

namespace lcache::tools {
namespace {

using Clock = GrpcLoadClient::Clock;

constexpr size_t kFrameHeaderBytes = 9;
constexpr uint32_t kLastStreamId = (1u << 31) - 1;
// We advertise no larger frames than HTTP/2's default.
constexpr size_t kOurMaxFrameBytes = 16384;
// Our receive windows, stream and connection: as large as HTTP/2 allows, so
// the server never waits for us. The connection's is topped up again once
// this much has come.
constexpr uint32_t kOurWindow = (1u << 31) - 1;
constexpr uint32_t kDefaultWindow = 65535;
constexpr uint32_t kDefaultHeaderTableBytes = 4096;
// Streams we open before the server's SETTINGS say how many it takes: as
// nghttp2 does, a number every server allows (RFC 9113 recommends that
// servers allow at least 100), so a first burst is not refused.
constexpr uint32_t kStreamsBeforeSettings = 100;
constexpr uint64_t kWindowTopUpBytes = 1u << 30;
constexpr size_t kMaxResponseBytes = 256 << 20;
constexpr size_t kReadBytes = 256 << 10;
constexpr Clock::duration kFirstBackoff = std::chrono::milliseconds(100);
constexpr Clock::duration kMaxBackoff = std::chrono::seconds(1);
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};

uint32_t Read32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

void AppendFrameHeader(std::string* out, size_t length, uint8_t type, uint8_t flags,
                       uint32_t stream_id) {
  const char header[kFrameHeaderBytes] = {
      static_cast<char>(length >> 16),    static_cast<char>(length >> 8),
      static_cast<char>(length),          static_cast<char>(type),
      static_cast<char>(flags),           static_cast<char>(stream_id >> 24),
      static_cast<char>(stream_id >> 16), static_cast<char>(stream_id >> 8),
      static_cast<char>(stream_id)};
  out->append(header, kFrameHeaderBytes);
}

void Append32(std::string* out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(bytes, 4);
}

void AppendWindowUpdate(std::string* out, uint32_t stream_id, uint32_t increment) {
  AppendFrameHeader(out, 4, NGHTTP2_WINDOW_UPDATE, NGHTTP2_FLAG_NONE, stream_id);
  Append32(out, increment);
}

// The header blocks of a connection's requests. Its first request adds the
// fields to the server's HPACK table, and every later one refers to them
// (a byte each), as nghttp2's own client does: the server's cost per call is
// then what a real client's is. Blocks are made by nghttp2's deflater, which
// keeps the same table the server builds: encoding the fields a third time
// must give the second block's bytes again, or Create fails.
// If the server allows a smaller table than HPACK's default (its
// SETTINGS_HEADER_TABLE_SIZE), its requests use `table_free` instead: the
// deflater with no table, which starts by telling the server so (a table
// size update to 0), and marks every field never-indexed.
struct HeaderBlocks {
  std::string first;
  std::string repeat;
  std::string table_free;
};

absl::StatusOr<HeaderBlocks> EncodeHeaderBlocks(const GrpcLoadClient::Options& options,
                                                std::string_view authority,
                                                std::string_view timeout) {
  const std::string_view scheme = options.tls ? "https" : "http";
  const auto field = [](std::string_view name, std::string_view value) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                      value.size(), NGHTTP2_NV_FLAG_NONE};
  };
  std::vector<nghttp2_nv> fields = {
      field(":method", "POST"),
      field(":scheme", scheme),
      field(":path", options.path),
      field(":authority", authority),
      field("content-type", options.content_type),
      field("te", "trailers"),
      field("grpc-timeout", timeout),
  };
  for (const auto& [name, value] : options.metadata) fields.push_back(field(name, value));

  const auto encode = [&](nghttp2_hd_deflater* deflater) -> absl::StatusOr<std::string> {
    std::string block(nghttp2_hd_deflate_bound(deflater, fields.data(), fields.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(deflater, reinterpret_cast<uint8_t*>(block.data()),
                                            block.size(), fields.data(), fields.size());
    if (n < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("lcache-bench: cannot encode the request headers: ", nghttp2_strerror(n)));
    }
    block.resize(static_cast<size_t>(n));
    if (block.size() > kOurMaxFrameBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lcache-bench: request headers of ", block.size(), " bytes do not fit one HTTP/2 frame"));
    }
    return block;
  };
  nghttp2_hd_deflater* indexing = nullptr;
  if (nghttp2_hd_deflate_new(&indexing, kDefaultHeaderTableBytes) != 0) {
    return absl::ResourceExhaustedError("lcache-bench: no memory for an HPACK deflater");
  }
  absl::StatusOr<std::string> first = encode(indexing);
  absl::StatusOr<std::string> repeat = first.ok() ? encode(indexing) : first;
  absl::StatusOr<std::string> again = repeat.ok() ? encode(indexing) : repeat;
  nghttp2_hd_deflate_del(indexing);
  if (!again.ok()) return again.status();
  if (*again != *repeat) {
    return absl::InternalError("lcache-bench: the request headers do not encode the same twice");
  }
  for (nghttp2_nv& f : fields) f.flags = NGHTTP2_NV_FLAG_NO_INDEX;
  nghttp2_hd_deflater* table_free = nullptr;
  if (nghttp2_hd_deflate_new(&table_free, 0) != 0) {
    return absl::ResourceExhaustedError("lcache-bench: no memory for an HPACK deflater");
  }
  absl::StatusOr<std::string> no_table = encode(table_free);
  nghttp2_hd_deflate_del(table_free);
  if (!no_table.ok()) return no_table.status();
  return HeaderBlocks{*std::move(first), *std::move(repeat), *std::move(no_table)};
}

// gRPC's status for a stream the server reset (PROTOCOL-HTTP2.md).
absl::Status StatusOfReset(uint32_t error_code, const std::string& address) {
  const std::string message = absl::StrCat("lcache-bench: ", address, " reset the call (",
                                           nghttp2_http2_strerror(error_code), ")");
  switch (error_code) {
    case NGHTTP2_REFUSED_STREAM:
      return absl::UnavailableError(message);
    case NGHTTP2_CANCEL:
      return absl::CancelledError(message);
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return absl::ResourceExhaustedError(message);
    case NGHTTP2_INADEQUATE_SECURITY:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

// OpenSSL's error queue as text (and empties it); whether one of its errors
// is what a handshake meets when the server does not speak TLS.
std::string OpenSslErrors(bool* not_tls = nullptr) {
  std::string text;
  while (const unsigned long e = ERR_get_error()) {
    const int reason = ERR_GET_REASON(e);
    if (not_tls != nullptr && ERR_GET_LIB(e) == ERR_LIB_SSL &&
        (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
         reason == SSL_R_HTTP_REQUEST || reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
      *not_tls = true;
    }
    char buf[256];
    // A system error (a file that is not there) has no reason string of
    // OpenSSL's.
    const char* what = ERR_SYSTEM_ERROR(e) ? std::strerror(reason) : ERR_reason_error_string(e);
    if (what == nullptr) {
      ERR_error_string_n(e, buf, sizeof buf);
      what = buf;
    }
    absl::StrAppend(&text, text.empty() ? "" : "; ", what);
  }
  return text;
}

// Why an SSL_read or SSL_write that returned `ret` failed, in words a user
// can act on. `handshake`: the server has not accepted us yet.
std::string TlsErrorText(SSL* ssl, int ret, bool handshake) {
  const int saved_errno = errno;
  const int error = SSL_get_error(ssl, ret);  // before anything else touches the queue
  bool not_tls = false;
  std::string text = OpenSslErrors(&not_tls);
  if (error == SSL_ERROR_ZERO_RETURN) {
    text = "closed by the server";
  } else if (error == SSL_ERROR_SYSCALL && text.empty()) {
    text = saved_errno != 0 ? std::strerror(saved_errno) : "connection closed";
    not_tls = saved_errno == 0;
  } else if (text.empty()) {
    text = absl::StrCat("OpenSSL error ", error);
  }
  if (const long verify = SSL_get_verify_result(ssl); verify != X509_V_OK) {
    absl::StrAppend(&text, " (", X509_verify_cert_error_string(verify), ")");
  }
  if (!handshake) return absl::StrCat("TLS: ", text);
  return absl::StrCat("TLS handshake failed: ", text, not_tls ? " (is the node serving TLS?)" : "");
}

// The context every connection's SSL is made from.
absl::StatusOr<SSL_CTX*> NewTlsContext(const GrpcLoadClient::Options::Tls& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "lcache-bench: TLS: a client certificate and its key go together (-tls-cert, -tls-key)");
  }
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        &SSL_CTX_free);
  const auto failed = [](const char* what, const std::string& path) {
    return absl::InvalidArgumentError(absl::StrCat("lcache-bench: TLS: cannot load ", what, " \"",
                                                   path, "\": ", OpenSslErrors()));
  };
  if (ctx == nullptr) {
    return absl::InternalError(absl::StrCat("lcache-bench: TLS: ", OpenSslErrors()));
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // A write that must be retried is retried with the same bytes, but `out_`
  // may have grown (and moved) meanwhile; and a write returns once a record
  // is out, as send does.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
  // One recv takes as much as the cleartext one would, and the records in
  // it are decrypted from there: without read-ahead OpenSSL reads each
  // record's header and body with a recv each.
  SSL_CTX_set_read_ahead(ctx.get(), 1);
  SSL_CTX_set_default_read_buffer_len(ctx.get(), kReadBytes);
  if (!tls.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
      return failed("the certificate", tls.cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return failed("the key", tls.key_file);
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) return failed("the key", tls.key_file);
  }
  if (!tls.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca_file.c_str(), nullptr) != 1) {
      return failed("the CA file", tls.ca_file);
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return failed("the system's CAs", "");
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpnH2, sizeof kAlpnH2) != 0) {
    return absl::InternalError(absl::StrCat("lcache-bench: TLS: ALPN: ", OpenSslErrors()));
  }
  return ctx.release();
}

}  // namespace

// One HTTP/2 connection to one target, carrying every call to it.
class GrpcLoadClient::Connection {
 public:
  Connection(GrpcLoadClient* client, std::string address, std::string host,
             sockaddr_storage socket_address, socklen_t socket_address_bytes,
             HeaderBlocks header_blocks)
      : client_(client),
        address_(std::move(address)),
        host_(std::move(host)),
        socket_address_(socket_address),
        socket_address_bytes_(socket_address_bytes),
        header_blocks_(std::move(header_blocks)) {}
  ~Connection() { Close(); }

  // Queues `call`; Pump sends it.
  void Enqueue(Call* call) { waiting_.PushBack(call); }

  // Takes `call` off the wire or the queue (its deadline passed): a sent
  // call's stream is reset.
  void Cancel(Call* call);

  // End of a Poll round: connect if calls wait and the backoff allows, send
  // the calls the server's limits allow, write what is pending.
  void Pump(Clock::time_point now);

  // When Pump next has a connection attempt to make; max() if none.
  Clock::time_point retry_at() const {
    return state_ == State::kIdle && !waiting_.empty() ? retry_at_ : Clock::time_point::max();
  }

  void OnEvent(uint32_t events, Clock::time_point now);

 private:
  enum class State { kIdle, kConnecting, kOpen, kGoingAway };

  void Connect(Clock::time_point now);
  // The socket is connected and the client speaks TLS: a client SSL for it,
  // verifying the server's name. False (the connection lost) if there is none.
  bool StartTls(Clock::time_point now);
  // The socket is connected: the preface and our settings go out first.
  // False if there is no memory for the HPACK decoder.
  bool Opened();
  // The connection failed (`why`): every call on it fails with UNAVAILABLE;
  // the next attempt waits for the backoff unless the connection had worked.
  void Lost(const std::string& why, Clock::time_point now);
  void Close();
  void SendWaiting();
  bool Flush(Clock::time_point now);
  bool Read(Clock::time_point now);
  // Decrypts into `buffer` (kReadBytes) what OpenSSL and the socket hold
  // now; returns the bytes, and sets `error` if the connection failed.
  size_t ReadTls(uint8_t* buffer, std::string* error);
  // The frames in `buffer[0, n)`, after the partial one the last read left.
  bool HandleRead(const uint8_t* buffer, size_t n, Clock::time_point now);
  // Handles the frames at the front of `data`; returns the bytes consumed, or
  // nullopt after a protocol error (the connection is lost).
  std::optional<size_t> HandleFrames(const uint8_t* data, size_t size, Clock::time_point now);
  bool HandleFrame(uint8_t type, uint8_t flags, uint32_t stream_id, const uint8_t* payload,
                   size_t length, Clock::time_point now);
  bool HandleHeaderBlock(uint32_t stream_id, const uint8_t* block, size_t size, bool end_stream);
  void HandleSettings(const uint8_t* payload, size_t length);
  void EndStream(Call* call);
  Call* Find(uint32_t stream_id) const {
    auto it = streams_.find(stream_id);
    return it == streams_.end() ? nullptr : it->second;
  }
  void SetWriteInterest(bool on);

  GrpcLoadClient* const client_;
  const std::string address_;
  const std::string host_;  // address_'s, the name a TLS server must have
  const sockaddr_storage socket_address_;
  const socklen_t socket_address_bytes_;
  const HeaderBlocks header_blocks_;

  State state_ = State::kIdle;
  int fd_ = -1;
  bool write_interest_ = false;
  SSL* ssl_ = nullptr;  // TLS
  // The server sent us something over TLS: it accepted us. (OpenSSL's
  // SSL_is_init_finished will not do: with TLS 1.3 a client is done before
  // the server has checked its certificate, and an error puts it back in
  // init.)
  bool tls_accepted_ = false;
  // OpenSSL's wants that differ from the operation's: a write that waits
  // for the server (the handshake's reply) is not retried until something
  // is read, rather than on every round; a read that must write waits for
  // EPOLLOUT.
  bool write_wants_read_ = false;
  bool read_wants_write_ = false;
  Clock::time_point retry_at_;
  Clock::duration backoff_ = kFirstBackoff;
  bool answered_ = false;  // a call succeeded on this connection

  CallQueue<&Call::prev_, &Call::next_> waiting_;  // started, not sent yet
  absl::flat_hash_map<uint32_t, Call*> streams_;   // sent, not answered
  uint32_t next_stream_id_ = 1;

  // The server's settings, and what its flow control lets us send.
  uint32_t peer_max_streams_ = kStreamsBeforeSettings;
  bool got_settings_ = false;
  uint32_t peer_stream_window_ = kDefaultWindow;
  uint32_t peer_max_frame_ = kOurMaxFrameBytes;
  bool table_free_ = false;  // the server's HPACK table is smaller than the default
  int64_t send_window_ = kDefaultWindow;
  uint64_t received_since_top_up_ = 0;

  nghttp2_hd_inflater* inflater_ = nullptr;
  // A header block split over HEADERS and CONTINUATION frames.
  uint32_t continued_stream_ = 0;
  bool continued_end_stream_ = false;
  std::string continued_block_;

  std::string in_;  // a partial frame
  std::string out_;
  size_t out_sent_ = 0;
};

void GrpcLoadClient::Connection::Connect(Clock::time_point now) {
  fd_ = socket(socket_address_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    Lost(absl::StrCat("socket: ", std::strerror(errno)), now);
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&socket_address_), socket_address_bytes_) !=
          0 &&
      errno != EINPROGRESS) {
    Lost(absl::StrCat("cannot connect: ", std::strerror(errno)), now);
    return;
  }
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT;
  event.data.ptr = this;
  epoll_ctl(client_->epoll_fd_, EPOLL_CTL_ADD, fd_, &event);
  write_interest_ = true;
  state_ = State::kConnecting;
}

bool GrpcLoadClient::Connection::StartTls(Clock::time_point now) {
  in6_addr ip{};
  const bool is_ip =
      inet_pton(AF_INET, host_.c_str(), &ip) == 1 || inet_pton(AF_INET6, host_.c_str(), &ip) == 1;
  ssl_ = SSL_new(client_->ssl_ctx_);
  // An IP address must be in the certificate's IP SANs; a name in its DNS
  // SANs, and it goes out as SNI (which takes names only).
  const bool ok = ssl_ != nullptr && SSL_set_fd(ssl_, fd_) == 1 &&
                  (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host_.c_str()) == 1
                         : SSL_set1_host(ssl_, host_.c_str()) == 1 &&
                               SSL_set_tlsext_host_name(ssl_, host_.c_str()) == 1);
  if (!ok) {
    Lost(absl::StrCat("TLS: cannot start: ", OpenSslErrors()), now);
    return false;
  }
  SSL_set_connect_state(ssl_);  // the handshake starts with the first SSL_write
  return true;
}

bool GrpcLoadClient::Connection::Opened() {
  state_ = State::kOpen;
  answered_ = false;
  next_stream_id_ = 1;
  peer_max_streams_ = kStreamsBeforeSettings;
  got_settings_ = false;
  peer_stream_window_ = kDefaultWindow;
  peer_max_frame_ = kOurMaxFrameBytes;
  table_free_ = false;
  send_window_ = kDefaultWindow;
  received_since_top_up_ = 0;
  if (nghttp2_hd_inflate_new(&inflater_) != 0) {
    inflater_ = nullptr;
    return false;
  }
  out_.assign(kPreface);
  const std::pair<uint16_t, uint32_t> settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kOurWindow},
  };
  AppendFrameHeader(&out_, 6 * std::size(settings), NGHTTP2_SETTINGS, NGHTTP2_FLAG_NONE, 0);
  for (const auto& [id, value] : settings) {
    out_.push_back(static_cast<char>(id >> 8));
    out_.push_back(static_cast<char>(id));
    Append32(&out_, value);
  }
  AppendWindowUpdate(&out_, 0, kOurWindow - kDefaultWindow);
  return true;
}

void GrpcLoadClient::Connection::Close() {
  if (ssl_ != nullptr) {
    // A close_notify if it fits in the socket; the connection ends either way.
    if (tls_accepted_) SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ERR_clear_error();
  }
  ssl_ = nullptr;
  tls_accepted_ = false;
  write_wants_read_ = false;
  read_wants_write_ = false;
  if (fd_ >= 0) {
    epoll_ctl(client_->epoll_fd_, EPOLL_CTL_DEL, fd_, nullptr);
    close(fd_);
  }
  fd_ = -1;
  write_interest_ = false;
  if (inflater_ != nullptr) nghttp2_hd_inflate_del(inflater_);
  inflater_ = nullptr;
  continued_stream_ = 0;
  continued_block_.clear();
  in_.clear();
  out_.clear();
  out_sent_ = 0;
  state_ = State::kIdle;
}

void GrpcLoadClient::Connection::Lost(const std::string& why, Clock::time_point now) {
  // No close_notify on a failed connection (OpenSSL's rule after an error).
  if (ssl_ != nullptr) SSL_set_quiet_shutdown(ssl_, 1);
  Close();
  retry_at_ = answered_ ? now : now + backoff_;
  backoff_ = answered_ ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
  answered_ = false;  // a failed reconnect waits for the backoff
  // Fail the calls from lists of their own: the calls their `done` starts
  // wait for the next attempt.
  std::vector<Call*> failing;
  failing.reserve(streams_.size());
  for (const auto& [id, call] : streams_) failing.push_back(call);
  streams_.clear();
  while (Call* call = waiting_.PopFront()) failing.push_back(call);
  const absl::Status status =
      absl::UnavailableError(absl::StrCat("lcache-bench: ", address_, ": ", why));
  for (Call* call : failing) {
    call->stream_id_ = 0;
    client_->Finish(call, status);
  }
}

void GrpcLoadClient::Connection::Cancel(Call* call) {
  if (call->stream_id_ == 0) {
    waiting_.Remove(call);
    return;
  }
  streams_.erase(call->stream_id_);
  if (state_ == State::kOpen || state_ == State::kGoingAway) {
    AppendFrameHeader(&out_, 4, NGHTTP2_RST_STREAM, NGHTTP2_FLAG_NONE, call->stream_id_);
    Append32(&out_, NGHTTP2_CANCEL);
  }
  call->stream_id_ = 0;
}

void GrpcLoadClient::Connection::Pump(Clock::time_point now) {
  if (state_ == State::kGoingAway && streams_.empty()) {
    Close();  // stream ids ran out, or the server said GOAWAY: a new connection, now
    retry_at_ = now;
  }
  if (state_ == State::kIdle && !waiting_.empty() && now >= retry_at_) Connect(now);
  if (state_ == State::kOpen) SendWaiting();
  if (fd_ >= 0 && out_sent_ < out_.size() && !write_wants_read_) Flush(now);
}

void GrpcLoadClient::Connection::SendWaiting() {
  // Requests too large to send fail after the loop: their `done` may start
  // calls, which join the waiting list this loop walks.
  std::vector<Call*> too_large;
  while (!waiting_.empty() && streams_.size() < peer_max_streams_) {
    if (next_stream_id_ > kLastStreamId) {
      state_ = State::kGoingAway;
      break;
    }
    Call* call = waiting_.head;
    const size_t data_bytes = call->request_.size();
    if (data_bytes > peer_max_frame_ || data_bytes > peer_stream_window_) {
      waiting_.Remove(call);
      too_large.push_back(call);
      continue;
    }
    if (static_cast<int64_t>(data_bytes) > send_window_) break;  // until a WINDOW_UPDATE
    waiting_.Remove(call);
    const uint32_t id = next_stream_id_;
    next_stream_id_ += 2;
    send_window_ -= static_cast<int64_t>(data_bytes);
    const std::string& block = table_free_ ? header_blocks_.table_free
                               : id == 1   ? header_blocks_.first
                                           : header_blocks_.repeat;
    AppendFrameHeader(&out_, block.size(), NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id);
    out_.append(block);
    AppendFrameHeader(&out_, data_bytes, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, id);
    out_.append(call->request_);
    call->stream_id_ = id;
    call->http_status_ = 0;
    call->has_grpc_status_ = false;
    call->grpc_message_.clear();
    call->body_.clear();
    streams_.emplace(id, call);
  }
  for (Call* call : too_large) {
    client_->Finish(call, absl::InternalError(absl::StrCat(
                              "lcache-bench: a request of ", call->request_.size(),
                              " bytes is over what ", address_, " takes in one frame")));
  }
}

bool GrpcLoadClient::Connection::Flush(Clock::time_point now) {
  while (out_sent_ < out_.size()) {
    if (ssl_ != nullptr) {
      // A retry after WANT_* passes the bytes of the first try and maybe
      // more (`out_` only grows until it is all out), as OpenSSL requires.
      const int n = SSL_write(ssl_, out_.data() + out_sent_,
                              static_cast<int>(std::min(out_.size() - out_sent_, size_t{1} << 30)));
      if (n > 0) {
        out_sent_ += static_cast<size_t>(n);
        continue;
      }
      const int saved_errno = errno;
      const int error = SSL_get_error(ssl_, n);
      if (error == SSL_ERROR_WANT_WRITE) {
        SetWriteInterest(true);
        return true;
      }
      if (error == SSL_ERROR_WANT_READ) {  // the handshake waits for the server
        write_wants_read_ = true;
        SetWriteInterest(read_wants_write_);
        return true;
      }
      if (error == SSL_ERROR_SYSCALL && saved_errno == EINTR) continue;
      errno = saved_errno;
      const std::string why = TlsErrorText(ssl_, n, !tls_accepted_);
      // A server that refuses us (no client certificate, say) sends an
      // alert and closes: our write can meet its reset before we read the
      // alert, which says why. A socket error leaves OpenSSL able to read.
      if (error == SSL_ERROR_SYSCALL && !Read(now)) return false;
      Lost(why, now);
      return false;
    }
    const ssize_t n = send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        SetWriteInterest(true);
        return true;
      }
      Lost(absl::StrCat("send: ", std::strerror(errno)), now);
      return false;
    }
    out_sent_ += static_cast<size_t>(n);
  }
  out_.clear();
  out_sent_ = 0;
  SetWriteInterest(read_wants_write_);
  return true;
}

void GrpcLoadClient::Connection::SetWriteInterest(bool on) {
  if (on == write_interest_) return;
  epoll_event event{};
  event.events = on ? EPOLLIN | EPOLLOUT : EPOLLIN;
  event.data.ptr = this;
  epoll_ctl(client_->epoll_fd_, EPOLL_CTL_MOD, fd_, &event);
  write_interest_ = on;
}

void GrpcLoadClient::Connection::OnEvent(uint32_t events, Clock::time_point now) {
  if (state_ == State::kConnecting) {
    int error = 0;
    socklen_t size = sizeof error;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error != 0) {
      Lost(absl::StrCat("cannot connect: ", std::strerror(error)), now);
      return;
    }
    if (client_->ssl_ctx_ != nullptr && !StartTls(now)) return;
    if (!Opened()) Lost("no memory for an HPACK decoder", now);
    return;  // Pump sends the preface and the calls (and TLS's hello first)
  }
  if (fd_ < 0) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR) || (read_wants_write_ && events & EPOLLOUT)) &&
      !Read(now)) {
    return;
  }
  if ((events & EPOLLOUT) && fd_ >= 0) Flush(now);
}

bool GrpcLoadClient::Connection::Read(Clock::time_point now) {
  uint8_t* buffer = client_->read_buffer_.get();
  if (ssl_ != nullptr) {
    // Records already in OpenSSL would not wake the loop again: they are
    // read here, a buffer at a time, until OpenSSL holds none.
    for (;;) {
      std::string error;
      const size_t n = ReadTls(buffer, &error);
      // Frames that came before a failure are handled first (a GOAWAY says
      // more than the reset after it).
      if (n > 0 && !HandleRead(buffer, n, now)) return false;
      if (!error.empty()) {
        Lost(error, now);
        return false;
      }
      if (n < kReadBytes) return true;
    }
  }
  const ssize_t n = recv(fd_, buffer, kReadBytes, 0);
  if (n == 0) {
    Lost(std::string("connection closed by the server"), now);
    return false;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
    Lost(absl::StrCat("recv: ", std::strerror(errno)), now);
    return false;
  }
  return HandleRead(buffer, static_cast<size_t>(n), now);
}

size_t GrpcLoadClient::Connection::ReadTls(uint8_t* buffer, std::string* error) {
  // A write that waited for the server may go on after this read (Pump
  // tries it), and one that wanted to write is done with that.
  write_wants_read_ = false;
  read_wants_write_ = false;
  size_t n = 0;
  while (n < kReadBytes) {
    const int r = SSL_read(ssl_, buffer + n, static_cast<int>(kReadBytes - n));
    if (r > 0) {
      n += static_cast<size_t>(r);
      tls_accepted_ = true;
      // Stop when OpenSSL holds nothing more: what is still in the socket
      // wakes the loop again (level-triggered), and an SSL_read that fails
      // to find more would cost a recv.
      if (SSL_has_pending(ssl_) == 0) break;
      continue;
    }
    const int saved_errno = errno;
    const int reason = SSL_get_error(ssl_, r);
    if (reason == SSL_ERROR_WANT_READ) break;
    if (reason == SSL_ERROR_WANT_WRITE) {  // the handshake's next flight did not fit the socket
      read_wants_write_ = true;
      SetWriteInterest(true);
      break;
    }
    if (reason == SSL_ERROR_SYSCALL && saved_errno == EINTR) continue;
    errno = saved_errno;
    *error = TlsErrorText(ssl_, r, !tls_accepted_);
    break;
  }
  return n;
}

bool GrpcLoadClient::Connection::HandleRead(const uint8_t* buffer, size_t n,
                                            Clock::time_point now) {
  // Frames are read where they are: in the read buffer, or in `in_` behind
  // the partial frame the last read left.
  const uint8_t* data = buffer;
  size_t size = n;
  if (!in_.empty()) {
    in_.append(reinterpret_cast<const char*>(buffer), size);
    data = reinterpret_cast<const uint8_t*>(in_.data());
    size = in_.size();
  }
  const std::optional<size_t> consumed = HandleFrames(data, size, now);
  if (!consumed) return false;
  if (data == buffer) {
    in_.assign(reinterpret_cast<const char*>(buffer) + *consumed, size - *consumed);
  } else {
    in_.erase(0, *consumed);
  }
  return true;
}

std::optional<size_t> GrpcLoadClient::Connection::HandleFrames(const uint8_t* data, size_t size,
                                                               Clock::time_point now) {
  size_t at = 0;
  while (size - at >= kFrameHeaderBytes) {
    const uint8_t* h = data + at;
    const size_t length = static_cast<size_t>(h[0]) << 16 | static_cast<size_t>(h[1]) << 8 | h[2];
    if (length > kOurMaxFrameBytes) {
      Lost(absl::StrCat("a frame of ", length, " bytes, over the ", kOurMaxFrameBytes, " we take"),
           now);
      return std::nullopt;
    }
    if (size - at < kFrameHeaderBytes + length) break;
    if (!HandleFrame(h[3], h[4], Read32(h + 5) & kLastStreamId, h + kFrameHeaderBytes, length,
                     now)) {
      return std::nullopt;
    }
    at += kFrameHeaderBytes + length;
  }
  return at;
}

bool GrpcLoadClient::Connection::HandleFrame(uint8_t type, uint8_t flags, uint32_t stream_id,
                                             const uint8_t* payload, size_t length,
                                             Clock::time_point now) {
  const auto protocol_error = [&](const char* what) {
    Lost(absl::StrCat("HTTP/2 protocol error: ", what), now);
    return false;
  };
  if (continued_stream_ != 0 && type != NGHTTP2_CONTINUATION) {
    return protocol_error("a header block left unfinished");
  }
  // Padding (DATA, HEADERS): a length byte first, that many bytes at the end.
  const auto strip_padding = [&]() {
    if (!(flags & NGHTTP2_FLAG_PADDED)) return true;
    if (length < 1 || payload[0] >= length) return false;
    length -= 1 + payload[0];
    payload += 1;
    return true;
  };
  switch (type) {
    case NGHTTP2_DATA: {
      if (stream_id == 0) return protocol_error("DATA on stream 0");
      // Flow control counts the whole frame, padding included.
      received_since_top_up_ += length;
      if (received_since_top_up_ >= kWindowTopUpBytes) {
        AppendWindowUpdate(&out_, 0, static_cast<uint32_t>(received_since_top_up_));
        received_since_top_up_ = 0;
      }
      if (!strip_padding()) return protocol_error("bad padding");
      Call* call = Find(stream_id);
      if (call == nullptr) return true;  // a stream we reset
      if (call->body_.size() + length > kMaxResponseBytes) {
        Cancel(call);
        client_->Finish(call, absl::ResourceExhaustedError(absl::StrCat(
                                  "lcache-bench: an answer over ", kMaxResponseBytes, " bytes")));
        return true;
      }
      call->body_.append(reinterpret_cast<const char*>(payload), length);
      if (flags & NGHTTP2_FLAG_END_STREAM) EndStream(call);
      return true;
    }
    case NGHTTP2_HEADERS: {
      if (stream_id == 0) return protocol_error("HEADERS on stream 0");
      if (!strip_padding()) return protocol_error("bad padding");
      if (flags & NGHTTP2_FLAG_PRIORITY) {
        if (length < 5) return protocol_error("short HEADERS");
        payload += 5;
        length -= 5;
      }
      const bool end_stream = flags & NGHTTP2_FLAG_END_STREAM;
      if (!(flags & NGHTTP2_FLAG_END_HEADERS)) {
        continued_stream_ = stream_id;
        continued_end_stream_ = end_stream;
        continued_block_.assign(reinterpret_cast<const char*>(payload), length);
        return true;
      }
      return HandleHeaderBlock(stream_id, payload, length, end_stream) ||
             protocol_error("bad header block (HPACK)");
    }
    case NGHTTP2_CONTINUATION: {
      if (continued_stream_ == 0 || stream_id != continued_stream_) {
        return protocol_error("CONTINUATION out of place");
      }
      continued_block_.append(reinterpret_cast<const char*>(payload), length);
      if (!(flags & NGHTTP2_FLAG_END_HEADERS)) return true;
      continued_stream_ = 0;
      const std::string block = std::move(continued_block_);
      continued_block_.clear();
      return HandleHeaderBlock(stream_id, reinterpret_cast<const uint8_t*>(block.data()),
                               block.size(), continued_end_stream_) ||
             protocol_error("bad header block (HPACK)");
    }
    case NGHTTP2_RST_STREAM: {
      if (length != 4) return protocol_error("RST_STREAM of bad size");
      Call* call = Find(stream_id);
      if (call == nullptr) return true;
      streams_.erase(stream_id);
      call->stream_id_ = 0;
      client_->Finish(call, StatusOfReset(Read32(payload), address_));
      return true;
    }
    case NGHTTP2_SETTINGS:
      if (flags & NGHTTP2_FLAG_ACK) return true;
      if (stream_id != 0 || length % 6 != 0) return protocol_error("bad SETTINGS");
      HandleSettings(payload, length);
      AppendFrameHeader(&out_, 0, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0);
      return true;
    case NGHTTP2_PING:
      if (length != 8) return protocol_error("PING of bad size");
      if (!(flags & NGHTTP2_FLAG_ACK)) {
        AppendFrameHeader(&out_, 8, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0);
        out_.append(reinterpret_cast<const char*>(payload), 8);
      }
      return true;
    case NGHTTP2_GOAWAY: {
      if (length < 8) return protocol_error("short GOAWAY");
      const uint32_t last = Read32(payload) & kLastStreamId;
      state_ = State::kGoingAway;  // no new streams; a new connection once these end
      std::vector<Call*> refused;
      for (const auto& [id, call] : streams_) {
        if (id > last) refused.push_back(call);
      }
      for (Call* call : refused) {
        streams_.erase(call->stream_id_);
        call->stream_id_ = 0;
        client_->Finish(call, absl::UnavailableError(absl::StrCat("lcache-bench: ", address_,
                                                                  " is going away (GOAWAY)")));
      }
      return true;
    }
    case NGHTTP2_WINDOW_UPDATE:
      if (length != 4) return protocol_error("WINDOW_UPDATE of bad size");
      // Stream windows do not matter: a request is sent whole or not at all.
      if (stream_id == 0) send_window_ += Read32(payload) & kLastStreamId;
      return true;
    case NGHTTP2_PUSH_PROMISE:
      return protocol_error("PUSH_PROMISE, which we disabled");
    default:
      return true;  // PRIORITY, and frame types we do not know, are ignored
  }
}

void GrpcLoadClient::Connection::HandleSettings(const uint8_t* payload, size_t length) {
  if (!got_settings_) peer_max_streams_ = UINT32_MAX;  // HTTP/2's default: no limit
  got_settings_ = true;
  for (size_t at = 0; at < length; at += 6) {
    const uint16_t id = static_cast<uint16_t>(payload[at] << 8 | payload[at + 1]);
    const uint32_t value = Read32(payload + at + 2);
    switch (id) {
      case NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS:
        peer_max_streams_ = value;
        break;
      case NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE:
        peer_stream_window_ = value;
        break;
      case NGHTTP2_SETTINGS_MAX_FRAME_SIZE:
        peer_max_frame_ = value;
        break;
      case NGHTTP2_SETTINGS_HEADER_TABLE_SIZE:
        // Our repeat blocks need the default table. The switch is for
        // good: once a table-free block has shrunk the table, those
        // entries are gone.
        if (value < kDefaultHeaderTableBytes) table_free_ = true;
        break;
      default:
        break;
    }
  }
}

bool GrpcLoadClient::Connection::HandleHeaderBlock(uint32_t stream_id, const uint8_t* block,
                                                   size_t size, bool end_stream) {
  // Decoded even for a stream we reset: the decoder's table must follow the
  // server's.
  Call* call = Find(stream_id);
  for (;;) {
    nghttp2_nv field;
    int inflate_flags = 0;
    const ssize_t n = nghttp2_hd_inflate_hd2(inflater_, &field, &inflate_flags, block, size, 1);
    if (n < 0) return false;
    block += n;
    size -= static_cast<size_t>(n);
    if ((inflate_flags & NGHTTP2_HD_INFLATE_EMIT) && call != nullptr) {
      const std::string_view name(reinterpret_cast<const char*>(field.name), field.namelen);
      const std::string_view value(reinterpret_cast<const char*>(field.value), field.valuelen);
      if (name == ":status") {
        call->http_status_ = 0;
        for (char c : value) call->http_status_ = call->http_status_ * 10 + (c - '0');
      } else if (name == "grpc-status") {
        call->has_grpc_status_ = true;
        call->grpc_status_ = wire::GrpcStatusCode(value);
      } else if (name == "grpc-message") {
        call->grpc_message_ = wire::PercentDecode(value);
      }
    }
    if (inflate_flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(inflater_);
      break;
    }
    if (!(inflate_flags & NGHTTP2_HD_INFLATE_EMIT) && size == 0) break;
  }
  if (end_stream && call != nullptr) EndStream(call);
  return true;
}

void GrpcLoadClient::Connection::EndStream(Call* call) {
  streams_.erase(call->stream_id_);
  call->stream_id_ = 0;
  if (call->has_grpc_status_) {
    if (call->grpc_status_ != absl::StatusCode::kOk) {
      client_->Finish(call, absl::Status(call->grpc_status_, call->grpc_message_));
      return;
    }
    absl::StatusOr<std::string_view> message = wire::SingleGrpcMessage(call->body_);
    if (!message.ok()) {
      client_->Finish(
          call, absl::InternalError(absl::StrCat("lcache-bench: bad answer from ", address_, ": ",
                                                 message.status().message())));
      return;
    }
    answered_ = true;
    backoff_ = kFirstBackoff;
    client_->Finish(call, absl::OkStatus(), *message);
    return;
  }
  if (call->http_status_ != 200 && call->http_status_ != 0) {
    client_->Finish(call, absl::Status(wire::GrpcStatusFromHttp(call->http_status_),
                                       absl::StrCat("lcache-bench: HTTP status ",
                                                    call->http_status_, " from ", address_)));
    return;
  }
  client_->Finish(call, absl::InternalError(absl::StrCat("lcache-bench: an answer from ", address_,
                                                         " ended without grpc-status")));
}

absl::StatusOr<std::unique_ptr<GrpcLoadClient>> GrpcLoadClient::Create(
    const std::vector<std::string>& targets, Options options, Done done) {
  if (targets.empty()) return absl::InvalidArgumentError("lcache-bench: no targets");
  const std::string timeout = wire::GrpcTimeoutHeader(options.timeout);
  std::unique_ptr<GrpcLoadClient> client(new GrpcLoadClient(std::move(options), std::move(done)));
  if (client->epoll_fd_ < 0) {
    return absl::InternalError(absl::StrCat("lcache-bench: epoll: ", std::strerror(errno)));
  }
  if (client->options_.tls) {
    absl::StatusOr<SSL_CTX*> ctx = NewTlsContext(*client->options_.tls);
    if (!ctx.ok()) return ctx.status();
    client->ssl_ctx_ = *ctx;
  }
  for (const std::string& target : targets) {
    const std::optional<wire::HostPort> host_port = wire::SplitHostPort(target);
    if (!host_port || host_port->host.empty() || host_port->port.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("lcache-bench: target \"", target, "\" is not host:port"));
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc =
            getaddrinfo(host_port->host.c_str(), host_port->port.c_str(), &hints, &found);
        rc != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("lcache-bench: cannot resolve \"", target, "\": ", gai_strerror(rc)));
    }
    sockaddr_storage address{};
    std::memcpy(&address, found->ai_addr, found->ai_addrlen);
    const socklen_t address_bytes = found->ai_addrlen;
    freeaddrinfo(found);
    absl::StatusOr<HeaderBlocks> blocks = EncodeHeaderBlocks(client->options_, target, timeout);
    if (!blocks.ok()) return blocks.status();
    client->connections_.push_back(std::make_unique<Connection>(
        client.get(), target, host_port->host, address, address_bytes, *std::move(blocks)));
  }
  return client;
}

GrpcLoadClient::GrpcLoadClient(Options options, Done done)
    : options_(std::move(options)),
      done_(std::move(done)),
      epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      read_buffer_(new uint8_t[kReadBytes]),
      now_(Clock::now()) {}

GrpcLoadClient::~GrpcLoadClient() {
  connections_.clear();  // before the epoll fd they are registered with
  if (epoll_fd_ >= 0) close(epoll_fd_);
  SSL_CTX_free(ssl_ctx_);
}

void GrpcLoadClient::Start(Call* call, size_t target, std::string_view message) {
  call->target_ = target % connections_.size();
  call->start_ = polling_ ? now_ : Clock::now();
  call->deadline_ =
      call->start_ + std::chrono::nanoseconds(absl::ToInt64Nanoseconds(options_.timeout));
  call->request_.clear();
  wire::AppendGrpcMessage(message, &call->request_);
  call->stream_id_ = 0;
  deadlines_.PushBack(call);
  ++in_flight_;
  connections_[call->target_]->Enqueue(call);
}

void GrpcLoadClient::Finish(Call* call, const absl::Status& status, std::string_view message) {
  deadlines_.Remove(call);
  --in_flight_;
  const auto latency = now_ - call->start_;
  done_(call, status, message,
        absl::Nanoseconds(std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count()));
}

void GrpcLoadClient::ExpireDeadlines() {
  while (!deadlines_.empty() && deadlines_.head->deadline_ <= now_) {
    Call* call = deadlines_.head;
    connections_[call->target_]->Cancel(call);
    Finish(call, absl::DeadlineExceededError("lcache-bench: deadline exceeded"));
  }
}

Clock::time_point GrpcLoadClient::NextWakeUp(Clock::time_point until) const {
  Clock::time_point wake = until;
  if (!deadlines_.empty()) wake = std::min(wake, deadlines_.head->deadline_);
  for (const auto& c : connections_) wake = std::min(wake, c->retry_at());
  return wake;
}

void GrpcLoadClient::Poll(Clock::time_point until) {
  polling_ = true;
  now_ = Clock::now();
  epoll_event events[64];
  for (;;) {
    for (const auto& c : connections_) c->Pump(now_);
    if (now_ >= until) break;
    const auto wait = NextWakeUp(until) - now_;
    // Rounded up to the millisecond: woken early, a deadline would be missed
    // until the next round.
    const int wait_ms = static_cast<int>(std::clamp<int64_t>(
        (std::chrono::duration_cast<std::chrono::microseconds>(wait).count() + 999) / 1000, 0,
        1000));
    const int n = epoll_wait(epoll_fd_, events, std::size(events), wait_ms);
    now_ = Clock::now();
    for (int i = 0; i < n; ++i) {
      static_cast<Connection*>(events[i].data.ptr)->OnEvent(events[i].events, now_);
    }
    ExpireDeadlines();
  }
  polling_ = false;
}

}  // namespace lcache::tools
