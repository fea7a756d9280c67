// The path of a Get: ValidateKey -> local store -> singleflight Load ->
// owner peer (PeerPicker) -> getter -> populate the store.

#include "lcache/group.h"

#include <array>
#include <exception>

#include "absl/strings/str_cat.h"

namespace lcache {

absl::Status KeyNotFoundError() { return absl::NotFoundError(kKeyNotFoundMessage); }

// Per-group counters, striped by thread so that two cores counting hits do
// not fight over one cache line. Reads sum the stripes.
class Group::Counters {
 public:
  enum Field {
    kCacheHits,
    kRejected,  // invalid keys
    kPeerLoads,
    kPeerErrors,
    kLoads,
    kLoadsDeduped,
    kLocalLoads,
    kLocalLoadErrs,
    kServerRequests,
    kNumFields
  };

  void Add(Field f) { stripes_[ThreadStripe()].v[f].fetch_add(1, std::memory_order_relaxed); }

  int64_t Sum(Field f) const {
    int64_t n = 0;
    for (const Stripe& s : stripes_) n += s.v[f].load(std::memory_order_relaxed);
    return n;
  }

 private:
  static constexpr size_t kStripes = 16;

  struct alignas(64) Stripe {
    std::array<std::atomic<int64_t>, kNumFields> v{};
  };

  static size_t ThreadStripe() {
    static std::atomic<size_t> next{0};
    thread_local const size_t stripe = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
    return stripe;
  }

  std::array<Stripe, kStripes> stripes_;
};

absl::StatusOr<std::unique_ptr<Group>> Group::Create(GroupOptions options) {
  if (options.name.empty()) return absl::InvalidArgumentError("lru_cache: group name is empty");
  if (!options.getter) {
    return absl::InvalidArgumentError(
        absl::StrCat("lru_cache: group \"", options.name, "\" has no getter"));
  }
  if (options.cache_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lru_cache: cache_bytes must be >= 0, got ", options.cache_bytes));
  }
  if (!(options.lru2_history_fraction > 0 && options.lru2_history_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lru_cache: lru2_history_fraction must be in (0, 1), got ", options.lru2_history_fraction));
  }
  if (options.max_key_bytes == 0 || options.max_key_bytes > kMaxStoreKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("lru_cache: max_key_bytes must be in [1, ",
                                                   kMaxStoreKeyBytes, "], got ",
                                                   options.max_key_bytes));
  }
  return std::unique_ptr<Group>(new Group(std::move(options)));
}

Group::Group(GroupOptions options)
    : name_(std::move(options.name)),
      getter_(std::move(options.getter)),
      default_ttl_(options.default_ttl),
      max_key_bytes_(options.max_key_bytes),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      peers_(options.peers),
      store_(NewStore({.policy = options.policy,
                       .capacity_bytes = options.cache_bytes,
                       .shards = options.store_shards,
                       .lru2_history_fraction = options.lru2_history_fraction,
                       .clock = clock_,
                       .on_removal = std::move(options.on_removal)})),
      counters_(std::make_unique<Counters>()) {}

Group::~Group() = default;

absl::Status Group::ValidateKey(std::string_view key) const {
  if (key.empty()) return absl::InvalidArgumentError(kEmptyKeyMessage);
  if (key.size() > max_key_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("lru_cache: key too long (", key.size(), " bytes, max ", max_key_bytes_, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ByteView> Group::Get(std::string_view key, LoadScope scope) {
  if (absl::Status s = ValidateKey(key); !s.ok()) {
    counters_->Add(Counters::kRejected);
    return s;
  }
  if (std::optional<ByteView> hit = store_->Get(key)) {
    counters_->Add(Counters::kCacheHits);
    return *std::move(hit);
  }
  // Only misses are timed: two clock reads would double a hot hit's cost.
  const absl::Time t0 = clock_->Now();
  absl::StatusOr<ByteView> v = Load(key, scope);
  get_miss_latency_.Record(clock_->Now() - t0);
  return v;
}

std::optional<ByteView> Group::GetIfCached(std::string_view key) {
  std::optional<ByteView> hit = store_->Get(key);
  if (hit) counters_->Add(Counters::kCacheHits);
  return hit;
}

absl::StatusOr<ByteView> Group::Load(std::string_view key, LoadScope scope) {
  counters_->Add(Counters::kLoads);
  if (scope == LoadScope::kLocalOnly) return LoadLocally(key);
  return remote_flights_
      .Do(key,
          [&]() -> absl::StatusOr<ByteView> {
            // A flight that finished between our miss and this one populated
            // the store; loading again would be a duplicate load.
            if (std::optional<ByteView> hit = store_->Get(key)) return *std::move(hit);
            if (PeerPicker* picker = peers_.load(std::memory_order_acquire)) {
              if (std::shared_ptr<PeerGetter> peer = picker->PickPeer(key)) {
                counters_->Add(Counters::kLoadsDeduped);
                const absl::Time t0 = clock_->Now();
                absl::StatusOr<ByteView> v = peer->Get(name_, key);
                peer_latency_.Record(clock_->Now() - t0);
                // The owner's answer is final, found or not; only a failure
                // to reach it falls back to a local load, as the Go program
                // does.
                if (v.ok() || absl::IsNotFound(v.status()) || absl::IsInvalidArgument(v.status())) {
                  counters_->Add(Counters::kPeerLoads);
                  return v;
                }
                counters_->Add(Counters::kPeerErrors);
              }
            }
            return LoadLocally(key);
          })
      .result;
}

absl::StatusOr<ByteView> Group::LoadLocally(std::string_view key) {
  return local_flights_
      .Do(key,
          [&]() -> absl::StatusOr<ByteView> {
            if (std::optional<ByteView> hit = store_->Get(key)) return *std::move(hit);
            counters_->Add(Counters::kLoadsDeduped);
            return LoadFromGetter(key);
          })
      .result;
}

absl::StatusOr<ByteView> Group::LoadFromGetter(std::string_view key) {
  absl::StatusOr<Loaded> loaded;
  const absl::Time t0 = clock_->Now();
  try {
    loaded = getter_(key);
  } catch (const std::exception& e) {
    loaded = absl::InternalError(absl::StrCat("lru_cache: getter threw: ", e.what()));
  } catch (...) {
    loaded = absl::InternalError("lru_cache: getter threw a non-std exception");
  }
  getter_latency_.Record(clock_->Now() - t0);
  if (!loaded.ok()) {
    counters_->Add(Counters::kLocalLoadErrs);
    return std::move(loaded).status();
  }
  counters_->Add(Counters::kLocalLoads);
  store_->Set(key, loaded->value.view(), ExpiryOf(*loaded));
  return std::move(loaded->value);
}

absl::Time Group::ExpiryOf(const Loaded& loaded) const {
  const absl::Duration ttl = loaded.ttl.value_or(default_ttl_);
  if (ttl <= absl::ZeroDuration() || ttl == absl::InfiniteDuration()) {
    return absl::InfiniteFuture();
  }
  return clock_->Now() + ttl;
}

void Group::Remove(std::string_view key) { store_->Remove(key); }

void Group::CountServerRequest() { counters_->Add(Counters::kServerRequests); }

GroupStats Group::Stats() const {
  GroupStats s;
  s.cache_hits = counters_->Sum(Counters::kCacheHits);
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
  s.store = store_->Stats();
  s.get_miss_latency = get_miss_latency_.Snapshot();
  s.peer_latency = peer_latency_.Snapshot();
  s.getter_latency = getter_latency_.Snapshot();
  return s;
}

}  // namespace lcache
