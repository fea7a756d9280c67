// A Group's replicas (docs/PROTOCOL.md, section 9): the owner of a key
// pushes the values it loads to the key's replica holders; a holder keeps
// them apart from its store and answers from them only when it loads the
// key: for an owner that failed (the stand-in), or as the key's new owner.
// Both ends keep the leases of key_epochs.h: a Set or Remove racing a push
// wins.

#include <string>

#include "absl/time/clock.h"
#include "core/flights.h"
#include "core/group_internal.h"
#include "core/key_epochs.h"
#include "lcache/group.h"

namespace lcache {

std::optional<absl::Duration> Group::TtlOf(absl::Time expire_at) const {
  if (expire_at == absl::InfiniteFuture()) return std::nullopt;
  return expire_at - clock_->Now();
}

absl::Time Group::ExpiryOfTtl(std::optional<absl::Duration> ttl) const {
  if (!ttl || *ttl <= absl::ZeroDuration() || *ttl == absl::InfiniteDuration()) {
    return absl::InfiniteFuture();
  }
  return clock_->Now() + *ttl;
}

// --- The owner ---------------------------------------------------------------

void Group::PushReplicas(std::string_view key, const ExpiringValue& v, uint64_t epoch) {
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  if (picker == nullptr) return;
  std::vector<PeerPicker::Peer> holders = picker->ReplicaHolders(key);
  if (holders.empty()) return;
  const std::optional<absl::Duration> ttl = TtlOf(v.expire_at);
  if (ttl && *ttl <= absl::ZeroDuration()) return;  // due already: nothing to keep
  const PeerMutation replicate{.kind = PeerMutation::Kind::kReplicate,
                               .group = name_,
                               .key = key,
                               .value = v.value.view(),
                               .ttl = ttl};
  const int64_t bytes = static_cast<int64_t>(key.size() + v.value.size());
  for (PeerPicker::Peer& holder : holders) {
    // One that is out would only cost a timeout; one that does not take
    // replicas (a Go node) said so once.
    if (holder.out || no_replicas_->Contains(holder.address)) continue;
    // The callback does not hold the group: a push is not waited for, and
    // may end after it. What it needs is shared.
    holder.getter->StartMutate(
        replicate, absl::Now() + kReplicaPushTimeout,
        [epochs = epochs_, counters = counters_, no_replicas = no_replicas_, epoch, bytes,
         group = name_, key = std::string(key),
         holder](absl::StatusOr<MutationResult> r) {
          if (absl::IsUnimplemented(r.status())) {
            no_replicas->Insert(holder.address);
            return;  // keeps nothing: no follow-up needed
          }
          if (r.ok()) {
            counters->Add(Counters::kReplicasPushed);
            counters->Add(Counters::kReplicaBytesPushed, bytes);
          } else {
            counters->Add(Counters::kReplicaPushFailures);
          }
          // Changed here while on its way: the holder may have kept the
          // value after the mutation's invalidation reached it, if the
          // quiet period did not catch it (also when the call failed: it
          // may have arrived all the same).
          if (epochs->Begin(key) == epoch) return;
          holder.getter->StartMutate(
              {.kind = PeerMutation::Kind::kInvalidate, .group = group, .key = key},
              absl::Now() + kReplicaPushTimeout, [](absl::StatusOr<MutationResult>) {});
        });
  }
}

// --- The holder ----------------------------------------------------------------

bool Group::AnswerFromReplica(const std::shared_ptr<internal::Flight>& local, uint64_t epoch) {
  if (replica_store_ == nullptr) return false;
  const std::string& key = local->key();
  std::optional<ExpiringValue> replica = replica_store_->GetWithExpiry(key);
  if (!replica) return false;
  counters_->Add(Counters::kReplicaHits);
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  const bool owner = picker == nullptr || picker->OwnerOf(key).getter == nullptr;
  if (owner) {
    // The owner left the ring and this node inherited the key: the copy
    // becomes the owner's, and is replicated onward so that the next
    // failure finds it too.
    bool stored = false;
    if (!epochs_->StoreIfUnchanged(key, epoch, [&] {
          stored = store_->Set(key, replica->value.view(), replica->expire_at);
          if (stored) replica_store_->Remove(key);
          if (hot_store_ != nullptr) hot_store_->Remove(key);
        })) {
      counters_->Add(Counters::kLoadsDiscarded);
    }
    if (stored) PushReplicas(key, *replica, epoch);
  }
  // Else a stand-in: the owner is on the ring still, and this answer is for
  // the time it fails; the replica stays one.
  local_flights_->Finish(local, *std::move(replica));
  return true;
}

absl::Status Group::AcceptReplica(std::string_view key, std::string_view value,
                                  std::optional<absl::Duration> ttl) {
  if (absl::Status s = ValidateSet(key, value, ttl); !s.ok()) return s;
  bool kept = false;
  if (replica_store_ != nullptr) {
    const absl::Time expire_at = ExpiryOfTtl(ttl);
    epochs_->StoreIfQuiet(key, kReplicaQuiet,
                          [&] { kept = replica_store_->Set(key, value, expire_at); });
  }
  counters_->Add(kept ? Counters::kReplicasKept : Counters::kReplicasRefused);
  return absl::OkStatus();
}

absl::Status Group::AcceptSetReplica(std::string_view key, std::string_view value,
                                     std::optional<absl::Duration> ttl) {
  // It stands for an Invalidate: a value this node cannot keep (its store
  // takes smaller entries) still drops the copies.
  if (absl::Status s = ValidateKey(key); !s.ok()) return s;
  const bool keepable = ValidateSet(key, value, ttl).ok();
  counters_->Add(Counters::kInvalidationsReceived);
  const absl::Time expire_at = ExpiryOfTtl(ttl);
  bool kept = false;
  // DropCopies, with the value kept in the same step when the stripe was
  // quiet before.
  epochs_->MutateNoting(key, kReplicaQuiet, [&](bool quiet) {
    remote_flights_->Detach(key);
    local_flights_->Detach(key);
    if (hot_store_ != nullptr) hot_store_->Remove(key);
    store_->Remove(key);
    if (replica_store_ == nullptr) return;
    replica_store_->Remove(key);
    if (quiet && keepable) kept = replica_store_->Set(key, value, expire_at);
  });
  counters_->Add(kept ? Counters::kReplicasKept : Counters::kReplicasRefused);
  return absl::OkStatus();
}

}  // namespace lcache
