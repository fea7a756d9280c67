#include "sim/policies.h"

#include <algorithm>
#include <compare>
#include <cstring>
#include <queue>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lcache/store.h"

namespace lcache::sim {
namespace {

constexpr int64_t kKeyBytes = 8;

class StoreCache final : public CachePolicy {
 public:
  StoreCache(StorePolicy policy, bool adaptive, const CacheConfig& config,
             double window_fraction = 0.01)
      : value_(static_cast<size_t>(config.entry_charge - kKeyBytes), 'v'),
        store_(NewStore({.policy = policy,
                         .capacity_bytes = config.entries * config.entry_charge,
                         .shards = 1,
                         .tinylfu_window_fraction = window_fraction,
                         .tinylfu_adaptive_window = adaptive,
                         .count_policy_memory = config.count_policy_memory})) {}

  bool Access(uint32_t key) override {
    char k[kKeyBytes] = {};
    std::memcpy(k, &key, sizeof(key));
    const std::string_view kv(k, sizeof(k));
    if (store_->Get(kv).has_value()) return true;
    store_->Set(kv, value_);
    return false;
  }

 private:
  const std::string value_;
  const std::unique_ptr<Store> store_;
};

// Intrusive doubly linked lists over key ids; a key is on at most one.
class KeyLists {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  KeyLists(uint32_t key_space, int lists)
      : prev_(key_space, kNone), next_(key_space, kNone), list_(key_space, -1), lists_(lists) {}

  int ListOf(uint32_t k) const { return list_[k]; }
  int64_t Size(int l) const { return lists_[l].size; }
  uint32_t Tail(int l) const { return lists_[l].tail; }
  // The neighbour of `k` towards its list's head (the next newer key), or kNone.
  uint32_t Newer(uint32_t k) const { return prev_[k]; }

  void PushFront(int l, uint32_t k) {
    List& L = lists_[l];
    prev_[k] = kNone;
    next_[k] = L.head;
    if (L.head != kNone) prev_[L.head] = k;
    L.head = k;
    if (L.tail == kNone) L.tail = k;
    ++L.size;
    list_[k] = l;
  }
  void Unlink(uint32_t k) {
    List& L = lists_[list_[k]];
    (prev_[k] != kNone ? next_[prev_[k]] : L.head) = next_[k];
    (next_[k] != kNone ? prev_[next_[k]] : L.tail) = prev_[k];
    --L.size;
    list_[k] = -1;
  }
  void MoveToFront(int l, uint32_t k) {
    Unlink(k);
    PushFront(l, k);
  }

 private:
  struct List {
    uint32_t head = kNone;
    uint32_t tail = kNone;
    int64_t size = 0;
  };
  std::vector<uint32_t> prev_, next_;
  std::vector<int8_t> list_;
  std::vector<List> lists_;
};

// ARC as in the paper's Figure 4: T1/T2 hold the cache (seen once / at least
// twice recently), B1/B2 the ghosts of their evictions, and p the target
// size of T1, moved by ghost hits.
class ArcCache final : public CachePolicy {
 public:
  ArcCache(int64_t c, uint32_t key_space) : c_(c), lists_(key_space, 4) {}

  bool Access(uint32_t x) override {
    const int where = lists_.ListOf(x);
    if (where == kT1 || where == kT2) {
      lists_.MoveToFront(kT2, x);
      return true;
    }
    if (c_ == 0) return false;
    const double b1 = static_cast<double>(lists_.Size(kB1));
    const double b2 = static_cast<double>(lists_.Size(kB2));
    if (where == kB1) {
      p_ = std::min(static_cast<double>(c_), p_ + std::max(b2 / b1, 1.0));
      Replace(false);
      lists_.MoveToFront(kT2, x);
      return false;
    }
    if (where == kB2) {
      p_ = std::max(0.0, p_ - std::max(b1 / b2, 1.0));
      Replace(true);
      lists_.MoveToFront(kT2, x);
      return false;
    }
    const int64_t l1 = lists_.Size(kT1) + lists_.Size(kB1);
    const int64_t total = l1 + lists_.Size(kT2) + lists_.Size(kB2);
    if (l1 == c_) {
      if (lists_.Size(kT1) < c_) {
        lists_.Unlink(lists_.Tail(kB1));
        Replace(false);
      } else {
        lists_.Unlink(lists_.Tail(kT1));
      }
    } else if (total >= c_) {
      if (total == 2 * c_) lists_.Unlink(lists_.Tail(kB2));
      Replace(false);
    }
    lists_.PushFront(kT1, x);
    return false;
  }

 private:
  enum { kT1, kT2, kB1, kB2 };

  void Replace(bool in_b2) {
    const auto t1 = static_cast<double>(lists_.Size(kT1));
    if (t1 >= 1 && ((in_b2 && t1 == p_) || t1 > p_)) {
      lists_.MoveToFront(kB1, lists_.Tail(kT1));
    } else if (lists_.Size(kT2) > 0) {
      lists_.MoveToFront(kB2, lists_.Tail(kT2));
    } else {
      lists_.MoveToFront(kB1, lists_.Tail(kT1));
    }
  }

  const int64_t c_;
  double p_ = 0;
  KeyLists lists_;
};

// SIEVE (Zhang et al., NSDI 2024): one FIFO queue, new keys at the head, a
// visited bit per key that a hit sets (nothing moves), and a hand that
// sweeps from the tail towards the head. To evict, the hand clears the bits
// it passes (wrapping from the head back to the tail) and drops the first
// unvisited key; it then rests on that key's newer neighbour, or on nothing
// (the tail next time) if the key was the head.
class SieveCache final : public CachePolicy {
 public:
  SieveCache(int64_t c, uint32_t key_space) : c_(c), lists_(key_space, 1), visited_(key_space, 0) {}

  bool Access(uint32_t key) override {
    if (lists_.ListOf(key) == kQueue) {
      visited_[key] = 1;
      return true;
    }
    if (c_ == 0) return false;
    if (lists_.Size(kQueue) == c_) Evict();
    lists_.PushFront(kQueue, key);
    visited_[key] = 0;
    return false;
  }

 private:
  enum { kQueue };

  void Evict() {
    uint32_t k = hand_ != KeyLists::kNone ? hand_ : lists_.Tail(kQueue);
    while (visited_[k] != 0) {
      visited_[k] = 0;
      k = lists_.Newer(k);
      if (k == KeyLists::kNone) k = lists_.Tail(kQueue);
    }
    hand_ = lists_.Newer(k);
    lists_.Unlink(k);
  }

  const int64_t c_;
  KeyLists lists_;
  std::vector<uint8_t> visited_;
  uint32_t hand_ = KeyLists::kNone;
};

// S3-FIFO (Yang et al., SOSP 2023): a small FIFO S (a tenth of the entries,
// at least one), a main FIFO M (the rest) and a ghost FIFO G of the keys
// evicted from S, as many as M holds. A hit only bumps a 2-bit frequency.
// A miss goes to M's head if its key is in G (and leaves G), else to S's
// head, with frequency 0. When the cache is full, one key is evicted first:
// while S holds at least its share (or M is empty), S's tail moves to M's
// head with frequency 0 if its frequency is above 1, else its key goes to G
// (dropping G's oldest when full) and it is evicted; otherwise M's tail is
// reinserted at M's head with its frequency less 1 if it is above 0, else
// evicted. The conditions are checked again after each move, until one key
// has left the cache.
//
// Rule variants. The promotion threshold is the paper's pseudocode's
// (freq > 1, that is, two hits while in S); the authors' blog and some ports
// promote after one hit (freq > 0). Rather than evicting from M as soon as a
// promotion fills it, as the pseudocode does, this re-checks S's share after
// each promotion and frees exactly one entry per miss, so the cache stays
// exactly full and counts entries the same way as the other policies here
// (M may briefly hold more than its share; the next eviction then takes
// from M).
class S3FifoCache final : public CachePolicy {
 public:
  S3FifoCache(int64_t c, uint32_t key_space)
      : c_(c),
        small_target_(std::max<int64_t>(1, c / 10)),
        ghost_capacity_(std::max<int64_t>(0, c - small_target_)),
        lists_(key_space, 3),
        freq_(key_space, 0) {}

  bool Access(uint32_t key) override {
    const int where = lists_.ListOf(key);
    if (where == kSmall || where == kMain) {
      freq_[key] = static_cast<uint8_t>(std::min(freq_[key] + 1, kMaxFreq));
      return true;
    }
    if (c_ == 0) return false;
    // Leave G before evicting, so that the eviction cannot drop this key.
    if (where == kGhost) lists_.Unlink(key);
    if (lists_.Size(kSmall) + lists_.Size(kMain) == c_) Evict();
    lists_.PushFront(where == kGhost ? kMain : kSmall, key);
    freq_[key] = 0;
    return false;
  }

 private:
  enum { kSmall, kMain, kGhost };
  static constexpr int kMaxFreq = 3;
  static constexpr int kPromoteAbove = 1;  // S's tail moves to M if freq > this

  void Evict() {
    for (;;) {
      if (lists_.Size(kSmall) >= small_target_ || lists_.Size(kMain) == 0) {
        const uint32_t t = lists_.Tail(kSmall);
        if (freq_[t] > kPromoteAbove) {
          lists_.MoveToFront(kMain, t);
          freq_[t] = 0;
          continue;
        }
        lists_.Unlink(t);
        if (ghost_capacity_ > 0) {
          if (lists_.Size(kGhost) == ghost_capacity_) lists_.Unlink(lists_.Tail(kGhost));
          lists_.PushFront(kGhost, t);
        }
        return;
      }
      const uint32_t t = lists_.Tail(kMain);
      if (freq_[t] > 0) {
        lists_.MoveToFront(kMain, t);
        --freq_[t];
        continue;
      }
      lists_.Unlink(t);
      return;
    }
  }

  const int64_t c_;
  const int64_t small_target_;
  const int64_t ghost_capacity_;
  KeyLists lists_;
  std::vector<uint8_t> freq_;
};

// Perfect LFU, the TinyLFU paper's reference: the exact count of every key
// over the whole trace so far (evicted keys keep theirs), never aged, and
// the cache holds the keys with the highest counts. A miss replaces the
// least-counted cached key (the least recent among equals) only if its own
// count, this access included, is higher: ties go to the cached key, as in
// the library's TinyLFU. Not an upper bound (opt is): it shows what exact
// frequency, unbounded metadata and no window are worth on a trace. On a
// fixed popularity (Zipf) that is about the best an online policy does; on
// a popularity that moves, the counts never forget and it lags.
class LfuCache final : public CachePolicy {
 public:
  LfuCache(int64_t c, uint32_t key_space)
      : c_(c), count_(key_space, 0), last_use_(key_space, 0), cached_(key_space, 0) {}

  bool Access(uint32_t key) override {
    ++now_;
    const uint64_t count = ++count_[key];
    if (cached_[key] != 0) {
      by_count_.erase({count - 1, last_use_[key], key});
      by_count_.insert({count, now_, key});
      last_use_[key] = now_;
      return true;
    }
    if (c_ == 0) return false;
    if (static_cast<int64_t>(by_count_.size()) == c_) {
      const Rank lowest = *by_count_.begin();
      if (count <= lowest.count) return false;
      by_count_.erase(by_count_.begin());
      cached_[lowest.key] = 0;
    }
    by_count_.insert({count, now_, key});
    last_use_[key] = now_;
    cached_[key] = 1;
    return false;
  }

 private:
  struct Rank {
    uint64_t count;
    uint64_t last_use;
    uint32_t key;
    auto operator<=>(const Rank&) const = default;
  };

  const int64_t c_;
  std::vector<uint64_t> count_;
  std::vector<uint64_t> last_use_;  // of cached keys
  std::vector<uint8_t> cached_;
  std::set<Rank> by_count_;  // the cached keys, least counted (then least recent) first
  uint64_t now_ = 0;
};

// Belady's MIN with bypass: a max-heap of (next use, key) with lazy deletion.
class OptCache final : public CachePolicy {
 public:
  OptCache(int64_t c, uint32_t key_space, const std::vector<uint32_t>& next_uses)
      : c_(c), next_uses_(next_uses), next_of_(key_space, kAbsent) {}

  bool Access(uint32_t key) override {
    const uint32_t next = next_uses_[i_++];
    const bool hit = next_of_[key] != kAbsent;
    if (!hit) {
      if (c_ == 0) return false;
      if (size_ == c_) {
        DropStale();
        // Keep the new key only if it is needed before the farthest one held.
        if (heap_.top().first <= next) return false;
        next_of_[heap_.top().second] = kAbsent;
        heap_.pop();
        --size_;
      }
      ++size_;
    }
    next_of_[key] = next;
    heap_.emplace(next, key);
    return hit;
  }

 private:
  static constexpr uint32_t kAbsent = UINT32_MAX;

  void DropStale() {
    while (next_of_[heap_.top().second] != heap_.top().first) heap_.pop();
  }

  const int64_t c_;
  const std::vector<uint32_t>& next_uses_;
  std::vector<uint32_t> next_of_;  // the next use of each cached key
  std::priority_queue<std::pair<uint32_t, uint32_t>> heap_;
  int64_t size_ = 0;
  size_t i_ = 0;
};

}  // namespace

const std::vector<std::string>& PolicyNames() {
  static const auto* const names =
      new std::vector<std::string>{"lru",   "lru2",   "tinylfu", "arc",
                                   "sieve", "s3fifo", "lfu",     "opt"};
  return *names;
}

std::vector<uint32_t> NextUses(const std::vector<uint32_t>& keys, uint32_t key_space) {
  std::vector<uint32_t> next(keys.size());
  std::vector<uint32_t> seen(key_space, static_cast<uint32_t>(keys.size()));
  for (size_t i = keys.size(); i-- > 0;) {
    next[i] = seen[keys[i]];
    seen[keys[i]] = static_cast<uint32_t>(i);
  }
  return next;
}

absl::StatusOr<std::unique_ptr<CachePolicy>> NewCachePolicy(std::string_view name,
                                                            const CacheConfig& config) {
  if (config.entries < 0) return absl::InvalidArgumentError("negative cache size");
  if (config.entry_charge <= kKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry charge must exceed the ", kKeyBytes, "-byte key"));
  }
  if (std::optional<StorePolicy> p = ParseStorePolicy(name)) {
    return std::make_unique<StoreCache>(*p, /*adaptive=*/true, config);
  }
  if (name == "tinylfu-fixed") {
    return std::make_unique<StoreCache>(StorePolicy::kTinyLfu, /*adaptive=*/false, config);
  }
  if (constexpr std::string_view kFixed = "tinylfu-fixed:"; name.starts_with(kFixed)) {
    const std::string f(name.substr(kFixed.size()));
    double fraction = 0;
    if (!absl::SimpleAtod(f, &fraction) || !(fraction > 0 && fraction < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tinylfu-fixed:F needs a window fraction F in (0, 1), got ", f));
    }
    return std::make_unique<StoreCache>(StorePolicy::kTinyLfu, /*adaptive=*/false, config,
                                        fraction);
  }
  if (name == "arc") return std::make_unique<ArcCache>(config.entries, config.key_space);
  if (name == "sieve") return std::make_unique<SieveCache>(config.entries, config.key_space);
  if (name == "s3fifo") return std::make_unique<S3FifoCache>(config.entries, config.key_space);
  if (name == "lfu") return std::make_unique<LfuCache>(config.entries, config.key_space);
  if (name == "opt") {
    if (config.next_uses == nullptr) return absl::InvalidArgumentError("opt needs the trace");
    return std::make_unique<OptCache>(config.entries, config.key_space, *config.next_uses);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown policy ", std::string(name),
                                                 "; expected one of ",
                                                 absl::StrJoin(PolicyNames(), ",")));
}

}  // namespace lcache::sim
