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
// Adaptive window (window_tuner.h): two shadow caches of key hashes, fed a
// sample of the keys, run with windows below and above the current one on a
// ladder from 0% to 100%; the window moves towards the shadow that hits more
// once the difference is significant, in steps that grow while the moves
// keep the same direction. Unlike Caffeine's hill climber, which compares
// one period's hit ratio with the previous period's and so mistakes the
// workload's drift for the effect of its move, the shadows see the same
// requests at the same time. The window starts at tinylfu_window_fraction's
// nearest rung (1%).
// Recency-biased traces grow the window towards LRU; frequency-biased ones
// (Zipf, loops) keep it small.
//
// Shift detection (ours): the keys that were popular keep saturated counts
// and win every admission until the sketch ages (every ten requests per
// entry). So the shard also watches short samples (as many requests as it
// holds entries); a drop of the hit ratio by 3 points or more, and by 3
// standard errors, ages the sketch at once.
//
// Victim wear (ours): a victim that turns a candidate away with a count at
// least kWearMargin above the candidate's loses one count (before the 1/128
// draw). A key that is still popular earns its counts back; one kept only
// by past popularity (the hot set moved on before the sketch aged) wears
// down to within kWearMargin - 1 of the newcomers' counts in a few duels,
// which their own accesses then close, instead of holding them off for a
// whole aging period. Narrower margins are not worn, so near-ties (a loop's
// keys, all seen about as often) keep going to the victim. Measured
// (docs/EVICTION.md): +0.3 to +0.4 points on OLTP, up to +0.45 on Zipf and
// +0.26 on a moving hot set; margins of 1 or 2 cost the lab's loop up to 21
// and 7.5 points. Since victims rotate (below), each duel wears the victim
// it meets, so the wear is spread over the stale keys instead of piling on
// one; measured then, it is worth 0.14 on OLTP and within 0.05 elsewhere.
//
// Victim rotation (ours): a probation victim that turns a candidate away
// goes to the front of probation, so the next candidate is judged against
// the entry behind it. Without it one victim with a high count, often a key
// that was popular once (the hot set moved), turns away every candidate
// until the sketch ages, while weaker entries behind it stay: every duel is
// against the one entry least likely to lose. How large a lead makes the
// victim step aside depends on the window (TinyLfuStepAsideMargin): while
// the tuner finds that frequency pays (a window under 10%), only a lead of
// 3 counts or more. A loop larger than the cache keeps its stable part
// because one victim keeps winning its near-ties; stepping aside on any
// lead took the lab's loop at 40% of its length from 93% of Belady's
// optimum to 81% (83-84% with a lead of 1 or 2). Once the window is 10% or more, recency pays and a
// victim's count is more likely stale: any lead. Measured
// (docs/EVICTION.md): the moving hot set -1.39 -> -0.95 points under ARC on
// average, OLTP +0.20, the mixed trace +0.12, Zipf +0.01 to +0.06, the loop
// -0.7 (92% of the optimum at 40% of its length); 4 points missed, not 7.
//
// Memory: per-entry state is two spare flag bits of the entry header
// (kInMain, kProtected), so entries cost what they cost under LRU. The
// sketch (8 to 16 bytes per entry: one word per entry, rounded up to a power
// of two; refitted by FitSketch once the tuner is counted) and the tuner's
// shadows (at most about 64 KB per shard) count against the shard's budget
// (up to half of it; StoreOptions::count_policy_memory) and in
// Stats().overhead_bytes and policy_bytes.
//
// A hit costs a list move and a slot in a 16-entry buffer of hashes; the
// buffer is applied to the sketch when it fills and before every admission
// decision, with the blocks of all its keys prefetched at once, so the
// sketch's cache misses overlap instead of costing one memory latency per hit
// (Caffeine buffers reads for the same reason). A request for a sampled key
// (1 in R, R = entries / 512 rounded up to a power of two) also replays in
// the two shadows. All of this is under the shard's mutex, except for
// contended hits.
//
// Contended hits. An entry whose value is held elsewhere when it is hit is
// being read by several threads at once (sharded_store.h marks it). Were
// each of its hits to take the shard's mutex, the threads would pass the
// mutex's line, the lists' heads and the sketch's block between their cores
// on every hit: two threads reading the same 8 keys ran at a fifth of one
// thread's rate. Such hits skip the lock instead, like LRU's, and one in
// kLossyHitPeriod of them, drawn at random, takes it and is applied in full
// (list move, sketch count, shadows), standing for the others in the shift
// detector's hit count. That is Caffeine's lossy read buffer without the
// buffer: the sketch sees a contended key's hits sampled (they are
// saturated anyway), and its place in the lists is refreshed one time in
// 64. A single thread that holds no value while it reads never makes an
// entry contended, so the simulator's replays (and their hit ratios) are
// exactly those of a store whose every hit is applied.
// The mark does not wear off: a reader that holds a value while it reads
// the key again marks it too, and its hits are then sampled until it is
// replaced or evicted. The cache's own upkeep does not mark: a hand-off or
// replica pass snapshots keys, not entries, and reads a value with Peek
// only when its call can go out.

#include "store/tinylfu_store.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "store/frequency_sketch.h"
#include "store/sharded_store.h"
#include "store/window_tuner.h"

namespace lcache::internal {
namespace {

// A drop of the hit ratio this large (and significant at 3 standard errors)
// over one short sample of as many requests as there are entries means the
// workload moved on: the sketch ages at once rather than at its period's end.
constexpr double kShiftDrop = 0.03;
// A victim that turns a candidate away with a count this much above the
// candidate's loses one count (see "Victim wear" above).
constexpr int kWearMargin = 4;
// The sketch and the tuner count against the budget, but never more than
// this share of it: a store too small for them still holds entries.
constexpr int64_t kMaxPolicyShareDivisor = 2;

class TinyLfuPolicy {
 public:
  TinyLfuPolicy(int64_t capacity, const StoreOptions& options)
      : capacity_(capacity),
        adaptive_(options.tinylfu_adaptive_window),
        count_policy_memory_(options.count_policy_memory),
        tuner_(options.tinylfu_window_fraction) {
    window_fraction_ = adaptive_ ? tuner_.fraction()
                                 : std::clamp(options.tinylfu_window_fraction, 0.0, 1.0);
    Resize();
  }

  LruList& QueueOf(const Entry* e) {
    if (!e->in_main()) return window_;
    return e->is_protected() ? protected_ : probation_;
  }

  // Read without the shard's lock, so it is a constant: the bytes entries
  // are guaranteed whatever the sketch and the tuner take (usable_ varies).
  int64_t MaxCharge() const {
    if (capacity_ == 0) return kNoLimit;
    return count_policy_memory_ ? capacity_ - capacity_ / kMaxPolicyShareDivisor : capacity_;
  }

  // The sketch and the tuner: what Stats().overhead_bytes adds for them.
  int64_t PolicyBytes() const {
    return static_cast<int64_t>(sketch_.memory_bytes() + tuner_.memory_bytes());
  }

  LruList* Admit(Entry* e, const Entry* old) {
    if (capacity_ == 0) return &window_;  // unbounded: nothing to decide
    if (e->charge() > usable_) return nullptr;
    DrainHits();
    const uint64_t hash = FrequencySketch::Hash(e->key());
    sketch_.Increment(hash);
    if (old != nullptr && old->in_main()) {
      // A new value for a key of the main region is an access: it stays.
      e->set_in_main(true);
      e->set_protected(true);
      return &protected_;
    }
    if (old == nullptr) {
      ++short_misses_;
      ++short_weight_squares_;
      const size_t bytes = sketch_.memory_bytes();
      sketch_.EnsureCapacity(window_.len() + probation_.len() + protected_.len() + 1);
      if (sketch_.memory_bytes() != bytes) Resize();
      if (adaptive_) {
        DetectShift();
        Tune(hash);
      }
    }
    return &window_;
  }

  // Lock-free hits (sharded_store.h), lossy, for contended entries only:
  // see "Contended hits" above.
  // The turn is drawn at random, not counted: a thread reading p contended
  // keys in a fixed order would otherwise only ever apply the hits of
  // p / gcd(p, kLossyHitPeriod) of them.
  static bool MarkHitWithoutLock(const Entry* e) {
    t_lossy_turn = 0;  // a declined hit goes to Touch next (LockedGet)
    if (!e->contended()) return false;
    uint32_t& x = t_lossy_rng;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;  // xorshift32
    if ((x & (kLossyHitPeriod - 1)) != 0) return true;
    t_lossy_turn = reinterpret_cast<uintptr_t>(e);
    return false;
  }

  // `hash` is what Hint returned for e's key.
  LruList* Touch(Entry* e, uint64_t hash) {
    // The shift detector's hit ratio also counts the hits this thread's turn
    // stands for (weighed as such in its error: DetectShift).
    // The turn is the entry's: were it gone by the time the lock is held
    // (a miss, no Touch), a later locked hit of another key must not take it.
    const int64_t weight = t_lossy_turn == reinterpret_cast<uintptr_t>(e) ? kLossyHitPeriod : 1;
    t_lossy_turn = 0;
    if (capacity_ == 0) {
      window_.MoveToFront(e);
      return nullptr;
    }
    hit_hashes_[pending_hits_++] = hash;
    if (pending_hits_ == kHitBuffer) DrainHits();
    short_hits_ += weight;
    short_weight_squares_ += weight * weight;
    if (adaptive_) Tune(hash);
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
    // The main region is over its share when the window just grew, a value
    // there grew or the sketch took more of the budget: its coldest entries
    // go back to compete from the window.
    while (MainBytes() > MainCapacity() && (probation_.tail() || protected_.tail())) {
      Entry* e = probation_.tail() != nullptr ? probation_.tail() : protected_.tail();
      QueueOf(e).Unlink(e);
      e->set_in_main(false);
      e->set_protected(false);
      window_.PushFront(e);
    }
    if (adaptive_ && window_.bytes() > window_capacity_) SizeTuner();
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

  int64_t MainCapacity() const { return usable_ - window_capacity_; }
  int64_t MainBytes() const { return probation_.bytes() + protected_.bytes(); }

  // Recomputes the bytes left for entries after the sketch and the tuner,
  // and the regions' shares of them.
  void Resize() {
    usable_ = capacity_;
    if (count_policy_memory_) {
      usable_ -= std::min(PolicyBytes(), capacity_ / kMaxPolicyShareDivisor);
    }
    window_capacity_ =
        std::clamp<int64_t>(std::llround(static_cast<double>(usable_) * window_fraction_), 0,
                            usable_);
    protected_capacity_ = std::llround(static_cast<double>(MainCapacity()) * kTinyLfuProtectedFraction);
  }

  // Sizes the tuner's sample when the shard is first full, and again when
  // its entry count has halved or doubled since (values changed size).
  void SizeTuner() {
    if (MainBytes() + window_.bytes() < usable_ - usable_ / 64) return;
    const int64_t entries = window_.len() + probation_.len() + protected_.len();
    const int64_t sized = tuner_.sized_for();
    if (sized != 0 && entries <= 2 * sized && 2 * entries >= sized) return;
    tuner_.Resize(entries);
    Resize();
    FitSketch(entries);
  }

  // The sketch grew with the entry count while the shard filled, before the
  // tuner's memory was counted; the shard now holds fewer entries than that,
  // and the sketch may be twice what they need. Halve it while the entries
  // that the freed bytes make room for still fit the smaller table (so that
  // it will not grow straight back).
  void FitSketch(int64_t entries) {
    const int64_t held = MainBytes() + window_.bytes();
    if (entries == 0 || held == 0) return;
    const double per_entry = static_cast<double>(held) / static_cast<double>(entries);
    for (;;) {
      const auto words = static_cast<int64_t>(sketch_.memory_bytes() / sizeof(uint64_t));
      const int64_t freed = count_policy_memory_ ? words / 2 * int64_t{sizeof(uint64_t)} : 0;
      const auto fit = static_cast<int64_t>(static_cast<double>(usable_ + freed) / per_entry);
      if (words <= 8 || fit + 1 > words / 2) return;  // 8 words: one block, the minimum
      sketch_.Shrink(std::max(fit + 1, words / 2));   // one halving at a time
      Resize();
    }
  }

  void Tune(uint64_t hash) {
    if (!tuner_.Sampled(hash) || !tuner_.Record(hash, sketch_)) return;
    window_fraction_ = tuner_.fraction();
    Resize();
  }

  void DemoteProtectedOverflow() {
    while (protected_.bytes() > protected_capacity_) {
      Entry* e = protected_.tail();
      protected_.Unlink(e);
      e->set_protected(false);
      probation_.PushFront(e);
    }
  }

  // Whether `candidate` replaces `victim`. A victim that wins may lose a
  // count (wear) and step aside (rotation): see the top of the file.
  bool Admits(const Entry* candidate, Entry* victim) {
    const int c = sketch_.Frequency(FrequencySketch::Hash(candidate->key()));
    const uint64_t victim_hash = FrequencySketch::Hash(victim->key());
    const int v = sketch_.Frequency(victim_hash);
    if (c > v) return true;
    if (v - c >= kWearMargin) sketch_.Decrement(victim_hash);
    if (c > kTinyLfuAttackFrequency) {
      rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
      if ((rng_ & 127) == 0) return true;
    }
    if (v - c >= TinyLfuStepAsideMargin(window_fraction_) && victim == probation_.tail()) {
      probation_.MoveToFront(victim);
    }
    return false;
  }

  static double StandardError(double p, double n) { return std::sqrt(p * (1 - p) / n); }

  void DetectShift() {
    const int64_t entries = window_.len() + probation_.len() + protected_.len();
    if (short_hits_ + short_misses_ < std::max<int64_t>(entries, 64)) return;
    const auto n = static_cast<double>(short_hits_ + short_misses_);
    const double hit_ratio = static_cast<double>(short_hits_) / n;
    // Requests weigh 1, but a lossy turn's hit stands for kLossyHitPeriod:
    // the error is that of the effective number of requests (n when every
    // weight is 1, as in a single thread).
    const double effective = n * n / static_cast<double>(short_weight_squares_);
    short_hits_ = short_misses_ = short_weight_squares_ = 0;
    const double drop = short_previous_hit_ratio_ - hit_ratio;
    short_previous_hit_ratio_ = hit_ratio;
    if (drop > std::max(kShiftDrop, 3 * StandardError(hit_ratio, effective))) sketch_.Age();
  }

  const int64_t capacity_;
  const bool adaptive_;
  const bool count_policy_memory_;
  double window_fraction_ = 0;
  int64_t usable_ = 0;  // capacity_ less what the sketch and the tuner take
  int64_t window_capacity_ = 0;
  int64_t protected_capacity_ = 0;
  LruList window_;  // the lists are unbounded: this class enforces the budget
  LruList probation_;
  LruList protected_;
  FrequencySketch sketch_;
  WindowTuner tuner_;
  uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
  static constexpr int kHitBuffer = 16;
  // Of a thread's lock-free hits of contended entries, one in this many (on
  // average; a power of two) takes the lock and is applied, standing for
  // the others.
  static constexpr int kLossyHitPeriod = 64;
  static_assert((kLossyHitPeriod & (kLossyHitPeriod - 1)) == 0, "drawn with a mask");
  static constinit thread_local uint32_t t_lossy_rng;
  // The entry whose lossy turn this thread is taking (its address), or 0.
  static constinit thread_local uintptr_t t_lossy_turn;
  uint64_t hit_hashes_[kHitBuffer] = {};
  int pending_hits_ = 0;
  int64_t short_hits_ = 0;
  int64_t short_misses_ = 0;
  int64_t short_weight_squares_ = 0;  // the sum of the requests' weights squared
  double short_previous_hit_ratio_ = 0;
};

constinit thread_local uint32_t TinyLfuPolicy::t_lossy_rng = 0x9e3779b9;
constinit thread_local uintptr_t TinyLfuPolicy::t_lossy_turn = 0;

}  // namespace

std::unique_ptr<Store> NewTinyLfuStore(const StoreOptions& options) {
  return std::make_unique<ShardedStore<TinyLfuPolicy>>(options);
}

}  // namespace lcache::internal
