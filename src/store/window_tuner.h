// WindowTuner: chooses the size of W-TinyLFU's window by simulating two
// alternatives side by side on a sample of the keys.
//
// The window's best share of the cache depends on the workload: about 1% on
// frequency-biased traffic (Zipf, loops), 20-50% or all of it on
// recency-biased traffic (OLTP, a moving hot set). Caffeine's hill climber
// finds it by comparing the hit ratio of one sample period with the last one,
// which confounds the effect of its own move with the workload's drift: on
// the ARC paper's OLTP trace consecutive periods differ by up to 20 points
// whatever the window, and the climber wandered (59.4% at 10,000 pages where
// a fixed 50% window gets 62.7%).
//
// The tuner instead runs two shadow caches: miniature W-TinyLFU caches that
// hold only the 64-bit hashes of a sample of the keys (1 in R, chosen by hash,
// so each sees every request for its keys), sized entries / R, with windows
// one rung below and one above the current window on a ladder of fractions.
// Both see the same requests and consult the shard's own frequency sketch, so
// their difference is the effect of the window alone. The tuner moves the
// window towards the better shadow once the difference in hits is significant
// (a sign test over the requests where exactly one shadow hit, counted over
// at least one shadow-sized period, since a loop's hits come in bursts), then
// re-targets the shadows around the new rung. Steps (2 rungs at first)
// double up to 4 while moves keep their direction and fall back to one rung
// on a reversal, so a far optimum (all-LRU for a moving hot set) is reached
// in a few moves and a near one is not overshot. Without a significant difference for eight
// periods the shadows look twice as far out: the window may sit on a plateau
// (1% and 5% alike) with a better window beyond. Spatial sampling of this
// kind predicts a cache's hit ratio from a small sample (Waldspurger et al.,
// "Efficient MRC Construction with SHARDS", FAST 2015); the Caffeine
// simulator's "mini-sim" climber explores the same idea with more shadows.
//
// Cost: the sampled requests (all of them for caches of up to kShadowEntries
// entries) do two hash lookups and list moves in the shadows; memory is
// memory_bytes(), at most about 100 bytes per shadow entry. Not thread-safe:
// the owning shard's mutex guards it.

#ifndef LCACHE_SRC_STORE_WINDOW_TUNER_H_
#define LCACHE_SRC_STORE_WINDOW_TUNER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "store/frequency_sketch.h"

namespace lcache::internal {

// W-TinyLFU's shape, shared by the store (tinylfu_store.cc) and the shadows:
// the protected segment's share of the main region, and the count above
// which a candidate that does not win outright is still admitted with
// probability 1/128 (against hash flooding).
inline constexpr double kTinyLfuProtectedFraction = 0.8;
inline constexpr int kTinyLfuAttackFrequency = 5;

// The lead by which a probation victim must turn a candidate away to step
// aside for the next duel (victim rotation, tinylfu_store.cc), in a cache
// whose window is `window_fraction` of it: any lead once the window is 10%
// or more (recency pays, so a victim's count is likely stale), 3 below
// (frequency pays, and near-ties must keep their victim for a loop to keep
// its stable part).
inline int TinyLfuStepAsideMargin(double window_fraction) {
  return window_fraction >= 0.1 ? 1 : 3;
}

// A W-TinyLFU cache of key hashes that counts entries, for the tuner. It only
// reads the shard's sketch: the store's victim wear is not replayed.
class ShadowCache {
 public:
  // Empties the cache and sizes it for `capacity` entries, `window` of them
  // in the window.
  void Reset(int64_t capacity, int64_t window);
  // Moves the window/main boundary; entries cross it on the next misses.
  void SetWindow(int64_t window);
  // The same for a window of `fraction` of the capacity (a rung of the
  // tuner's ladder), rounded to whole entries. Victims step aside as in a
  // store whose window is that rung, whatever the rounding.
  void SetWindowFraction(double fraction);
  // One request for the key with this FrequencySketch::Hash; whether it hit.
  // On a miss the key is inserted, or rejected by `sketch` as the real store
  // would.
  bool Access(uint64_t hash, const FrequencySketch& sketch);

  int64_t size() const { return index_.size(); }
  int64_t capacity() const { return capacity_; }
  int64_t window() const { return window_capacity_; }
  int step_aside_margin() const { return step_aside_margin_; }
  size_t memory_bytes() const;

 private:
  enum Region : uint8_t { kWindow, kProbation, kProtected };
  struct Slot {
    uint64_t hash = 0;
    uint32_t prev = 0;
    uint32_t next = 0;
    Region region = kWindow;
  };
  struct List {
    uint32_t head = kNil;
    uint32_t tail = kNil;
    int64_t size = 0;
  };
  static constexpr uint32_t kNil = UINT32_MAX;

  void PushFront(Region r, uint32_t s);
  void Unlink(uint32_t s);
  void Drop(uint32_t s);
  void MakeRoom(const FrequencySketch& sketch);
  int64_t MainSize() const { return lists_[kProbation].size + lists_[kProtected].size; }

  int64_t capacity_ = 0;
  int64_t window_capacity_ = 0;
  int64_t protected_capacity_ = 0;
  int step_aside_margin_ = 0;  // TinyLfuStepAsideMargin of the window's share
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  absl::flat_hash_map<uint64_t, uint32_t> index_;
  List lists_[3];
  uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
};

class WindowTuner {
 public:
  // The window fractions the tuner moves between, smallest first.
  static const std::vector<double>& Ladder();
  // Shadows are at most this many entries: larger caches are sampled.
  static constexpr int64_t kShadowEntries = 512;

  // Starts on the rung nearest `initial_fraction`. Inactive until Resize().
  explicit WindowTuner(double initial_fraction);

  // Sizes the sample and the shadows for a cache of `entries` entries and
  // starts them afresh; the current rung is kept. Call when the cache is
  // first full and whenever its entry count has moved far from the last size.
  void Resize(int64_t entries);
  int64_t sized_for() const { return sized_for_; }

  // Whether requests for the key with this hash go to the shadows.
  bool Sampled(uint64_t hash) const {
    return sized_for_ > 0 && ((hash * 0x9e3779b97f4a7c15ULL) >> 32 & sample_mask_) == 0;
  }
  // Replays one sampled request in both shadows. Returns true when the
  // window fraction changed.
  bool Record(uint64_t hash, const FrequencySketch& sketch);

  double fraction() const { return Ladder()[rung_]; }
  int rung() const { return rung_; }
  size_t memory_bytes() const { return low_.memory_bytes() + high_.memory_bytes(); }

 private:
  void Retarget();

  static constexpr int kMaxStep = 4;

  int rung_;
  // Both start at two rungs: the ladder's bottom rungs (0, 1%, 2%) differ too
  // little for the shadows to tell apart quickly.
  int step_ = 2;       // rungs the next move takes
  int look_ = 2;       // the shadows sit this many rungs either side
  int direction_ = 0;  // of the last move: -1, +1, or 0 before the first
  int64_t sized_for_ = 0;
  uint64_t sample_mask_ = 0;  // R - 1
  ShadowCache low_;           // at rung_ - look_ (or the bottom rung)
  ShadowCache high_;          // at rung_ + look_ (or the top rung)
  int64_t warmup_ = 0;        // requests to ignore after a retarget
  int64_t requests_ = 0;
  int64_t low_only_ = 0;   // requests that hit in low_ but not in high_
  int64_t high_only_ = 0;  // and the other way round
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_WINDOW_TUNER_H_
