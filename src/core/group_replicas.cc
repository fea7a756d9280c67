// A Group's replicas (docs/PROTOCOL.md, section 9): the owner of a key
// pushes the values it loads to the key's replica holders; a holder keeps
// them apart from its store and answers from them only when it loads the
// key: for an owner that failed (the stand-in), or as the key's new owner.
// After a ring change, Rereplicate gives the keys new holders.
// Both ends keep the leases of key_epochs.h: a Set or Remove racing a push
// wins.

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <string>
#include <vector>

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
  for (const PeerPicker::Peer& holder : picker->ReplicaHolders(key)) {
    SendReplicate(holder, key, v, epoch, nullptr);
  }
}

void Group::SendReplicate(const PeerPicker::Peer& holder, std::string_view key,
                          const ExpiringValue& v, uint64_t epoch,
                          std::function<void(bool acknowledged)> ended) {
  const std::optional<absl::Duration> ttl = TtlOf(v.expire_at);
  // One that is out would only cost a timeout; one that does not take
  // replicas (a Go node) said so once; a value due already keeps nothing.
  if (holder.out || no_replicas_->Contains(holder.address) ||
      (ttl && *ttl <= absl::ZeroDuration())) {
    if (ended) ended(false);
    return;
  }
  const int64_t bytes = static_cast<int64_t>(key.size() + v.value.size());
  // The callback does not hold the group: a load's push is not waited for,
  // and may end after it. What it needs is shared.
  holder.getter->StartMutate(
      {.kind = PeerMutation::Kind::kReplicate,
       .group = name_,
       .key = key,
       .value = v.value.view(),
       .ttl = ttl},
      absl::Now() + kReplicaPushTimeout,
      [epochs = epochs_, counters = counters_, no_replicas = no_replicas_, unacked = unacked_,
       epoch, bytes, group = name_, key = std::string(key), holder,
       ended = std::move(ended)](absl::StatusOr<MutationResult> r) {
        if (ended) ended(r.ok());
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
        // value after the mutation's invalidation reached it, if the quiet
        // period did not catch it (also when the call failed: it may have
        // arrived all the same).
        if (epochs->Begin(key) == epoch) return;
        holder.getter->StartMutate(
            {.kind = PeerMutation::Kind::kInvalidate, .group = group, .key = key},
            absl::Now() + kReplicaPushTimeout,
            [unacked, address = holder.address, key](absl::StatusOr<MutationResult> r) {
              if (!r.ok()) unacked->Add(address, key);
            });
      });
}

int64_t Group::RetryInvalidations(absl::Time deadline) {
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  if (picker == nullptr || unacked_->size() == 0) return 0;
  auto pending = unacked_->Take();
  const std::vector<PeerPicker::Peer> peers = picker->OtherPeers();
  const absl::Time now = absl::Now();
  auto window = std::make_shared<internal::CallWindow>(16);
  auto acknowledged = std::make_shared<std::atomic<int64_t>>(0);
  // Sends one Invalidate (false: no room before the deadline); `ended(ok)`
  // runs when it has ended.
  auto send = [&](const PeerPicker::Peer& peer, const std::string& key,
                  std::function<void(bool)> ended) {
    if (!window->Enter(deadline)) return false;
    peer.getter->StartMutate(
        {.kind = PeerMutation::Kind::kInvalidate, .group = name_, .key = key}, deadline,
        [window, acknowledged, ended = std::move(ended)](absl::StatusOr<MutationResult> r) {
          if (r.ok()) acknowledged->fetch_add(1);
          ended(r.ok());
          window->Leave();
        });
    return true;
  };
  for (auto& [address, keys] : pending) {
    if (no_replicas_->Contains(address)) continue;  // holds none (a Go node)
    auto keep_all = [&, address = address] {
      for (const std::string& key : keys) unacked_->Add(address, key);
    };
    auto peer = std::find_if(peers.begin(), peers.end(),
                             [&](const PeerPicker::Peer& p) { return p.address == address; });
    if (peer == peers.end()) {
      // Off the ring: kept for a while, in case it comes back as it was.
      if (!unacked_->Absent(address, now)) keep_all();
      continue;
    }
    unacked_->Present(address);
    if (peer->out) {
      keep_all();
      continue;
    }
    // One call first: a holder still unreachable costs one call a round,
    // not one per key.
    auto first = std::make_shared<std::promise<bool>>();
    std::future<bool> reached = first->get_future();
    if (!send(*peer, *keys.begin(), [first](bool ok) { first->set_value(ok); }) || !reached.get()) {
      keep_all();
      continue;
    }
    for (auto it = std::next(keys.begin()); it != keys.end(); ++it) {
      auto keep = [unacked = unacked_, address = address, key = *it](bool ok) {
        if (!ok) unacked->Add(address, key);
      };
      if (!send(*peer, *it, keep)) keep(false);
    }
  }
  window->AwaitEmpty();
  counters_->Add(Counters::kReplicaInvalidationsRetried, acknowledged->load());
  return acknowledged->load();
}

// --- After a ring change ---------------------------------------------------------

RereplicateResult Group::Rereplicate(const RereplicateOptions& options) {
  RereplicateResult result;
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  if (picker == nullptr) return result;
  auto window = std::make_shared<internal::CallWindow>(options.max_in_flight);
  auto pushed = std::make_shared<std::atomic<int64_t>>(0);
  auto failed = std::make_shared<std::atomic<int64_t>>(0);
  auto over = [&] {
    return absl::Now() >= options.deadline || (options.stop != nullptr && options.stop());
  };
  // Sends the key's value to `holders`, waiting for room among the calls
  // in flight; false when the walk is to end. The value is read by `read`
  // for each call once it has room: a value of the store held while this
  // waits would look read by another thread to every hit of it meanwhile,
  // which marks it contended for good (sharded_store.h).
  using Read = std::function<std::optional<ExpiringValue>()>;
  auto push = [&](std::string_view key, uint64_t epoch,
                  const std::vector<PeerPicker::Peer>& holders, const Read& read) {
    for (const PeerPicker::Peer& holder : holders) {
      if (!window->Enter(options.deadline)) {
        result.cut_short = true;
        return false;
      }
      std::optional<ExpiringValue> v = read();
      if (!v) {  // gone since
        window->Leave();
        return true;
      }
      SendReplicate(holder, key, *v, epoch, [window, pushed, failed](bool acknowledged) {
        (acknowledged ? pushed : failed)->fetch_add(1);
        window->Leave();
      });
    }
    return true;
  };
  auto visit = [&](bool replicas) {
    return [&, replicas](std::string_view key) {
      if (over()) {
        result.cut_short = true;
        return false;
      }
      // The epoch before the value, as a load takes it: a mutation after
      // this read is followed to the holder by an Invalidate.
      const uint64_t epoch = epochs_->Begin(key);
      if (replicas) {
        // A replica of a key this node inherited: the owner's copy now.
        if (picker->OwnerOf(key).getter != nullptr) return true;
        std::optional<ExpiringValue> v = replica_store_->Peek(key);
        if (!v) return true;
        bool stored = false;
        epochs_->StoreIfUnchanged(key, epoch, [&] {
          if (!store_->Peek(key).has_value()) {  // else ours is as new as any
            stored = store_->Set(key, v->value.view(), v->expire_at);
          }
          replica_store_->Remove(key);
        });
        if (!stored) return true;
        counters_->Add(Counters::kReplicasPromoted);
        ++result.promoted;
        // The replica's own entry, out of every store now: holding it marks
        // nothing.
        return push(key, epoch, picker->ReplicaHolders(key), [&] { return v; });
      }
      std::vector<PeerPicker::Peer> holders = picker->NewReplicaHolders(key);
      if (holders.empty()) return true;
      return push(key, epoch, holders, [&] { return store_->Peek(key); });
    };
  };
  // Every entry (a bound ForEachKeyByValue can divide among shards
  // without overflow).
  constexpr int64_t kAll = int64_t{1} << 60;
  bool done = true;
  if (replica_store_ != nullptr) {
    replica_store_->ForEachKeyByValue(kAll, visit(true));
    done = !result.cut_short;
  }
  if (done) store_->ForEachKeyByValue(kAll, visit(false));
  window->AwaitEmpty();
  result.pushed = pushed->load();
  result.failed = failed->load();
  counters_->Add(Counters::kReplicaResyncs);
  return result;
}

// --- The holder ----------------------------------------------------------------

bool Group::AnswerFromReplica(const std::shared_ptr<internal::Flight>& local, uint64_t epoch) {
  if (replica_store_ == nullptr) return false;
  const std::string& key = local->key();
  std::optional<ExpiringValue> replica = replica_store_->GetWithExpiry(key);
  if (!replica) {
    // Rereplicate may have moved it to the store since LeadLocal looked there
    // (it sets the store first, then removes the replica).
    if (std::optional<ExpiringValue> moved = store_->GetWithExpiry(key)) {
      local_flights_->Finish(local, *std::move(moved));
      return true;
    }
    return false;
  }
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
          if (stored) counters_->Add(Counters::kReplicasPromoted);
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

// A replica, or a SetReplica's value, comes from the key's owner. If this
// node owns the key in its view, the sender does not: a node the others
// dropped (a lapsed lease, a pause) sending what it loaded or was Set before,
// which may be older than what was Set here meanwhile. Not kept then.
bool Group::OwnsKey(std::string_view key) {
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  if (picker == nullptr) return false;
  const PeerPicker::Peer owner = picker->OwnerOf(key);
  return owner.getter == nullptr && !owner.address.empty();
}

absl::Status Group::AcceptReplica(std::string_view key, std::string_view value,
                                  std::optional<absl::Duration> ttl) {
  if (absl::Status s = ValidateSet(key, value, ttl); !s.ok()) return s;
  bool kept = false;
  if (replica_store_ != nullptr && !OwnsKey(key)) {
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
  const bool keepable = ValidateSet(key, value, ttl).ok() && !OwnsKey(key);
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
