// W-TinyLFU with an adaptive window, after Einziger, Friedman and Manes
// ("TinyLFU: A Highly Efficient Cache Admission Policy", 2017) and Caffeine.
//
// Each shard splits its bytes into
//   window      an LRU list where every new key starts (initially 1% of the
//               bytes), so that a burst of new keys can earn hits before they
//               are judged;
//   probation   the main region's entries that were not hit since they were
//               admitted (or were demoted);
//   protected   the main region's entries hit there, at most 80% of it.
// When the window overflows, its least recent entry is the candidate for the
// main region. If the main region has room it moves to probation; otherwise
// it competes with the main region's victim (the coldest probation entry, or
// protected if probation is empty) and the one the frequency sketch
// (frequency_sketch.h) has seen less often is evicted. Ties go to the victim,
// which is what lets a loop larger than the cache keep a stable part of it,
// and scans of one-off keys never displace an entry seen twice. As in
// Caffeine, a candidate seen more than 5 times that does not win outright
// is still admitted with probability 1/128, so an attacker cannot pin a victim
// by inflating its count through hash collisions.
//
// Adaptive window (Caffeine's hill climber): every sample period (ten
// requests per entry, the sketch's aging period) the shard compares its hit
// ratio with the previous period's and moves the window/main boundary by a
// step in the direction that helped, or back if it hurt; the step starts at
// 6.25% of the bytes and decays by 2% per period unless the hit ratio moves
// by 5 points or more. Unlike Caffeine it ignores a change within two
// standard errors of the sample's hit ratio: on a steady workload the plain
// climber wanders on noise and costs small caches up to 2 points on Zipf.
// Recency-biased traces grow the window towards LRU; frequency-biased ones
// (Zipf, loops) shrink it.
//
// Shift detection (ours): the climber acts once per ten requests per entry,
// too slowly when the popular keys change within that time; the keys that
// were popular keep saturated counts and win every admission until the
// sketch ages. So the shard also watches short samples (as many requests as
// it holds entries); a drop of the hit ratio by 3 points or more, and by 3
// standard errors, ages the sketch at once.
//
// Per-entry state is two spare flag bits of the entry header (kInMain,
// kProtected), so entries cost what they cost under LRU; the sketch adds 8
// to 16 bytes per entry (one word per entry, rounded up to a power of two)
// and is not counted in Stats().overhead_bytes.
// A hit costs a list move and a slot in a 16-entry buffer of hashes; the
// buffer is applied to the sketch when it fills and before every admission
// decision, with the blocks of all its keys prefetched at once, so the
// sketch's cache misses overlap instead of costing one memory latency per hit
// (Caffeine buffers reads for the same reason). All work is under the
// shard's mutex.

#include "store/tinylfu_store.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "store/frequency_sketch.h"
#include "store/sharded_store.h"

namespace lcache::internal {
namespace {

constexpr double kProtectedFraction = 0.8;
constexpr double kStepFraction = 0.0625;
constexpr double kStepDecay = 0.98;
constexpr double kRestartThreshold = 0.05;
// A climber sample moves the window only if its hit ratio differs from the
// last one it acted on by this many standard errors; smaller is noise.
constexpr double kSignificance = 2;
// A drop of the hit ratio this large (and significant at 3 standard errors)
// over one short sample of as many requests as there are entries means the
// workload moved on: the sketch ages at once rather than at its period's end.
constexpr double kShiftDrop = 0.03;
constexpr int kAttackFrequency = 5;

class TinyLfuPolicy {
 public:
  TinyLfuPolicy(int64_t capacity, const StoreOptions& options)
      : capacity_(capacity),
        adaptive_(options.tinylfu_adaptive_window),
        step_(-kStepFraction * static_cast<double>(capacity)) {
    SetWindow(std::llround(static_cast<double>(capacity) *
                           std::clamp(options.tinylfu_window_fraction, 0.0, 1.0)));
  }

  LruList& QueueOf(const Entry* e) {
    if (!e->in_main()) return window_;
    return e->is_protected() ? protected_ : probation_;
  }

  int64_t MaxCharge() const { return capacity_ == 0 ? kNoLimit : capacity_; }

  LruList* Admit(Entry* e, const Entry* old) {
    if (capacity_ == 0) return &window_;  // unbounded: nothing to decide
    if (e->charge() > capacity_) return nullptr;
    DrainHits();
    sketch_.Increment(FrequencySketch::Hash(e->key()));
    if (old != nullptr && old->in_main()) {
      // A new value for a key of the main region is an access: it stays.
      e->set_in_main(true);
      e->set_protected(true);
      return &protected_;
    }
    if (old == nullptr) {
      ++sample_misses_;
      ++short_misses_;
      sketch_.EnsureCapacity(window_.len() + probation_.len() + protected_.len() + 1);
      if (adaptive_) Adapt();
    }
    return &window_;
  }

  // `hash` is what Hint returned for e's key.
  LruList* Touch(Entry* e, uint64_t hash) {
    if (capacity_ == 0) {
      window_.MoveToFront(e);
      return nullptr;
    }
    hit_hashes_[pending_hits_++] = hash;
    if (pending_hits_ == kHitBuffer) DrainHits();
    ++sample_hits_;
    ++short_hits_;
    if (!e->in_main()) {
      window_.MoveToFront(e);
    } else if (e->is_protected()) {
      protected_.MoveToFront(e);
    } else {
      probation_.Unlink(e);
      e->set_protected(true);
      protected_.PushFront(e);
      DemoteProtectedOverflow();
    }
    return nullptr;
  }

  // Called before the shard's lock (reads only constants): hashes the key
  // for the sketch outside the critical section.
  uint64_t Hint(std::string_view key) const {
    if (capacity_ == 0) return 0;
    return FrequencySketch::Hash(key);
  }

  Entry* NextVictim() {
    if (capacity_ == 0) return nullptr;
    DemoteProtectedOverflow();
    // The main region is over its share when the window just grew or a
    // value there grew: its coldest entries go back to compete from the window.
    while (MainBytes() > MainCapacity()) {
      Entry* e = probation_.tail() != nullptr ? probation_.tail() : protected_.tail();
      QueueOf(e).Unlink(e);
      e->set_in_main(false);
      e->set_protected(false);
      window_.PushFront(e);
    }
    while (window_.bytes() > window_capacity_) {
      Entry* candidate = window_.tail();
      if (candidate->charge() > MainCapacity()) return candidate;
      if (MainBytes() + candidate->charge() <= MainCapacity()) {
        window_.Unlink(candidate);
        candidate->set_in_main(true);
        probation_.PushFront(candidate);
        continue;
      }
      // The main region is not empty here: it lacks room for the candidate.
      Entry* victim = probation_.tail() != nullptr ? probation_.tail() : protected_.tail();
      return Admits(candidate, victim) ? victim : candidate;
    }
    return nullptr;
  }

  template <typename F>
  void ForEachQueue(F f) {
    f(window_);
    f(probation_);
    f(protected_);
  }

 private:
  // Applies the buffered hits to the sketch: their blocks are fetched in
  // parallel first, so a batch costs about one memory latency, not one each.
  void DrainHits() {
    for (int i = 0; i < pending_hits_; ++i) sketch_.Prefetch(hit_hashes_[i]);
    for (int i = 0; i < pending_hits_; ++i) sketch_.Increment(hit_hashes_[i]);
    pending_hits_ = 0;
  }

  int64_t MainCapacity() const { return capacity_ - window_capacity_; }
  int64_t MainBytes() const { return probation_.bytes() + protected_.bytes(); }

  void SetWindow(int64_t bytes) {
    window_capacity_ = std::clamp<int64_t>(bytes, 0, capacity_);
    protected_capacity_ = std::llround(static_cast<double>(MainCapacity()) * kProtectedFraction);
  }

  void DemoteProtectedOverflow() {
    while (protected_.bytes() > protected_capacity_) {
      Entry* e = protected_.tail();
      protected_.Unlink(e);
      e->set_protected(false);
      probation_.PushFront(e);
    }
  }

  bool Admits(const Entry* candidate, const Entry* victim) {
    const int c = sketch_.Frequency(FrequencySketch::Hash(candidate->key()));
    const int v = sketch_.Frequency(FrequencySketch::Hash(victim->key()));
    if (c > v) return true;
    if (c <= kAttackFrequency) return false;
    rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
    return (rng_ & 127) == 0;
  }

  static double StandardError(double p, double n) { return std::sqrt(p * (1 - p) / n); }

  void Adapt() {
    const int64_t entries = window_.len() + probation_.len() + protected_.len();
    if (short_hits_ + short_misses_ >= std::max<int64_t>(entries, 64)) DetectShift();
    if (sample_hits_ + sample_misses_ >= sketch_.sample_size()) Climb();
  }

  void DetectShift() {
    const auto n = static_cast<double>(short_hits_ + short_misses_);
    const double hit_ratio = static_cast<double>(short_hits_) / n;
    short_hits_ = short_misses_ = 0;
    const double drop = short_previous_hit_ratio_ - hit_ratio;
    short_previous_hit_ratio_ = hit_ratio;
    if (drop > std::max(kShiftDrop, 3 * StandardError(hit_ratio, n))) sketch_.Age();
  }

  // One step of the hill climber; the new boundary applies from the next
  // NextVictim(), which moves entries across it.
  void Climb() {
    const auto n = static_cast<double>(sample_hits_ + sample_misses_);
    const double hit_ratio = static_cast<double>(sample_hits_) / n;
    sample_hits_ = sample_misses_ = 0;
    const double change = hit_ratio - previous_hit_ratio_;
    if (std::abs(change) < kSignificance * StandardError(hit_ratio, n)) {
      step_ *= kStepDecay;
      return;
    }
    const double amount = change >= 0 ? step_ : -step_;
    step_ = std::abs(change) >= kRestartThreshold
                ? kStepFraction * static_cast<double>(capacity_) * (amount >= 0 ? 1 : -1)
                : kStepDecay * amount;
    previous_hit_ratio_ = hit_ratio;
    SetWindow(window_capacity_ + std::llround(amount));
  }

  const int64_t capacity_;
  const bool adaptive_;
  int64_t window_capacity_ = 0;
  int64_t protected_capacity_ = 0;
  LruList window_;  // the lists are unbounded: this class enforces the budget
  LruList probation_;
  LruList protected_;
  FrequencySketch sketch_;
  int64_t sample_hits_ = 0;
  int64_t sample_misses_ = 0;
  double previous_hit_ratio_ = 0;
  double step_;
  uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
  static constexpr int kHitBuffer = 16;
  uint64_t hit_hashes_[kHitBuffer] = {};
  int pending_hits_ = 0;
  int64_t short_hits_ = 0;
  int64_t short_misses_ = 0;
  double short_previous_hit_ratio_ = 0;
};

}  // namespace

std::unique_ptr<Store> NewTinyLfuStore(const StoreOptions& options) {
  return std::make_unique<ShardedStore<TinyLfuPolicy>>(options);
}

}  // namespace lcache::internal
