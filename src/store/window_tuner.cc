#include "store/window_tuner.h"

#include <algorithm>
#include <cmath>

namespace lcache::internal {
namespace {

// A move needs the shadows to differ on at least this many requests, and by
// this many standard deviations of a fair coin (a sign test), so that noise
// does not move the window.
constexpr int64_t kMinDiscordant = 32;
constexpr double kSignificance = 2;
// Without a significant difference after this many shadow-sized periods the
// counts start again (so that old evidence does not outweigh new), with the
// shadows further apart.
constexpr int64_t kMaxPeriods = 8;

}  // namespace

void ShadowCache::Reset(int64_t capacity, int64_t window) {
  capacity_ = std::max<int64_t>(capacity, 1);
  slots_.assign(capacity_ + 1, Slot{});
  free_.clear();
  for (int64_t s = capacity_; s >= 0; --s) free_.push_back(static_cast<uint32_t>(s));
  index_.clear();
  // Headroom: abseil's table grows rather than purging tombstones once it
  // is over 25/32 full, which churn would otherwise reach, and the store
  // counted memory_bytes() against its budget when it sized the tuner.
  index_.reserve((capacity_ + 1) * 9 / 8 + 1);
  for (List& l : lists_) l = List{};
  SetWindow(window);
}

void ShadowCache::SetWindow(int64_t window) {
  window_capacity_ = std::clamp<int64_t>(window, 0, capacity_);
  protected_capacity_ =
      std::llround(static_cast<double>(capacity_ - window_capacity_) * kTinyLfuProtectedFraction);
  step_aside_margin_ = TinyLfuStepAsideMargin(static_cast<double>(window_capacity_) /
                                              static_cast<double>(capacity_));
}

void ShadowCache::SetWindowFraction(double fraction) {
  SetWindow(std::llround(fraction * static_cast<double>(capacity_)));
  // The rung's rule: at 304 entries the 10% rung rounds to 30 (9.9%), which
  // must still step aside as a store at 10% does.
  step_aside_margin_ = TinyLfuStepAsideMargin(fraction);
}

size_t ShadowCache::memory_bytes() const {
  return slots_.capacity() * sizeof(Slot) + free_.capacity() * sizeof(uint32_t) +
         index_.bucket_count() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
}

void ShadowCache::PushFront(Region r, uint32_t s) {
  List& l = lists_[r];
  Slot& slot = slots_[s];
  slot.region = r;
  slot.prev = kNil;
  slot.next = l.head;
  if (l.head != kNil) slots_[l.head].prev = s;
  l.head = s;
  if (l.tail == kNil) l.tail = s;
  ++l.size;
}

void ShadowCache::Unlink(uint32_t s) {
  Slot& slot = slots_[s];
  List& l = lists_[slot.region];
  (slot.prev != kNil ? slots_[slot.prev].next : l.head) = slot.next;
  (slot.next != kNil ? slots_[slot.next].prev : l.tail) = slot.prev;
  --l.size;
}

void ShadowCache::Drop(uint32_t s) {
  Unlink(s);
  index_.erase(slots_[s].hash);
  free_.push_back(s);
}

bool ShadowCache::Access(uint64_t hash, const FrequencySketch& sketch) {
  if (auto it = index_.find(hash); it != index_.end()) {
    const uint32_t s = it->second;
    const Region r = slots_[s].region;
    Unlink(s);
    PushFront(r == kWindow ? kWindow : kProtected, s);
    while (lists_[kProtected].size > protected_capacity_) {
      const uint32_t t = lists_[kProtected].tail;
      Unlink(t);
      PushFront(kProbation, t);
    }
    return true;
  }
  const uint32_t s = free_.back();
  free_.pop_back();
  slots_[s].hash = hash;
  index_.emplace(hash, s);
  PushFront(kWindow, s);
  MakeRoom(sketch);
  return false;
}

// The real store's NextVictim, over slots.
void ShadowCache::MakeRoom(const FrequencySketch& sketch) {
  const int64_t main_capacity = capacity_ - window_capacity_;
  while (lists_[kProtected].size > protected_capacity_) {
    const uint32_t t = lists_[kProtected].tail;
    Unlink(t);
    PushFront(kProbation, t);
  }
  while (MainSize() > main_capacity) {  // the window grew
    const uint32_t t =
        lists_[kProbation].tail != kNil ? lists_[kProbation].tail : lists_[kProtected].tail;
    Unlink(t);
    PushFront(kWindow, t);
  }
  while (lists_[kWindow].size > window_capacity_) {
    const uint32_t candidate = lists_[kWindow].tail;
    if (main_capacity == 0) {
      Drop(candidate);
      continue;
    }
    if (MainSize() < main_capacity) {
      Unlink(candidate);
      PushFront(kProbation, candidate);
      continue;
    }
    const uint32_t victim =
        lists_[kProbation].tail != kNil ? lists_[kProbation].tail : lists_[kProtected].tail;
    const int c = sketch.Frequency(slots_[candidate].hash);
    const int v = sketch.Frequency(slots_[victim].hash);
    bool admit = c > v;
    if (!admit && c > kTinyLfuAttackFrequency) {
      rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
      admit = (rng_ & 127) == 0;
    }
    if (admit) {
      Drop(victim);
      Unlink(candidate);
      PushFront(kProbation, candidate);
    } else {
      if (v - c >= step_aside_margin_ && slots_[victim].region == kProbation) {
        Unlink(victim);  // victim rotation, as in the store
        PushFront(kProbation, victim);
      }
      Drop(candidate);
    }
  }
}

const std::vector<double>& WindowTuner::Ladder() {
  static const std::vector<double> ladder = {0,   0.01, 0.02, 0.05, 0.1, 0.2, 0.3,
                                             0.4, 0.5,  0.6,  0.7,  0.8, 0.9, 1};
  return ladder;
}

WindowTuner::WindowTuner(double initial_fraction) {
  const std::vector<double>& ladder = Ladder();
  rung_ = 0;
  for (int i = 1; i < static_cast<int>(ladder.size()); ++i) {
    if (std::abs(ladder[i] - initial_fraction) < std::abs(ladder[rung_] - initial_fraction)) {
      rung_ = i;
    }
  }
}

void WindowTuner::Resize(int64_t entries) {
  sized_for_ = std::max<int64_t>(entries, 1);
  uint64_t rate = 1;
  while (sized_for_ / static_cast<int64_t>(rate) > kShadowEntries) rate *= 2;
  sample_mask_ = rate - 1;
  const int64_t capacity = std::max<int64_t>(sized_for_ / static_cast<int64_t>(rate), 1);
  low_.Reset(capacity, 0);
  high_.Reset(capacity, 0);
  Retarget();
}

void WindowTuner::Retarget() {
  const std::vector<double>& ladder = Ladder();
  const int top = static_cast<int>(ladder.size()) - 1;
  const auto at = [&](int rung) { return ladder[std::clamp(rung, 0, top)]; };
  low_.SetWindowFraction(at(rung_ - look_));
  high_.SetWindowFraction(at(rung_ + look_));
  // Let the shadows' contents settle on their new boundaries before counting.
  warmup_ = low_.capacity();
  requests_ = low_only_ = high_only_ = 0;
}

bool WindowTuner::Record(uint64_t hash, const FrequencySketch& sketch) {
  const bool low_hit = low_.Access(hash, sketch);
  const bool high_hit = high_.Access(hash, sketch);
  if (warmup_ > 0) {
    --warmup_;
    return false;
  }
  ++requests_;
  low_only_ += low_hit && !high_hit ? 1 : 0;
  high_only_ += high_hit && !low_hit ? 1 : 0;
  const int64_t discordant = low_only_ + high_only_;
  const int64_t lead = high_only_ - low_only_;
  if (discordant >= kMinDiscordant && requests_ >= low_.capacity() &&
      static_cast<double>(std::abs(lead)) > kSignificance * std::sqrt(discordant)) {
    const int top = static_cast<int>(Ladder().size()) - 1;
    const int direction = lead > 0 ? 1 : -1;
    // Moving on in the same direction, the tuner takes longer steps; a
    // reversal brings it back to single rungs around the optimum.
    const bool reversal = direction_ != 0 && direction != direction_;
    if (reversal) step_ = 1;
    const int next = std::clamp(rung_ + direction * step_, 0, top);
    const bool moved = next != rung_;
    rung_ = next;
    if (!reversal && direction_ != 0) step_ = std::min(step_ * 2, kMaxStep);
    direction_ = direction;
    look_ = step_;
    Retarget();
    return moved;
  }
  if (requests_ >= kMaxPeriods * low_.capacity()) {
    // No significant difference: the window sits on a plateau, which may
    // hide a better window further away. The shadows look wider; the step
    // stays, since a far shadow's lead gives a direction, not a distance.
    look_ = std::min(look_ * 2, kMaxStep);
    Retarget();
  }
  return false;
}

}  // namespace lcache::internal
