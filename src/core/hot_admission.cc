#include "core/hot_admission.h"

#include <random>

namespace lcache::internal {

HotAdmission::HotAdmission(HotPromotion promotion, int64_t expected_keys)
    : promotion_(promotion), sketch_(promotion == HotPromotion::kFrequency ? expected_keys : 0) {}

bool HotAdmission::Admit(std::string_view key) {
  if (promotion_ == HotPromotion::kRandom) {
    thread_local std::minstd_rand bits(std::random_device{}());
    return bits() % kOneIn == 0;
  }
  const uint64_t hash = FrequencySketch::Hash(key);
  std::lock_guard lock(mu_);
  sketch_.Increment(hash);
  return sketch_.Frequency(hash) >= kMinFetches;
}

}  // namespace lcache::internal
