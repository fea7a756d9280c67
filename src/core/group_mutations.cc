// The path of a Set or Remove: validate -> the key's owner (OwnerOf; one hop
// at most) -> the owner drops its copies and detaches the key's flights
// under the key's epoch (KeyEpochs), stores the new value -> Invalidate to
// every other node -> the answer, listing the nodes that did not acknowledge.
// Docs: group.h (guarantees), docs/PROTOCOL.md, section 6 (messages).

#include <algorithm>
#include <limits>
#include <string>
#include <vector>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/flights.h"
#include "core/group_internal.h"
#include "core/key_epochs.h"
#include "lcache/group.h"

namespace lcache {
namespace {

const char* KindName(PeerMutation::Kind kind) {
  switch (kind) {
    case PeerMutation::Kind::kSet:
      return "Set";
    case PeerMutation::Kind::kRemove:
      return "Remove";
    case PeerMutation::Kind::kInvalidate:
      return "Invalidate";
    case PeerMutation::Kind::kHandoff:
      return "Handoff";
    case PeerMutation::Kind::kReplicate:
      return "Replicate";
    case PeerMutation::Kind::kSetReplica:
      return "SetReplica";
  }
  return "?";
}

absl::StatusOr<MutationResult> Await(const std::function<void(MutationCallback)>& start) {
  struct Outcome {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<absl::StatusOr<MutationResult>> result;
  };
  auto outcome = std::make_shared<Outcome>();
  start([outcome](absl::StatusOr<MutationResult> r) {
    {
      std::lock_guard lock(outcome->mu);
      outcome->result = std::move(r);
    }
    outcome->cv.notify_one();
  });
  // Every peer call ends by its transport's timeout, so this wait ends.
  std::unique_lock lock(outcome->mu);
  outcome->cv.wait(lock, [&] { return outcome->result.has_value(); });
  return *std::move(outcome->result);
}

}  // namespace

absl::StatusOr<MutationResult> Group::Set(std::string_view key, std::string_view value,
                                          std::optional<absl::Duration> ttl,
                                          const MutationOptions& options) {
  return Await([&](MutationCallback done) { SetAsync(key, value, ttl, options, std::move(done)); });
}

absl::StatusOr<MutationResult> Group::Remove(std::string_view key, const MutationOptions& options) {
  return Await([&](MutationCallback done) { RemoveAsync(key, options, std::move(done)); });
}

void Group::SetAsync(std::string_view key, std::string_view value,
                     std::optional<absl::Duration> ttl, const MutationOptions& options,
                     MutationCallback done) {
  if (absl::Status s = ValidateSet(key, value, ttl); !s.ok()) {
    done(std::move(s));
    return;
  }
  if (options.scope == LoadScope::kAnywhere) counters_->Add(Counters::kSets);
  Mutate({.kind = PeerMutation::Kind::kSet, .group = name_, .key = key, .value = value, .ttl = ttl},
         options, std::move(done));
}

void Group::RemoveAsync(std::string_view key, const MutationOptions& options,
                        MutationCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) {
    done(std::move(s));
    return;
  }
  if (options.scope == LoadScope::kAnywhere) counters_->Add(Counters::kRemoves);
  Mutate({.kind = PeerMutation::Kind::kRemove, .group = name_, .key = key}, options,
         std::move(done));
}

absl::Status Group::ValidateSet(std::string_view key, std::string_view value,
                                std::optional<absl::Duration> ttl) const {
  if (absl::Status s = ValidateKey(key); !s.ok()) return s;
  if (ttl && *ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: ttl must be >= 0, got ", absl::FormatDuration(*ttl)));
  }
  if (ttl && *ttl > kMaxSetTtl && *ttl != absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: ttl of ", absl::FormatDuration(*ttl), " is over the limit of ",
                     absl::FormatDuration(kMaxSetTtl), " (0 means no expiry)"));
  }
  const int64_t max = store_->MaxEntryBytes();
  if (static_cast<int64_t>(key.size() + value.size()) > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: value too large: key and value are ", key.size() + value.size(),
                     " bytes, the store keeps entries of at most ", max, " bytes"));
  }
  return absl::OkStatus();
}

void Group::Mutate(const PeerMutation& m, const MutationOptions& options, MutationCallback done) {
  if (options.scope == LoadScope::kAnywhere) {
    if (PeerPicker* picker = peers_.load(std::memory_order_acquire)) {
      PeerPicker::Peer owner = picker->OwnerOf(m.key);
      if (owner.getter != nullptr) {
        ForwardToOwner(m, std::move(owner), options, std::move(done));
        return;
      }
    }
  }
  ApplyAsOwner(m, options, std::move(done));
}

void Group::ForwardToOwner(const PeerMutation& m, PeerPicker::Peer owner,
                           const MutationOptions& options, MutationCallback done) {
  owner.getter->StartMutate(
      m, internal::PeerCallDeadline(absl::Now(), options.deadline),
      [this, kind = m.kind, key = std::string(m.key), address = owner.address, peer = owner.getter,
       done = std::move(done)](absl::StatusOr<MutationResult> r) {
        if (r.ok()) {
          // The owner told every node it knows, this one included; dropping
          // our own copies again also covers an invalidation that could not
          // reach us. Not the replica a Set's SetReplica just gave us, if
          // every node acknowledged (the Group does not know its own
          // address, so any node missing makes ours suspect too).
          const bool fresh_replica = kind == PeerMutation::Kind::kSet && r->unacknowledged.empty();
          DropCopies(key, [&] {
            store_->Remove(key);
            if (!fresh_replica && replica_store_ != nullptr) replica_store_->Remove(key);
          });
          done(std::move(r));
          return;
        }
        const absl::Status& s = r.status();
        const char* what = KindName(kind);
        if (absl::IsUnimplemented(s)) {
          done(absl::UnimplementedError(
              absl::StrCat("lcache: the key's owner, peer ", address, ", does not implement ", what,
                           " (a Go lru_cache node?); nothing was changed")));
        } else if (absl::IsInvalidArgument(s) || absl::IsNotFound(s)) {
          done(s);  // the owner's verdict on the input
        } else {
          done(absl::Status(
              s.code(), absl::StrCat("lcache: ", what, " failed at the key's owner, peer ", address,
                                     ": ", s.message())));
        }
      });
}

// Drops this node's copies of `key` and detaches its flights, under the
// key's epoch, then runs `then` in the same step.
template <typename F>
void Group::DropCopies(std::string_view key, F&& then) {
  epochs_->Mutate(key, [&] {
    remote_flights_->Detach(key);
    local_flights_->Detach(key);
    if (hot_store_ != nullptr) hot_store_->Remove(key);
    then();
  });
}

void Group::Invalidate(std::string_view key) {
  counters_->Add(Counters::kInvalidationsReceived);
  DropCopies(key, [&] {
    store_->Remove(key);
    if (replica_store_ != nullptr) replica_store_->Remove(key);
  });
}

int64_t Group::InvalidateAll() {
  epochs_->MutateAll();  // loads in flight store nothing
  std::vector<std::string> keys;
  auto collect = [&keys](std::string_view key) {
    keys.emplace_back(key);
    return true;
  };
  for (Store* store : {store_.get(), hot_store_.get(), replica_store_.get()}) {
    if (store != nullptr) store->ForEachKeyByValue(std::numeric_limits<int64_t>::max(), collect);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (const std::string& key : keys) {
    DropCopies(key, [&] {
      store_->Remove(key);
      if (replica_store_ != nullptr) replica_store_->Remove(key);
    });
  }
  return static_cast<int64_t>(keys.size());
}

void Group::ApplyAsOwner(const PeerMutation& m, const MutationOptions& options,
                         MutationCallback done) {
  if (m.kind == PeerMutation::Kind::kSet) {
    const absl::Duration ttl = m.ttl.value_or(default_ttl_);
    const absl::Time expire_at = ttl <= absl::ZeroDuration() || ttl == absl::InfiniteDuration()
                                     ? absl::InfiniteFuture()
                                     : clock_->Now() + ttl;
    // ValidateSet checked the size against this very store, so it fits.
    DropCopies(m.key, [&] {
      store_->Set(m.key, m.value, expire_at);
      if (replica_store_ != nullptr) replica_store_->Remove(m.key);  // ours is the value now
    });
    // The replica holders get the value with the owner's remaining time.
    PeerMutation set = m;
    set.ttl = TtlOf(expire_at);
    InvalidatePeers(m.key, &set, options.deadline, std::move(done));
    return;
  }
  DropCopies(m.key, [&] {
    store_->Remove(m.key);
    if (replica_store_ != nullptr) replica_store_->Remove(m.key);
  });
  InvalidatePeers(m.key, nullptr, options.deadline, std::move(done));
}

// Tells every other node to drop its copies, and answers once each has
// acknowledged or failed. A peer that is out of service (ejected) is told
// but not waited for: a hung peer would otherwise hold every mutation for
// the whole peer timeout. It is listed as not acknowledged at once.
// For a Set, the key's replica holders that take replicas are sent
// SetReplica, which drops their copies as Invalidate does and keeps the new
// value; one that does not know it (UNIMPLEMENTED) is sent Invalidate.
void Group::InvalidatePeers(std::string_view key, const PeerMutation* set, absl::Time deadline,
                            MutationCallback done) {
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  std::vector<PeerPicker::Peer> peers;
  std::vector<PeerPicker::Peer> holders;
  if (picker != nullptr) {
    peers = picker->OtherPeers();
    holders = picker->ReplicaHolders(key);  // none without replication
  }
  // A replica holder that does not acknowledge is sent the invalidation
  // again later (RetryInvalidations): unlike a hot copy, its replica is not
  // bounded in age, and it would serve it if this node then failed.
  auto takes_replicas = [&](const PeerPicker::Peer& peer) {
    return std::any_of(holders.begin(), holders.end(),
                       [&](const PeerPicker::Peer& h) { return h.address == peer.address; }) &&
           !no_replicas_->Contains(peer.address);
  };
  if (peers.empty()) {
    done(MutationResult{});
    return;
  }
  struct Gather {
    std::mutex mu;
    size_t left = 0;  // calls not answered yet
    MutationResult result;
    MutationCallback done;
  };
  auto gather = std::make_shared<Gather>();
  gather->done = std::move(done);
  const absl::Time call_deadline = internal::PeerCallDeadline(absl::Now(), deadline);
  for (PeerPicker::Peer& peer : peers) {
    if (peer.out) {
      counters_->Add(Counters::kInvalidationsSent);
      counters_->Add(Counters::kInvalidationsUnacked);
      gather->result.unacknowledged.push_back(peer.address);
      if (takes_replicas(peer)) unacked_->Add(peer.address, key);
      peer.getter->StartMutate(
          {.kind = PeerMutation::Kind::kInvalidate, .group = name_, .key = key}, call_deadline,
          [](absl::StatusOr<MutationResult>) {});
    } else {
      ++gather->left;
    }
  }
  if (gather->left == 0) {
    std::sort(gather->result.unacknowledged.begin(), gather->result.unacknowledged.end());
    gather->done(std::move(gather->result));
    return;
  }
  const PeerMutation invalidate{.kind = PeerMutation::Kind::kInvalidate, .group = name_, .key = key};
  for (PeerPicker::Peer& peer : peers) {
    if (peer.out) continue;
    counters_->Add(Counters::kInvalidationsSent);
    const bool holder = takes_replicas(peer);
    auto answered = [this, gather, address = peer.address, holder,
                     key = holder ? std::string(key) : std::string()](
                        absl::StatusOr<MutationResult> r) {
          MutationCallback finish;
          {
            std::lock_guard lock(gather->mu);
            if (!r.ok()) {
              counters_->Add(Counters::kInvalidationsUnacked);
              gather->result.unacknowledged.push_back(address);
              // (A node that turned out to take no replicas holds none.)
              if (holder && !no_replicas_->Contains(address)) unacked_->Add(address, key);
            }
            if (--gather->left == 0) finish = std::move(gather->done);
          }
          if (finish != nullptr) {
            std::sort(gather->result.unacknowledged.begin(), gather->result.unacknowledged.end());
            finish(std::move(gather->result));
          }
        };
    if (!holder || set == nullptr) {
      peer.getter->StartMutate(invalidate, call_deadline, std::move(answered));
      continue;
    }
    PeerMutation set_replica = *set;
    set_replica.kind = PeerMutation::Kind::kSetReplica;
    peer.getter->StartMutate(
        set_replica, call_deadline,
        [this, key = std::string(key), call_deadline, peer, answered = std::move(answered)](
            absl::StatusOr<MutationResult> r) mutable {
          if (!absl::IsUnimplemented(r.status())) {
            answered(std::move(r));
            return;
          }
          // A node that keeps no replicas (an older build): the invalidation
          // it does know, and no replicas for it from now on.
          no_replicas_->Insert(peer.address);
          peer.getter->StartMutate(
              {.kind = PeerMutation::Kind::kInvalidate, .group = name_, .key = key},
              call_deadline, std::move(answered));
        });
  }
}

}  // namespace lcache
