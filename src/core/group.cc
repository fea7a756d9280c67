// The path of a Get: ValidateKey -> local store -> hot cache -> singleflight
// Load -> owner peer (PeerPicker; some answers kept in the hot cache) ->
// getter -> populate the store.

#include "lcache/group.h"
#include "lcache/origin.h"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/flights.h"
#include "core/group_internal.h"
#include "core/hot_admission.h"
#include "core/key_epochs.h"

namespace lcache {

absl::Status KeyNotFoundError() { return absl::NotFoundError(kKeyNotFoundMessage); }

std::optional<HotPromotion> ParseHotPromotion(std::string_view name) {
  if (name == "frequency") return HotPromotion::kFrequency;
  if (name == "random") return HotPromotion::kRandom;
  return std::nullopt;
}

namespace {

// The hot cache's capacity for the options (0: none); see GroupOptions.
int64_t HotCacheBytes(const GroupOptions& options) {
  return options.hot_cache_bytes >= 0 ? options.hot_cache_bytes : options.cache_bytes / 8;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Group>> Group::Create(GroupOptions options) {
  if (options.name.empty()) return absl::InvalidArgumentError("lcache: group name is empty");
  if (!options.getter == !options.origin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: group \"", options.name, "\" needs a getter or an origin (",
        options.getter ? "has both" : "has neither", ")"));
  }
  if (options.origin) {
    options.getter = [origin = options.origin.get()](std::string_view key) {
      return origin->Load(key);
    };
  }
  if (options.cache_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: cache_bytes must be >= 0, got ", options.cache_bytes));
  }
  if (options.replica_cache_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: replica_cache_bytes must be >= 0 (0: none), got ", options.replica_cache_bytes));
  }
  if (options.hot_cache_bytes < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: hot_cache_bytes must be >= 0 (or -1: cache_bytes / 8), got ",
                     options.hot_cache_bytes));
  }
  if (!(options.lru2_history_fraction > 0 && options.lru2_history_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: lru2_history_fraction must be in (0, 1), got ", options.lru2_history_fraction));
  }
  if (!(options.tinylfu_window_fraction > 0 && options.tinylfu_window_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: tinylfu_window_fraction must be in (0, 1), got ",
                     options.tinylfu_window_fraction));
  }
  if (options.hot_max_age <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: hot_max_age must be > 0 (absl::InfiniteDuration() for no bound), got ",
                     absl::FormatDuration(options.hot_max_age)));
  }
  if (options.max_key_bytes == 0 || options.max_key_bytes > kMaxStoreKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("lcache: max_key_bytes must be in [1, ",
                                                   kMaxStoreKeyBytes, "], got ",
                                                   options.max_key_bytes));
  }
  return std::unique_ptr<Group>(new Group(std::move(options)));
}

Group::Group(GroupOptions options)
    : name_(std::move(options.name)),
      origin_(std::move(options.origin)),
      getter_(std::move(options.getter)),
      default_ttl_(options.default_ttl),
      hot_max_age_(options.hot_max_age),
      max_key_bytes_(options.max_key_bytes),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      peers_(options.peers),
      store_(NewStore({.policy = options.policy,
                       .capacity_bytes = options.cache_bytes,
                       .shards = options.store_shards,
                       .lru2_history_fraction = options.lru2_history_fraction,
                       .tinylfu_window_fraction = options.tinylfu_window_fraction,
                       .tinylfu_adaptive_window = options.tinylfu_adaptive_window,
                       .clock = clock_,
                       .on_removal = options.on_removal})),
      remote_flights_(std::make_unique<internal::Flights>(&get_miss_latency_, clock_)),
      local_flights_(std::make_unique<internal::Flights>(&get_miss_latency_, clock_)),
      epochs_(std::make_shared<internal::KeyEpochs>(clock_)),
      counters_(std::make_shared<Counters>()),
      no_replicas_(std::make_shared<internal::PeerSet>()),
      unacked_(std::make_shared<internal::PendingInvalidations>()) {
  if (options.replica_cache_bytes > 0) {
    // Plain LRU: a replica is written when its owner loads it and read only
    // when the owner fails, so recency of writes is all there is to go by.
    replica_store_ = NewStore({.policy = StorePolicy::kLru,
                               .capacity_bytes = options.replica_cache_bytes,
                               .clock = clock_,
                               .on_removal = options.on_removal});
  }
  if (const int64_t hot_bytes = HotCacheBytes(options); hot_bytes > 0) {
    // Sized for values of ~256 bytes: 1/32 of the hot cache's budget in
    // sketch words, enough to tell hot keys from one-hit wonders.
    hot_admission_ = std::make_unique<internal::HotAdmission>(
        options.hot_promotion, std::clamp<int64_t>(hot_bytes / 256, 1024, int64_t{1} << 20),
        hot_bytes);
    // Plain LRU: the admission rule already filters what comes in. The
    // removal callback tells the admission what left, and the user's sees
    // hot copies leave too: they are entries of this node's memory like any
    // other.
    hot_store_ = NewStore(
        {.policy = StorePolicy::kLru,
         .capacity_bytes = hot_bytes,
         .clock = clock_,
         .on_removal = [admission = hot_admission_.get(), user = std::move(options.on_removal)](
                           std::string_view key, const ByteView& value, RemovalReason reason) {
           admission->Left(static_cast<int64_t>(key.size() + value.size()));
           if (user) user(key, value, reason);
         }});
  }
}

Group::~Group() = default;

absl::Status Group::ValidateKey(std::string_view key) const {
  if (key.empty()) return absl::InvalidArgumentError(kEmptyKeyMessage);
  if (key.size() > max_key_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: key too long (", key.size(), " bytes, max ", max_key_bytes_, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ByteView> Group::Get(std::string_view key, LoadScope scope) {
  if (absl::Status s = ValidateKey(key); !s.ok()) {
    counters_->Add(Counters::kRejected);
    return s;
  }
  // GetIfCached's lookups, without the expiry nobody asked for here: this is
  // the hit path every embedded Get takes.
  if (std::optional<ByteView> hit = store_->Get(key)) {
    counters_->Add(Counters::kCacheHits);
    return *std::move(hit);
  }
  if (hot_store_ != nullptr) {
    if (std::optional<ByteView> hit = hot_store_->Get(key)) {
      counters_->Add(Counters::kCacheHits);
      counters_->Add(Counters::kHotHits);
      return *std::move(hit);
    }
  }
  absl::StatusOr<ExpiringValue> v = Load(key, scope);
  if (!v.ok()) return std::move(v).status();
  return std::move(v->value);
}

absl::StatusOr<ExpiringValue> Group::GetWithExpiry(std::string_view key, LoadScope scope) {
  if (absl::Status s = ValidateKey(key); !s.ok()) {
    counters_->Add(Counters::kRejected);
    return s;
  }
  if (std::optional<ExpiringValue> hit = GetIfCached(key)) return *std::move(hit);
  return Load(key, scope);
}

void Group::GetAsync(std::string_view key, const AsyncGetOptions& options, GetCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) {
    counters_->Add(Counters::kRejected);
    done(std::move(s));
    return;
  }
  if (std::optional<ExpiringValue> hit = GetIfCached(key)) {
    done(*std::move(hit));
    return;
  }
  LoadAsync(key, options, std::move(done));
}

std::optional<ExpiringValue> Group::GetIfCached(std::string_view key) {
  if (std::optional<ExpiringValue> hit = store_->GetWithExpiry(key)) {
    counters_->Add(Counters::kCacheHits);
    return hit;
  }
  if (hot_store_ != nullptr) {
    if (std::optional<ExpiringValue> hit = hot_store_->GetWithExpiry(key)) {
      counters_->Add(Counters::kCacheHits);
      counters_->Add(Counters::kHotHits);
      return hit;
    }
  }
  return std::nullopt;
}

// For loads: a flight that finished between our miss and this one populated
// a store; loading again would be a duplicate load. Not counted as a hit (the
// Get was counted as a load).
std::optional<ExpiringValue> Group::Cached(std::string_view key) {
  if (std::optional<ExpiringValue> hit = store_->GetWithExpiry(key)) return hit;
  if (hot_store_ != nullptr) return hot_store_->GetWithExpiry(key);
  return std::nullopt;
}

bool IsLoadNotRun(const absl::Status& status) {
  return status.GetPayload(kLoadNotRunPayload).has_value();
}

namespace {

absl::Status NotRun(absl::Status status) {
  status.SetPayload(kLoadNotRunPayload, absl::Cord("1"));
  return status;
}

}  // namespace

absl::Time internal::PeerCallDeadline(absl::Time now, absl::Time caller) {
  if (caller == absl::InfiniteFuture()) return caller;
  const absl::Duration left = caller - now;
  return caller - std::clamp(left / 4, absl::ZeroDuration(), absl::Milliseconds(250));
}

// The synchronous Get is the asynchronous one waited for. Its runner hands
// the tasks back to this thread: a getter it leads runs here, as before, and
// never on the I/O thread that completed a peer call.
absl::StatusOr<ExpiringValue> Group::Load(std::string_view key, LoadScope scope) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<absl::StatusOr<ExpiringValue>> result;
    std::deque<LoadTask> tasks;
  };
  auto wait = std::make_shared<Wait>();
  const AsyncGetOptions options{
      .scope = scope,
      .run_load = [wait](LoadTask task) {
        {
          std::lock_guard lock(wait->mu);
          wait->tasks.push_back(std::move(task));
        }
        wait->cv.notify_one();
        return absl::OkStatus();
      }};
  LoadAsync(key, options, [wait](absl::StatusOr<ExpiringValue> v) {
    {
      std::lock_guard lock(wait->mu);
      wait->result = std::move(v);
    }
    wait->cv.notify_one();
  });
  std::unique_lock lock(wait->mu);
  while (true) {
    wait->cv.wait(lock, [&] { return wait->result.has_value() || !wait->tasks.empty(); });
    if (wait->tasks.empty()) return *std::move(wait->result);
    LoadTask task = std::move(wait->tasks.front());
    wait->tasks.pop_front();
    lock.unlock();
    task(absl::OkStatus());
    lock.lock();
  }
}

// A remote flight, as its leader started it: what the next step needs, on
// whichever thread completes the step before it.
struct Group::FlightContext {
  std::shared_ptr<internal::Flight> flight;
  LoadRunner run_load;
  absl::Time deadline;
  uint64_t epoch = 0;  // KeyEpochs::Begin, when the flight started loading
  const PeerGetter* asked = nullptr;  // the peer called last (compared, never used)
  bool stood_in = false;              // the owner failed and its stand-in was asked
};

void Group::LoadAsync(std::string_view key, const AsyncGetOptions& options, GetCallback done) {
  counters_->Add(Counters::kLoads);
  // Only misses are timed: two clock reads would double a hot hit's cost.
  const absl::Time t0 = clock_->Now();
  internal::FlightWaiter waiter{.done = std::move(done),
                               .deadline = options.deadline,
                               .cancelled = options.cancelled,
                               .started = t0};
  if (options.run_load == nullptr) {
    get_miss_latency_.Record(clock_->Now() - t0);
    waiter.done(absl::FailedPreconditionError("lcache: AsyncGetOptions.run_load is null"));
    return;
  }
  if (options.scope == LoadScope::kLocalOnly) {
    if (std::shared_ptr<internal::Flight> local =
            local_flights_->Join(key, std::move(waiter))) {
      LeadLocal(std::move(local), options.run_load);
    }
    return;
  }
  std::shared_ptr<internal::Flight> remote = remote_flights_->Join(key, std::move(waiter));
  if (remote == nullptr) return;  // joined a flight in progress
  StartRemote(std::make_shared<FlightContext>(
      FlightContext{std::move(remote), options.run_load, options.deadline}));
}

void Group::StartRemote(std::shared_ptr<FlightContext> f) {
  const std::string& key = f->flight->key();
  f->epoch = epochs_->Begin(key);
  if (std::optional<ExpiringValue> hit = Cached(key)) {
    remote_flights_->Finish(f->flight, *std::move(hit));
    return;
  }
  PeerPicker* picker = peers_.load(std::memory_order_acquire);
  std::shared_ptr<PeerGetter> peer = picker != nullptr ? picker->PickPeer(key) : nullptr;
  if (peer == nullptr) {
    StartLocal(std::move(f));
    return;
  }
  counters_->Add(Counters::kLoadsDeduped);
  CallPeer(std::move(f), std::move(peer));
}

void Group::CallPeer(std::shared_ptr<FlightContext> f, std::shared_ptr<PeerGetter> peer) {
  const std::string& key = f->flight->key();
  f->asked = peer.get();
  const absl::Time asked_at = clock_->Now();
  const absl::Time deadline = internal::PeerCallDeadline(absl::Now(), f->deadline);
  // The callback holds the peer: PickPeer's pointer keeps it usable for the
  // call, whatever happens to the peer set meanwhile.
  PeerGetter::Cancel cancel;
  if (peer->StartGet(
          name_, key, deadline,
          [this, f, peer, asked_at](absl::StatusOr<PeerValue> v) {
            OnPeerAnswer(f, std::move(v), asked_at);
          },
          &cancel)) {
    // From now on a CallerLeft that finds every caller gone resets the call.
    if (cancel != nullptr) f->flight->SetCancel(std::move(cancel));
    return;
  }
  // No asynchronous path: the blocking Get runs where the getter would.
  absl::Status refused = f->run_load([this, f, peer, asked_at](absl::Status run) {
    if (!run.ok()) {
      remote_flights_->Finish(f->flight, NotRun(std::move(run)));
      return;
    }
    absl::StatusOr<PeerValue> v;
    try {
      v = peer->Get(name_, f->flight->key());
    } catch (const std::exception& e) {
      v = absl::InternalError(absl::StrCat("lcache: peer getter threw: ", e.what()));
    } catch (...) {
      v = absl::InternalError("lcache: peer getter threw a non-std exception");
    }
    OnPeerAnswer(f, std::move(v), asked_at);
  });
  if (!refused.ok()) remote_flights_->Finish(f->flight, NotRun(std::move(refused)));
}

// The owner's answer is final, found or not; only a failure to reach it
// falls back to a local load, as the Go program does.
void Group::OnPeerAnswer(std::shared_ptr<FlightContext> f, absl::StatusOr<PeerValue> v,
                         absl::Time asked_at) {
  peer_latency_.Record(clock_->Now() - asked_at);
  f->flight->ClearCancel();
  if (absl::IsCancelled(v.status()) && f->flight->called_off()) {
    // Every caller left and the call was reset: nobody to fall back for.
    counters_->Add(Counters::kLoadsCancelled);
    remote_flights_->Finish(
        f->flight,
        NotRun(absl::CancelledError("lcache: every caller left; the peer call was reset")));
    return;
  }
  if (v.ok()) {
    counters_->Add(Counters::kPeerLoads);
    ExpiringValue fetched(std::move(v->value), ExpiryOf(*v, asked_at));
    MaybeKeepHot(f->flight->key(), fetched, f->epoch);
    remote_flights_->Finish(f->flight, fetched);
    return;
  }
  if (absl::IsNotFound(v.status()) || absl::IsInvalidArgument(v.status())) {
    counters_->Add(Counters::kPeerLoads);
    remote_flights_->Finish(f->flight, std::move(v).status());
    return;
  }
  counters_->Add(Counters::kPeerErrors);
  // With replication, the owner's stand-in holds its replica: ask it before
  // loading here. Once only, and never the peer that just failed (it was
  // the stand-in already when PickPeer chose it for an ejected owner).
  if (!f->stood_in) {
    if (PeerPicker* picker = peers_.load(std::memory_order_acquire); picker != nullptr) {
      PeerPicker::Peer stand_in = picker->StandIn(f->flight->key());
      // A node known to refuse replicas (a Go node) would only load it.
      if (stand_in.getter != nullptr && stand_in.getter.get() != f->asked &&
          !no_replicas_->Contains(stand_in.address)) {
        f->stood_in = true;
        counters_->Add(Counters::kStandInCalls);
        CallPeer(std::move(f), std::move(stand_in.getter));
        return;
      }
    }
  }
  StartLocal(std::move(f));
}

void Group::MaybeKeepHot(std::string_view key, const ExpiringValue& v, uint64_t epoch) {
  if (hot_store_ == nullptr) return;
  const absl::Time now = clock_->Now();
  // A copy already due would only displace a live one.
  if (v.expire_at != absl::InfiniteFuture() && v.expire_at <= now) return;
  if (hot_admission_->ResyncDue()) hot_admission_->Resync(hot_store_->Bytes());
  if (!hot_admission_->Admit(key)) return;
  const absl::Time expire_at = std::min(v.expire_at, now + hot_max_age_);
  bool kept = false;
  if (!epochs_->StoreIfUnchanged(key, epoch, [&] {
        kept = hot_store_->Set(key, v.value.view(), expire_at);
      })) {
    counters_->Add(Counters::kLoadsDiscarded);
  }
  if (kept) {
    hot_admission_->Kept(static_cast<int64_t>(key.size() + v.value.size()));
    counters_->Add(Counters::kHotKeeps);
  }
}

// The remote flight waits on the key's local flight, as one of its waiters.
void Group::StartLocal(std::shared_ptr<FlightContext> f) {
  internal::FlightWaiter waiter{
      .done = [this, remote = f->flight](
                  const absl::StatusOr<ExpiringValue>& v) { remote_flights_->Finish(remote, v); },
      .parent = f->flight};
  if (std::shared_ptr<internal::Flight> local =
          local_flights_->Join(f->flight->key(), std::move(waiter))) {
    LeadLocal(std::move(local), f->run_load);
  }
}

void Group::LeadLocal(std::shared_ptr<internal::Flight> local,
                      const LoadRunner& run_load) {
  const uint64_t epoch = epochs_->Begin(local->key());
  if (std::optional<ExpiringValue> hit = store_->GetWithExpiry(local->key())) {
    local_flights_->Finish(local, *std::move(hit));
    return;
  }
  if (AnswerFromReplica(local, epoch)) return;
  // Taken over in a recent ring change: the previous owner may hold it,
  // unless the key changed here since (its copy may be the one that change
  // replaced, if its invalidation did not reach it).
  if (PeerPicker* picker = peers_.load(std::memory_order_acquire); picker != nullptr) {
    PeerPicker::Previous previous = picker->PreviousOwner(local->key());
    if (previous.getter != nullptr && !epochs_->MutatedSince(local->key(), previous.since)) {
      PeekPrevious(std::move(local), run_load, epoch, std::move(previous.getter));
      return;
    }
  }
  RunGetter(std::move(local), run_load, epoch);
}

void Group::RunGetter(std::shared_ptr<internal::Flight> local, const LoadRunner& run_load,
                      uint64_t epoch) {
  absl::Status refused = run_load([this, local, epoch](absl::Status run) {
    if (run.ok()) {
      // Queued behind other loads, it may have outlived every caller.
      if (absl::Status why; local->Abandoned(absl::Now(), &why)) {
        counters_->Add(Counters::kLoadsCancelled);
        run = std::move(why);
      }
    }
    if (!run.ok()) {
      local_flights_->Finish(local, NotRun(std::move(run)));
      return;
    }
    counters_->Add(Counters::kLoadsDeduped);
    local_flights_->Finish(local, LoadFromGetter(local->key(), epoch));
  });
  if (!refused.ok()) local_flights_->Finish(local, NotRun(std::move(refused)));
}

absl::StatusOr<ExpiringValue> Group::LoadFromGetter(std::string_view key, uint64_t epoch) {
  absl::StatusOr<Loaded> loaded;
  const absl::Time t0 = clock_->Now();
  try {
    loaded = getter_(key);
  } catch (const std::exception& e) {
    loaded = absl::InternalError(absl::StrCat("lcache: getter threw: ", e.what()));
  } catch (...) {
    loaded = absl::InternalError("lcache: getter threw a non-std exception");
  }
  getter_latency_.Record(clock_->Now() - t0);
  if (!loaded.ok()) {
    counters_->Add(Counters::kLocalLoadErrs);
    return std::move(loaded).status();
  }
  counters_->Add(Counters::kLocalLoads);
  if (!loaded->cacheable) {
    // For the callers of this load only. Expired already, so that neither a
    // hot cache here nor a peer this answer is forwarded to (ttl_ms 0) keeps it.
    return ExpiringValue(std::move(loaded->value), clock_->Now());
  }
  absl::Time expire_at = ExpiryOf(*loaded);
  // Loaded here for a key another node owns (its owner failed): a copy no
  // invalidation may reach, so it lives no longer than a hot copy would.
  if (PeerPicker* picker = peers_.load(std::memory_order_acquire);
      picker != nullptr && picker->OwnerOf(key).getter != nullptr) {
    expire_at = std::min(expire_at, clock_->Now() + hot_max_age_);
  }
  bool stored = false;
  if (!epochs_->StoreIfUnchanged(key, epoch, [&] {
        stored = store_->Set(key, loaded->value.view(), expire_at);
        // This node is the owner now: a hot copy from when another node was
        // would be a second, possibly older, value of the key.
        if (hot_store_ != nullptr) hot_store_->Remove(key);
      })) {
    counters_->Add(Counters::kLoadsDiscarded);
  }
  ExpiringValue v(std::move(loaded->value), expire_at);
  if (stored) PushReplicas(key, v, epoch);
  return v;
}

absl::Time Group::ExpiryOf(const Loaded& loaded) const {
  const absl::Duration ttl = loaded.ttl.value_or(default_ttl_);
  if (ttl <= absl::ZeroDuration() || ttl == absl::InfiniteDuration()) {
    return absl::InfiniteFuture();
  }
  return clock_->Now() + ttl;
}

// The owner's copy lives `ttl` from no earlier than `asked_at`, so ours ends
// no later. An owner that sends no expiry (a Go node) gets ours: the group's
// default_ttl bounds how stale a copy may be, if the user set one.
absl::Time Group::ExpiryOf(const PeerValue& fetched, absl::Time asked_at) const {
  absl::Duration ttl = fetched.ttl;
  if (ttl == absl::InfiniteDuration() && default_ttl_ > absl::ZeroDuration()) ttl = default_ttl_;
  if (ttl == absl::InfiniteDuration()) return absl::InfiniteFuture();
  return asked_at + ttl;
}


int64_t Group::ReclaimExpired(int64_t max_entries) {
  int64_t n = store_->ReclaimExpired(max_entries);
  if (hot_store_ != nullptr) n += hot_store_->ReclaimExpired(max_entries);
  if (replica_store_ != nullptr) n += replica_store_->ReclaimExpired(max_entries);
  return n;
}

void Group::CountServerRequest() { counters_->Add(Counters::kServerRequests); }

void Group::CallerLeft(std::string_view key) {
  if (std::shared_ptr<internal::Flight> flight = remote_flights_->Find(key)) {
    flight->CallOffIfAbandoned(absl::Now());
  }
}


GroupStats Group::Stats() const {
  GroupStats s;
  s.cache_hits = counters_->Sum(Counters::kCacheHits);
  s.hot_hits = counters_->Sum(Counters::kHotHits);
  s.hot_keeps = counters_->Sum(Counters::kHotKeeps);
  s.loads = counters_->Sum(Counters::kLoads);
  // Every Get ends in exactly one of: rejected, hit, load. Deriving gets
  // saves the hit path an atomic add.
  s.gets = counters_->Sum(Counters::kRejected) + s.cache_hits + s.loads;
  s.peer_loads = counters_->Sum(Counters::kPeerLoads);
  s.peer_errors = counters_->Sum(Counters::kPeerErrors);
  s.loads_deduped = counters_->Sum(Counters::kLoadsDeduped);
  s.local_loads = counters_->Sum(Counters::kLocalLoads);
  s.local_load_errs = counters_->Sum(Counters::kLocalLoadErrs);
  s.server_requests = counters_->Sum(Counters::kServerRequests);
  s.loads_cancelled = counters_->Sum(Counters::kLoadsCancelled);
  s.sets = counters_->Sum(Counters::kSets);
  s.removes = counters_->Sum(Counters::kRemoves);
  s.invalidations_sent = counters_->Sum(Counters::kInvalidationsSent);
  s.invalidations_unacked = counters_->Sum(Counters::kInvalidationsUnacked);
  s.invalidations_received = counters_->Sum(Counters::kInvalidationsReceived);
  s.loads_discarded = counters_->Sum(Counters::kLoadsDiscarded);
  s.peek_hits = counters_->Sum(Counters::kPeekHits);
  s.peek_misses = counters_->Sum(Counters::kPeekMisses);
  s.peeks_served = counters_->Sum(Counters::kPeeksServed);
  s.handoff_entries_sent = counters_->Sum(Counters::kHandoffEntriesSent);
  s.handoff_bytes_sent = counters_->Sum(Counters::kHandoffBytesSent);
  s.handoffs_kept = counters_->Sum(Counters::kHandoffsKept);
  s.handoffs_refused = counters_->Sum(Counters::kHandoffsRefused);
  s.replicas_pushed = counters_->Sum(Counters::kReplicasPushed);
  s.replica_bytes_pushed = counters_->Sum(Counters::kReplicaBytesPushed);
  s.replica_push_failures = counters_->Sum(Counters::kReplicaPushFailures);
  s.replicas_kept = counters_->Sum(Counters::kReplicasKept);
  s.replicas_refused = counters_->Sum(Counters::kReplicasRefused);
  s.replica_hits = counters_->Sum(Counters::kReplicaHits);
  s.stand_in_calls = counters_->Sum(Counters::kStandInCalls);
  s.replicas_promoted = counters_->Sum(Counters::kReplicasPromoted);
  s.replica_resyncs = counters_->Sum(Counters::kReplicaResyncs);
  s.replica_invalidations_pending = static_cast<int64_t>(unacked_->size());
  s.replica_invalidations_retried = counters_->Sum(Counters::kReplicaInvalidationsRetried);
  s.replica_invalidations_dropped = unacked_->dropped();
  s.store = store_->Stats();
  if (hot_store_ != nullptr) s.hot_store = hot_store_->Stats();
  if (replica_store_ != nullptr) s.replica_store = replica_store_->Stats();
  s.get_miss_latency = get_miss_latency_.Snapshot();
  s.peer_latency = peer_latency_.Snapshot();
  s.getter_latency = getter_latency_.Snapshot();
  return s;
}

}  // namespace lcache
