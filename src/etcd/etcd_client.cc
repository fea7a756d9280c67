#include "etcd/etcd_client.h"

#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lcache {

struct EtcdClient::Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;

  std::mutex mu;
  std::string token ABSL_GUARDED_BY(mu);  // empty: none yet (or auth is off)
};

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("cannot read the etcd ", what, " ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::Status ToStatus(const grpc::Status& s, absl::string_view what, absl::string_view endpoint) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("etcd ", what, " at ", endpoint, ": ", s.error_message()));
}

// Calls wait for the channel to connect (within their deadline; streams
// until cancelled) instead of failing at once while it is in reconnect
// backoff. That is also what makes a reconnect happen promptly: gRPC
// connects while a call is waiting on the channel, but with nothing waiting
// only its backup poller (every 5 s) notices that etcd is back.
void WaitForReady(grpc::ClientContext* context) { context->set_wait_for_ready(true); }

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  // gRPC's default reconnect backoff grows to 2 minutes; after etcd comes
  // back we want to notice within a second, not minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Pings find a hung etcd (or a dead path to it) under an open stream.
  // etcd refuses pings closer than 5 s (--grpc-keepalive-min-time) and pings
  // without a call in flight; our streams are always open.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
  return args;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const EtcdOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("no etcd endpoint given");
  if (options.user.empty() != options.password.empty()) {
    return absl::InvalidArgumentError("etcd authentication needs both a user and a password");
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "an etcd client certificate needs both its cert and key file");
  }
  if (!options.cert_file.empty() && options.ca_file.empty()) {
    return absl::InvalidArgumentError("an etcd client certificate needs the CA file (TLS)");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = ReadFile(options.ca_file, "CA file");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    if (!options.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(options.cert_file, "cert file");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile(options.key_file, "key file");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
  }
  std::vector<std::unique_ptr<Endpoint>> endpoints;
  for (const std::string& address : options.endpoints) {
    if (address.empty()) return absl::InvalidArgumentError("empty etcd endpoint");
    auto e = std::make_unique<Endpoint>();
    e->address = address;
    e->channel = grpc::CreateCustomChannel(address, credentials, ChannelArgs());
    e->kv = etcdserverpb::KV::NewStub(e->channel);
    e->lease = etcdserverpb::Lease::NewStub(e->channel);
    e->watch = etcdserverpb::Watch::NewStub(e->channel);
    e->auth = etcdserverpb::Auth::NewStub(e->channel);
    endpoints.push_back(std::move(e));
  }
  return std::unique_ptr<EtcdClient>(
      new EtcdClient(std::move(endpoints), options.user, options.password, options.call_timeout));
}

EtcdClient::EtcdClient(std::vector<std::unique_ptr<Endpoint>> endpoints, std::string user,
                       std::string password, absl::Duration call_timeout)
    : endpoints_(std::move(endpoints)),
      user_(std::move(user)),
      password_(std::move(password)),
      call_timeout_(call_timeout) {}

EtcdClient::~EtcdClient() = default;

int EtcdClient::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

void EtcdClient::MoveOn(int from) {
  std::lock_guard lock(mu_);
  // Only the first caller that saw `from` fail moves on, so two calls that
  // fail together skip one endpoint, not two.
  if (current_ == from) current_ = (from + 1) % static_cast<int>(endpoints_.size());
}

std::string EtcdClient::CurrentEndpoint() const { return endpoints_[current()]->address; }

bool EtcdClient::Unreachable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

bool EtcdClient::TokenRejected(const grpc::Status& status) {
  // etcd answers a missing, expired or invalid token with UNAUTHENTICATED
  // ("etcdserver: invalid auth token") or, for a stale auth revision,
  // FAILED_PRECONDITION ("etcdserver: revision of auth store is old").
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
          status.error_message().find("auth") != std::string::npos);
}

grpc::Status EtcdClient::Authorize(Endpoint& endpoint, grpc::ClientContext* context) {
  if (user_.empty()) return grpc::Status::OK;
  std::lock_guard lock(endpoint.mu);
  if (endpoint.token.empty()) {
    grpc::ClientContext auth_context;
    auth_context.set_deadline(std::chrono::system_clock::now() +
                              absl::ToChronoMilliseconds(call_timeout_));
    WaitForReady(&auth_context);
    etcdserverpb::AuthenticateRequest request;
    request.set_name(user_);
    request.set_password(password_);
    etcdserverpb::AuthenticateResponse response;
    grpc::Status s = endpoint.auth->Authenticate(&auth_context, request, &response);
    if (!s.ok()) return s;
    endpoint.token = response.token();
  }
  context->AddMetadata("token", endpoint.token);
  return grpc::Status::OK;
}

template <typename Call>
grpc::Status EtcdClient::Unary(Call call) {
  grpc::Status status;
  bool renewed_token = false;
  for (size_t attempt = 0; attempt < endpoints_.size(); ++attempt) {
    const int index = current();
    Endpoint& endpoint = *endpoints_[index];
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(call_timeout_));
    WaitForReady(&context);
    status = Authorize(endpoint, &context);
    if (status.ok()) status = call(endpoint, &context);
    if (status.ok()) return status;
    if (TokenRejected(status) && !user_.empty() && !renewed_token) {
      renewed_token = true;
      {
        std::lock_guard lock(endpoint.mu);
        endpoint.token.clear();
      }
      --attempt;  // the same endpoint again, with a fresh token
      continue;
    }
    if (!Unreachable(status)) return status;
    MoveOn(index);
  }
  return status;
}

absl::StatusOr<EtcdClient::Listing> EtcdClient::ListPrefix(std::string_view prefix) {
  etcdserverpb::RangeRequest request;
  request.set_key(std::string(prefix));
  request.set_range_end(PrefixEnd(prefix));
  etcdserverpb::RangeResponse response;
  std::string where;
  grpc::Status s = Unary([&](Endpoint& e, grpc::ClientContext* context) {
    where = e.address;
    return e.kv->Range(context, request, &response);
  });
  if (!s.ok()) return ToStatus(s, "range", where);
  Listing listing;
  listing.revision = response.header().revision();
  for (const mvccpb::KeyValue& kv : response.kvs()) listing.kvs[kv.key()] = kv.value();
  return listing;
}

absl::StatusOr<EtcdClient::Lease> EtcdClient::GrantLease(absl::Duration ttl) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse response;
  std::string where;
  grpc::Status s = Unary([&](Endpoint& e, grpc::ClientContext* context) {
    where = e.address;
    return e.lease->LeaseGrant(context, request, &response);
  });
  if (!s.ok()) return ToStatus(s, "lease grant", where);
  if (!response.error().empty() || response.id() == 0) {
    return absl::UnavailableError(
        absl::StrCat("etcd lease grant at ", where, ": ", response.error()));
  }
  return Lease{.id = response.id(), .ttl_seconds = response.ttl()};
}

absl::Status EtcdClient::Put(std::string_view key, std::string_view value, int64_t lease_id) {
  etcdserverpb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease_id);
  etcdserverpb::PutResponse response;
  std::string where;
  grpc::Status s = Unary([&](Endpoint& e, grpc::ClientContext* context) {
    where = e.address;
    return e.kv->Put(context, request, &response);
  });
  return ToStatus(s, "put", where);
}

absl::Status EtcdClient::RevokeLease(int64_t lease_id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  etcdserverpb::LeaseRevokeResponse response;
  std::string where;
  grpc::Status s = Unary([&](Endpoint& e, grpc::ClientContext* context) {
    where = e.address;
    return e.lease->LeaseRevoke(context, request, &response);
  });
  return ToStatus(s, "lease revoke", where);
}

std::unique_ptr<EtcdClient::KeepAliveStream> EtcdClient::OpenKeepAlive(grpc::ClientContext* context,
                                                                       int* endpoint) {
  *endpoint = current();
  Endpoint& e = *endpoints_[*endpoint];
  WaitForReady(context);
  // An auth failure shows up as the stream's status; StreamFailed handles it.
  (void)Authorize(e, context);
  return e.lease->LeaseKeepAlive(context);
}

std::unique_ptr<EtcdClient::WatchStream> EtcdClient::OpenWatch(grpc::ClientContext* context,
                                                               int* endpoint) {
  *endpoint = current();
  Endpoint& e = *endpoints_[*endpoint];
  WaitForReady(context);
  (void)Authorize(e, context);
  return e.watch->Watch(context);
}

void EtcdClient::StreamFailed(int endpoint, const grpc::Status& status) {
  if (TokenRejected(status)) {
    std::lock_guard lock(endpoints_[endpoint]->mu);
    endpoints_[endpoint]->token.clear();
  } else if (Unreachable(status)) {
    MoveOn(endpoint);
  }
}

std::string EtcdClient::PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key (etcd's convention)
}

}  // namespace lcache
