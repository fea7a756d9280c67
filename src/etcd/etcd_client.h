// EtcdClient: the few calls of etcd's v3 gRPC API that discovery needs (list
// a prefix, put, grant / revoke a lease, and the keep-alive and watch
// streams), over generated stubs of our .proto subset (proto/etcd/).
//
// Endpoints: one channel per endpoint, all made up front (gRPC connects
// lazily). Calls go to the current endpoint; a call that fails because the
// endpoint is unreachable (UNAVAILABLE, DEADLINE_EXCEEDED) moves the current
// endpoint to the next one and, for unary calls, is retried there, each
// endpoint at most once per call.
//
// Auth: with a user, every call carries etcd's token as metadata `token`.
// Tokens are per endpoint (etcd's simple tokens are local to the member that
// issued them); one is fetched with Authenticate when first needed and again
// when etcd answers that it is invalid or expired.
//
// Thread-safety: all methods are safe for concurrent use.

#ifndef LCACHE_SRC_ETCD_ETCD_CLIENT_H_
#define LCACHE_SRC_ETCD_ETCD_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "lcache/etcd_discovery.h"

namespace lcache {

class EtcdClient {
 public:
  using KeepAliveStream = grpc::ClientReaderWriter<etcdserverpb::LeaseKeepAliveRequest,
                                                   etcdserverpb::LeaseKeepAliveResponse>;
  using WatchStream =
      grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;

  // Fails on options that cannot work (no endpoint, unreadable TLS files, a
  // user without password). Does not connect.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(const EtcdOptions& options);
  ~EtcdClient();

  struct Listing {
    std::map<std::string, std::string> kvs;  // key -> value, in key order
    int64_t revision = 0;                    // the store's revision the listing reflects
  };
  absl::StatusOr<Listing> ListPrefix(std::string_view prefix);

  struct Lease {
    int64_t id = 0;
    int64_t ttl_seconds = 0;  // as granted (etcd may raise it to its minimum)
  };
  absl::StatusOr<Lease> GrantLease(absl::Duration ttl);
  absl::Status Put(std::string_view key, std::string_view value, int64_t lease_id);
  absl::Status RevokeLease(int64_t lease_id);

  // A stream on the current endpoint. `context` must outlive the stream and
  // carries no deadline: streams live until they fail or are cancelled
  // (ClientContext::TryCancel, from any thread). `*endpoint` receives the
  // endpoint's index, for StreamFailed.
  std::unique_ptr<KeepAliveStream> OpenKeepAlive(grpc::ClientContext* context, int* endpoint);
  std::unique_ptr<WatchStream> OpenWatch(grpc::ClientContext* context, int* endpoint);
  // Reports how a stream on `endpoint` ended, so that the next call moves
  // on if that endpoint is unreachable or renews a rejected token.
  void StreamFailed(int endpoint, const grpc::Status& status);

  // The endpoint calls go to now, for logs.
  std::string CurrentEndpoint() const;

  // The first key after every key that starts with `prefix` (etcd's range_end
  // for a prefix).
  static std::string PrefixEnd(std::string_view prefix);

 private:
  struct Endpoint;
  EtcdClient(std::vector<std::unique_ptr<Endpoint>> endpoints, std::string user,
             std::string password, absl::Duration call_timeout);

  // Runs `call(endpoint, context)` on the current endpoint with a deadline,
  // retrying on the next endpoint if this one is unreachable and once more
  // after renewing a rejected token.
  template <typename Call>
  grpc::Status Unary(Call call);

  int current() const;
  void MoveOn(int from);
  // Adds the endpoint's token to `context` (authenticating first if none).
  grpc::Status Authorize(Endpoint& endpoint, grpc::ClientContext* context);
  static bool TokenRejected(const grpc::Status& status);
  static bool Unreachable(const grpc::Status& status);

  const std::vector<std::unique_ptr<Endpoint>> endpoints_;
  const std::string user_;
  const std::string password_;
  const absl::Duration call_timeout_;

  mutable std::mutex mu_;
  int current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace lcache

#endif  // LCACHE_SRC_ETCD_ETCD_CLIENT_H_
