#include "core/hot_admission.h"

#include <random>

namespace lcache::internal {

HotAdmission::HotAdmission(HotPromotion promotion, int64_t expected_keys, int64_t capacity_bytes)
    : promotion_(promotion),
      warm_up_bytes_(capacity_bytes / 8 * 7),
      sketch_(promotion == HotPromotion::kFrequency ? expected_keys : 0) {}

bool HotAdmission::Admit(std::string_view key) {
  if (promotion_ == HotPromotion::kRandom) {
    thread_local std::minstd_rand bits(std::random_device{}());
    return bits() % kOneIn == 0;
  }
  const uint64_t hash = FrequencySketch::Hash(key);
  const bool room = bytes_.load(std::memory_order_relaxed) < warm_up_bytes_;
  std::lock_guard lock(mu_);
  sketch_.Increment(hash);
  return room || sketch_.Frequency(hash) >= kMinFetches;
}

}  // namespace lcache::internal
