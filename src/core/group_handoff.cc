// A Group across ring changes (docs/PROTOCOL.md, section 8): a node that
// took a key over peeks at its previous owner's copy before it calls the
// getter; a departing node hands its most valuable entries to their heirs.
// Both keep the leases of key_epochs.h: a Set or Remove racing either wins.

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/time/clock.h"
#include "core/flights.h"
#include "core/group_internal.h"
#include "core/key_epochs.h"
#include "lcache/group.h"

namespace lcache {

// --- Peek: the node that took a key over ------------------------------------

void Group::PeekPrevious(std::shared_ptr<internal::Flight> local, const LoadRunner& run_load,
                         uint64_t epoch, std::shared_ptr<PeerGetter> previous) {
  const absl::Time asked_at = clock_->Now();
  PeerGetter* peer = previous.get();
  // The callback holds the flight (copied, not moved: the key argument
  // reads it), the peer, as StartRemote's does, and the runner for the
  // getter call that follows a miss.
  peer->StartPeek(
      name_, local->key(), absl::Now() + kPeekTimeout,
      [this, local, run_load, epoch, previous = std::move(previous),
       asked_at](absl::StatusOr<PeerValue> v) mutable {
        if (!v.ok()) {
          // Not found there, or the peer failed: either way a load, as it
          // would have been without the peek.
          counters_->Add(Counters::kPeekMisses);
          RunGetter(std::move(local), run_load, epoch);
          return;
        }
        counters_->Add(Counters::kPeekHits);
        ExpiringValue found(std::move(v->value), ExpiryOf(*v, asked_at));
        // Stored as the getter's value would be: this node owns the key.
        if (!epochs_->StoreIfUnchanged(local->key(), epoch, [&] {
              store_->Set(local->key(), found.value.view(), found.expire_at);
              if (hot_store_ != nullptr) hot_store_->Remove(local->key());
            })) {
          counters_->Add(Counters::kLoadsDiscarded);
        }
        local_flights_->Finish(local, found);
      });
}

std::optional<ExpiringValue> Group::Peek(std::string_view key) {
  std::optional<ExpiringValue> stored = store_->GetWithExpiry(key);
  if (stored) counters_->Add(Counters::kPeeksServed);
  return stored;
}

// --- Hand-off: the heir ------------------------------------------------------

absl::Status Group::AcceptHandoff(std::string_view key, std::string_view value,
                                  std::optional<absl::Duration> ttl) {
  if (absl::Status s = ValidateSet(key, value, ttl); !s.ok()) return s;
  absl::Time expire_at = absl::InfiniteFuture();
  if (ttl && *ttl > absl::ZeroDuration() && *ttl != absl::InfiniteDuration()) {
    expire_at = clock_->Now() + *ttl;
  }
  bool kept = false;
  // The quiet period stands in for the epoch a load would have: the sender
  // left the ring before it read the value, and its calls end within
  // kMaxHandoffTime of that (see HandOff), so a value it read before a
  // mutation this node applied arrives within kHandoffQuiet of the mutation
  // and is refused.
  epochs_->StoreIfQuiet(key, kHandoffQuiet, [&] {
    if (store_->Peek(key).has_value()) return;  // ours is as new as any
    kept = store_->Set(key, value, expire_at);
    if (!kept) return;
    // The owner's copy now: a hot copy or a replica of it would be a second one.
    if (hot_store_ != nullptr) hot_store_->Remove(key);
    if (replica_store_ != nullptr) replica_store_->Remove(key);
  });
  counters_->Add(kept ? Counters::kHandoffsKept : Counters::kHandoffsRefused);
  return absl::OkStatus();
}

// --- Hand-off: the departing node --------------------------------------------

namespace {

// The calls of one hand-off, shared with their callbacks.
// The follow-up Invalidate of a value that changed while it was on its way:
// sent when the hand-off's own deadline may have passed, so it has its own.
constexpr absl::Duration kFollowUpTimeout = absl::Seconds(1);

struct HandoffCalls {
  // Whether an heir takes hand-offs (a Go node does not) is learned from
  // the first call to it: the next ones wait for that answer.
  enum class Heir { kProbing, kAccepts, kRefuses };

  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  HandoffResult result;
  std::unordered_map<std::string, Heir> heirs;  // by address; absent: not asked yet
};

}  // namespace

HandoffResult Group::HandOff(const HandoffOptions& options) {
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  auto calls = std::make_shared<HandoffCalls>();
  if (picker == nullptr || options.max_bytes <= 0) return calls->result;
  const int max_in_flight = std::max(1, options.max_in_flight);
  // Bounded so that every value reaches its heir within kHandoffQuiet of
  // any mutation the heir applied after this node read it.
  const absl::Time deadline = std::min(options.deadline, absl::Now() + kMaxHandoffTime);
  using Heir = HandoffCalls::Heir;

  store_->ForEachKeyByValue(options.max_bytes, [&](std::string_view key) {
    if (absl::Now() >= deadline) {
      std::lock_guard lock(calls->mu);
      calls->result.cut_short = true;
      return false;
    }
    // A copy of a key another node owns (a hand-off this node took, a
    // former owner's copy) goes to that owner: it may not have it yet (it
    // came back and has not asked for it), and it refuses it if it does.
    PeerPicker::Peer heir = picker->HeirOf(key);

    // Room for the call first, then the value: a value held while this
    // waits would look read by another thread to every hit of it meanwhile,
    // which marks it contended for good (sharded_store.h), and the most
    // valuable keys come first.
    std::unique_lock lock(calls->mu);
    if (heir.getter == nullptr || heir.out) {
      ++calls->result.skipped;
      return true;
    }
    if (!calls->cv.wait_until(lock, absl::ToChronoTime(deadline), [&] {
          auto it = calls->heirs.find(heir.address);
          return (it == calls->heirs.end() || it->second != Heir::kProbing) &&
                 calls->in_flight < max_in_flight;
        })) {
      calls->result.cut_short = true;
      return false;
    }
    const auto [it, probe] = calls->heirs.try_emplace(heir.address, Heir::kProbing);
    if (it->second == Heir::kRefuses) {
      ++calls->result.skipped;
      return true;
    }
    ++calls->in_flight;
    lock.unlock();

    // The epoch before the value: a Set or Remove applied here after this
    // read moves it, and the heir then gets an Invalidate after the value.
    const uint64_t epoch = epochs_->Begin(key);
    std::optional<ExpiringValue> v = store_->Peek(key);
    std::optional<absl::Duration> ttl;
    if (v && v->expire_at != absl::InfiniteFuture()) {
      ttl = v->expire_at - clock_->Now();
      if (*ttl <= absl::ZeroDuration()) v.reset();
    }
    if (!v) {  // gone or expired since the snapshot: the room goes back
      {
        std::lock_guard relock(calls->mu);
        --calls->in_flight;
        if (probe) calls->heirs.erase(heir.address);  // not probed after all
      }
      calls->cv.notify_all();
      return true;
    }
    const int64_t bytes = static_cast<int64_t>(key.size() + v->value.size());
    const PeerMutation handoff{.kind = PeerMutation::Kind::kHandoff,
                               .group = name_,
                               .key = key,
                               .value = v->value.view(),
                               .ttl = ttl};
    heir.getter->StartMutate(
        handoff, deadline,
        [this, calls, epoch, bytes, probe, key = std::string(key), heir](
            absl::StatusOr<MutationResult> r) {
          // Changed here while on its way: the heir may have kept the old
          // value after the owner's Invalidate reached it (also when the
          // call failed: it may have arrived all the same; not a Go node,
          // which keeps nothing). The Invalidate that follows stays
          // counted in flight.
          const bool moved =
              !absl::IsUnimplemented(r.status()) && epochs_->Begin(key) != epoch;
          {
            std::lock_guard lock(calls->mu);
            if (!moved) --calls->in_flight;
            if (r.ok()) {
              ++calls->result.entries;
              calls->result.bytes += bytes;
              counters_->Add(Counters::kHandoffEntriesSent);
              counters_->Add(Counters::kHandoffBytesSent, bytes);
            } else {
              ++calls->result.failed;
            }
            // A Go node, or an heir that cannot take this one (unreachable,
            // out of time): the rest of its entries would only wait behind
            // one probe after another.
            if (absl::IsUnimplemented(r.status()) || (probe && !r.ok())) {
              calls->heirs[heir.address] = Heir::kRefuses;
            } else if (probe) {
              calls->heirs[heir.address] = Heir::kAccepts;
            }
          }
          calls->cv.notify_all();
          if (!moved) return;
          heir.getter->StartMutate(
              {.kind = PeerMutation::Kind::kInvalidate, .group = name_, .key = key},
              absl::Now() + kFollowUpTimeout, [calls](absl::StatusOr<MutationResult>) {
                {
                  std::lock_guard lock(calls->mu);
                  --calls->in_flight;
                }
                calls->cv.notify_all();
              });
        });
    return true;
  });

  // Every call ends by its deadline or its transport's timeout, so this
  // wait ends, and no callback outlives the call.
  std::unique_lock lock(calls->mu);
  calls->cv.wait(lock, [&] { return calls->in_flight == 0; });
  return calls->result;
}

}  // namespace lcache
