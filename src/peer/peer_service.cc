#include "peer/peer_service.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lcache/json_codec.h"
#include "lcache/store.h"
#include "peer/health_check.h"

namespace lcache::internal {
namespace {

// The owner's remaining time to live of a value, in whole milliseconds
// rounded down (so the asker's copy cannot outlive ours); nullopt when it
// does not expire, so that answers without a TTL are the Go program's bytes.
std::optional<int64_t> RemainingMillis(const Group& group, absl::Time expire_at) {
  if (expire_at == absl::InfiniteFuture()) return std::nullopt;
  return std::max<int64_t>(
      0, absl::ToInt64Milliseconds(expire_at - group.clock().Now()));  // truncates towards 0
}

std::string EncodeValue(const Group& group, const ExpiringValue& v) {
  return wire::EncodeGetResponse(v.value.view(), "", RemainingMillis(group, v.expire_at));
}

// The in-band answer of a Group::Get result. An error whose message is empty
// still needs a non-empty `err`, or the client would read it as an empty value.
std::string EncodeResult(const Group& group, const absl::StatusOr<ExpiringValue>& v) {
  if (v.ok()) return EncodeValue(group, *v);
  const absl::string_view message = v.status().message();
  if (message.empty()) return wire::EncodeGetResponse("", v.status().ToString());
  return wire::EncodeGetResponse("", std::string_view(message.data(), message.size()));
}

PeerReply Ok(std::string body) { return {.body = std::move(body)}; }

// A load that did not run is the call's status; anything else, the key's
// in-band answer.
PeerReply ReplyOf(const Group& group, const absl::StatusOr<ExpiringValue>& v) {
  if (!v.ok() && IsLoadNotRun(v.status())) {
    const absl::string_view message = v.status().message();
    return PeerReply::Error(v.status().code(), std::string(message.data(), message.size()));
  }
  return Ok(EncodeResult(group, v));
}

}  // namespace

// --- PeerService --------------------------------------------------------------

PeerService::PeerService(const PeerServerOptions& options)
    : registry_(options.registry),
      max_key_bytes_(options.max_key_bytes),
      max_request_bytes_(static_cast<size_t>(options.max_request_bytes)),
      serving_(options.serving),
      in_cluster_(options.in_cluster),
      loads_(std::make_shared<Loads>(options.load_threads, options.max_queued_loads)),
      run_load_([loads = loads_](LoadTask task) -> absl::Status {
        Loads* const l = loads.get();  // outlives its executor's tasks
        size_t queued = 0;
        const bool accepted = l->executor.TrySubmit(
            [l, task = std::move(task)] {
              if (absl::GetCurrentTimeNanos() > l->skip_after_ns.load(std::memory_order_relaxed)) {
                task(absl::UnavailableError("lcache: server shutting down"));
              } else {
                task(absl::OkStatus());
              }
            },
            &queued);
        if (accepted) return absl::OkStatus();
        if (l->stopped.load(std::memory_order_relaxed)) {
          return absl::UnavailableError("lcache: server shutting down");
        }
        return absl::ResourceExhaustedError(
            absl::StrCat("lcache: server overloaded, ", queued, " loads queued"));
      }) {
  loads_->skip_after_ns.store(std::numeric_limits<int64_t>::max(), std::memory_order_relaxed);
}

absl::Status PeerService::CheckSize(std::string_view message) const {
  if (message.size() <= max_request_bytes_) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("lcache: request of ", message.size(),
                                                 " bytes is over the limit of ",
                                                 max_request_bytes_));
}

absl::StatusOr<wire::GetRequest> PeerService::DecodeGet(std::string_view message) const {
  if (absl::Status s = CheckSize(message); !s.ok()) return s;
  return wire::DecodeGetRequest(message, max_key_bytes_);
}

PeerReply PeerService::OutOfCluster() {
  return PeerReply::Error(
      absl::StatusCode::kUnavailable,
      "lcache: this node is out of the cluster: its etcd lease lapsed (no renewal confirmed "
      "within the TTL), so the others dropped it and its copies may be stale; it serves again "
      "once it has registered anew. Ask another node");
}

std::optional<PeerReply> PeerService::Get(std::string_view message, bool forwarded,
                                          absl::Time deadline, std::function<void(PeerReply)> done,
                                          CallerGone* caller_gone) {
  absl::StatusOr<wire::GetRequest> request = DecodeGet(message);
  if (!request.ok()) {
    return PeerReply::Error(absl::StatusCode::kInvalidArgument,
                            std::string(request.status().message()));
  }
  // Unknown group and empty key: the Go program's in-band answers.
  Group* group = registry_->GetGroup(request->group);
  if (group == nullptr) return Ok(wire::EncodeGetResponse("", kKeyNotFoundMessage));
  group->CountServerRequest();
  if (request->key.empty()) return Ok(wire::EncodeGetResponse("", kEmptyKeyMessage));
  if (!InCluster()) return OutOfCluster();
  if (std::optional<ExpiringValue> hit = group->GetIfCached(request->key)) {
    return Ok(EncodeValue(*group, *hit));
  }
  // Made only for a miss, so a hit allocates nothing for it.
  std::shared_ptr<std::atomic<bool>> gone;
  if (caller_gone != nullptr) {
    gone = std::make_shared<std::atomic<bool>>(false);
    caller_gone->flag = gone;
    caller_gone->tell = [group, key = request->key] { group->CallerLeft(key); };
  }
  group->GetAsync(request->key,
                  {.scope = forwarded ? LoadScope::kLocalOnly : LoadScope::kAnywhere,
                   .run_load = run_load_,
                   .deadline = deadline,
                   .cancelled = std::move(gone)},
                  [group, done = std::move(done)](absl::StatusOr<ExpiringValue> v) {
                    done(ReplyOf(*group, v));
                  });
  return std::nullopt;
}

PeerReply PeerService::Peek(std::string_view message) {
  absl::StatusOr<wire::GetRequest> request = DecodeGet(message);
  if (!request.ok()) {
    return PeerReply::Error(absl::StatusCode::kInvalidArgument,
                            std::string(request.status().message()));
  }
  Group* group = registry_->GetGroup(request->group);
  if (group == nullptr || request->key.empty()) {
    return Ok(wire::EncodeGetResponse("", kKeyNotFoundMessage));
  }
  if (!InCluster()) return OutOfCluster();
  std::optional<ExpiringValue> stored = group->Peek(request->key);
  if (!stored) return Ok(wire::EncodeGetResponse("", kKeyNotFoundMessage));
  return Ok(EncodeValue(*group, *stored));
}

bool PeerService::IsMutationMethod(std::string_view method) {
  return method == kSetMethod || method == kRemoveMethod || method == kInvalidateMethod ||
         method == kHandoffMethod || method == kReplicateMethod || method == kSetReplicaMethod;
}

namespace {

// A mutation's outcome as a reply: bad input in-band, as Get's errors are;
// a failure to reach the owner as the call's status.
PeerReply ReplyOfMutation(const absl::StatusOr<MutationResult>& r) {
  if (r.ok()) return Ok(wire::EncodeMutationResponse("", r->unacknowledged));
  const absl::string_view message = r.status().message();
  if (absl::IsInvalidArgument(r.status()) || absl::IsNotFound(r.status())) {
    return Ok(wire::EncodeMutationResponse(std::string_view(message.data(), message.size())));
  }
  return PeerReply::Error(r.status().code(), std::string(message.data(), message.size()));
}

}  // namespace

std::optional<PeerReply> PeerService::Mutate(std::string_view method, std::string_view message,
                                             bool forwarded, absl::Time deadline,
                                             std::function<void(PeerReply)> done) {
  if (absl::Status s = CheckSize(message); !s.ok()) {
    return PeerReply::Error(absl::StatusCode::kInvalidArgument, std::string(s.message()));
  }
  const bool set = method == kSetMethod || method == kHandoffMethod ||
                   method == kReplicateMethod || method == kSetReplicaMethod;
  absl::StatusOr<wire::SetRequest> request;
  if (set) {
    request = wire::DecodeSetRequest(message, max_key_bytes_);
  } else if (absl::StatusOr<wire::GetRequest> r = wire::DecodeGetRequest(message, max_key_bytes_);
             r.ok()) {
    request = wire::SetRequest{
        .group = std::move(r->group), .key = std::move(r->key), .value = {}, .ttl_ms = {}};
  } else {
    request = r.status();
  }
  if (!request.ok()) {
    return PeerReply::Error(absl::StatusCode::kInvalidArgument,
                            std::string(request.status().message()));
  }
  Group* group = registry_->GetGroup(request->group);
  if (method == kInvalidateMethod) {
    if (group != nullptr && !request->key.empty()) group->Invalidate(request->key);
    return Ok(wire::EncodeMutationResponse(""));
  }
  if (method == kSetReplicaMethod && group == nullptr) {
    return Ok(wire::EncodeMutationResponse(""));  // an Invalidate: nothing to drop
  }
  if (group == nullptr) {
    return Ok(wire::EncodeMutationResponse(
        absl::StrCat("lcache: unknown group \"", request->group, "\"")));
  }
  if (method == kHandoffMethod) {
    // Past its deadline the sender no longer counts on it, and the value is
    // older than the hand-off's bound (Group::HandOff).
    if (absl::Now() > deadline) {
      return PeerReply::Error(absl::StatusCode::kDeadlineExceeded,
                              "lcache: Handoff arrived after its deadline; not kept");
    }
    std::optional<absl::Duration> ttl;
    if (request->ttl_ms) ttl = absl::Milliseconds(*request->ttl_ms);
    const absl::Status s = group->AcceptHandoff(request->key, request->value, ttl);
    const absl::string_view err = s.message();
    return Ok(wire::EncodeMutationResponse(std::string_view(err.data(), err.size())));
  }
  if (method == kReplicateMethod || method == kSetReplicaMethod) {
    // A Replicate past its deadline may have been overtaken by the
    // invalidation of a mutation (Group::AcceptReplica). A late SetReplica
    // still drops the copies, as the Invalidate it stands for would.
    const bool late = absl::Now() > deadline;
    if (late && method == kReplicateMethod) {
      return PeerReply::Error(absl::StatusCode::kDeadlineExceeded,
                              "lcache: Replicate arrived after its deadline; not kept");
    }
    std::optional<absl::Duration> ttl;
    if (request->ttl_ms) ttl = absl::Milliseconds(*request->ttl_ms);
    const absl::Status s = method == kReplicateMethod
                               ? group->AcceptReplica(request->key, request->value, ttl)
                               : group->AcceptSetReplica(request->key, request->value, ttl);
    const absl::string_view err = s.message();
    return Ok(wire::EncodeMutationResponse(std::string_view(err.data(), err.size())));
  }
  if (!InCluster()) return OutOfCluster();
  const MutationOptions options{
      .scope = forwarded ? LoadScope::kLocalOnly : LoadScope::kAnywhere, .deadline = deadline};
  auto answer = [done = std::move(done)](absl::StatusOr<MutationResult> r) {
    done(ReplyOfMutation(r));
  };
  if (set) {
    std::optional<absl::Duration> ttl;
    if (request->ttl_ms) ttl = absl::Milliseconds(*request->ttl_ms);
    group->SetAsync(request->key, request->value, ttl, options, std::move(answer));
  } else {
    group->RemoveAsync(request->key, options, std::move(answer));
  }
  return std::nullopt;
}

PeerReply PeerService::HealthCheck(std::string_view message) const {
  std::optional<std::string> service = HealthCheckService(message);
  if (!service) {
    return PeerReply::Error(absl::StatusCode::kInvalidArgument,
                            "lcache: not a grpc.health.v1.HealthCheckRequest");
  }
  if (!service->empty() && *service != "lcache.LCache") {
    return PeerReply::Error(absl::StatusCode::kNotFound,
                            absl::StrCat("lcache: unknown service \"", *service,
                                         "\" (this server has \"\" and \"lcache.LCache\")"));
  }
  const bool serving =
      !draining_.load(std::memory_order_acquire) && (serving_ == nullptr || serving_());
  return Ok(HealthCheckResponse(serving));
}

void PeerService::Stop(absl::Time skip_after) {
  SkipLoadsAfter(skip_after);
  loads_->stopped.store(true, std::memory_order_relaxed);
  loads_->executor.Stop();
}

absl::Status ValidatePeerServerOptions(const PeerServerOptions& options) {
  if (options.registry == nullptr) {
    return absl::InvalidArgumentError("lcache: PeerServerOptions.registry is null");
  }
  if (options.address.empty()) {
    return absl::InvalidArgumentError(
        "lcache: PeerServerOptions.address is empty (expected host:port)");
  }
  if (options.max_key_bytes == 0 || options.max_key_bytes > kMaxStoreKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: PeerServerOptions.max_key_bytes must be in [1, ", kMaxStoreKeyBytes,
                     "], got ", options.max_key_bytes));
  }
  if (options.max_request_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: PeerServerOptions.max_request_bytes must be > 0, got ",
                     options.max_request_bytes));
  }
  if (options.load_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: PeerServerOptions.load_threads must be >= 1, got ", options.load_threads));
  }
  if (options.limits.max_connections < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: PeerServerLimits.max_connections must be >= 1, got ", options.limits.max_connections));
  }
  if (options.limits.idle_timeout <= absl::ZeroDuration() ||
      options.limits.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "lcache: PeerServerLimits.idle_timeout and request_timeout must be > 0");
  }
  // The largest request must fit (its 5-byte gRPC prefix included).
  if (options.limits.max_connection_buffer_bytes < static_cast<size_t>(options.max_request_bytes) + 5 ||
      options.limits.max_buffer_bytes < options.limits.max_connection_buffer_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: PeerServerOptions needs max_request_bytes + 5 <= max_connection_buffer_bytes <= "
        "max_buffer_bytes, got ",
        options.max_request_bytes, ", ", options.limits.max_connection_buffer_bytes, ", ",
        options.limits.max_buffer_bytes));
  }
  if (options.max_queued_loads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: PeerServerOptions.max_queued_loads must be >= 0, got ", options.max_queued_loads));
  }
  return absl::OkStatus();
}

}  // namespace lcache::internal
