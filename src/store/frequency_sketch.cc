#include "store/frequency_sketch.h"

#include <algorithm>
#include <bit>

namespace lcache::internal {
namespace {

constexpr uint64_t kLowBitOfEachCounter = 0x1111111111111111ULL;
constexpr uint64_t kLowThreeBitsOfEachCounter = 0x7777777777777777ULL;
constexpr int64_t kSamplePerEntry = 10;

// Counter i (0..3) of a key: word 2i or 2i+1 of its block, one of 16 nibbles.
struct Slot {
  size_t word;
  int shift;
};

inline Slot SlotOf(uint32_t bits, int i) {
  const uint32_t b = bits >> (8 * i);
  return {static_cast<size_t>(2 * i + (b & 1)), static_cast<int>(((b >> 1) & 15) * 4)};
}

}  // namespace

FrequencySketch::FrequencySketch(int64_t entries) {
  table_.assign(kBlockWords, 0);
  block_mask_ = 0;
  entries_ = static_cast<int64_t>(kBlockWords);
  sample_size_ = kSamplePerEntry * entries_;
  EnsureCapacity(entries);
}

void FrequencySketch::EnsureCapacity(int64_t entries) {
  if (entries <= entries_) return;
  // The period follows the entry count exactly; the table, a power of two.
  entries_ = entries;
  sample_size_ = kSamplePerEntry * entries_;
  const auto words = std::bit_ceil(static_cast<uint64_t>(entries));
  if (words <= table_.size()) return;
  const size_t old_blocks = table_.size() / kBlockWords;
  const size_t new_blocks = static_cast<size_t>(words / kBlockWords);
  table_.resize(new_blocks * kBlockWords);
  // Block b of the larger table is read by the keys of block b & old_mask.
  for (size_t b = old_blocks; b < new_blocks; ++b) {
    const size_t from = (b & (old_blocks - 1)) * kBlockWords;
    std::copy_n(table_.begin() + static_cast<std::ptrdiff_t>(from), kBlockWords,
                table_.begin() + static_cast<std::ptrdiff_t>(b * kBlockWords));
  }
  block_mask_ = new_blocks - 1;
}

void FrequencySketch::Shrink(int64_t entries) {
  entries = std::max<int64_t>(entries, kBlockWords);
  const auto words = std::bit_ceil(static_cast<uint64_t>(entries));
  if (words >= table_.size()) return;
  // Block b of the smaller table is read by the keys of blocks b, b + half, ...
  const size_t new_size = static_cast<size_t>(words);
  for (size_t w = new_size; w < table_.size(); ++w) {
    uint64_t& into = table_[w % new_size];
    uint64_t merged = 0;
    for (int shift = 0; shift < 64; shift += 4) {
      merged |= std::max((into >> shift) & 15, (table_[w] >> shift) & 15) << shift;
    }
    into = merged;
  }
  table_.resize(new_size);
  table_.shrink_to_fit();
  block_mask_ = new_size / kBlockWords - 1;
  entries_ = entries;
  sample_size_ = kSamplePerEntry * entries_;
  additions_ = std::min(additions_, sample_size_ - 1);
}

int FrequencySketch::Frequency(uint64_t hash) const {
  const uint64_t s = Spread(hash);
  const uint64_t* block = &table_[BlockOf(s)];
  int freq = kMaxCount;
  for (int i = 0; i < 4; ++i) {
    const Slot slot = SlotOf(static_cast<uint32_t>(s), i);
    freq = std::min(freq, static_cast<int>((block[slot.word] >> slot.shift) & 15));
  }
  return freq;
}

void FrequencySketch::Increment(uint64_t hash) {
  const uint64_t s = Spread(hash);
  uint64_t* block = &table_[BlockOf(s)];
  bool added = false;
  for (int i = 0; i < 4; ++i) {
    const Slot slot = SlotOf(static_cast<uint32_t>(s), i);
    uint64_t& w = block[slot.word];
    if (((w >> slot.shift) & 15) != kMaxCount) {
      w += uint64_t{1} << slot.shift;
      added = true;
    }
  }
  // A key whose counters are all saturated adds no information.
  if (added && ++additions_ >= sample_size_) Halve();
}

void FrequencySketch::Decrement(uint64_t hash) {
  const uint64_t s = Spread(hash);
  uint64_t* block = &table_[BlockOf(s)];
  for (int i = 0; i < 4; ++i) {
    const Slot slot = SlotOf(static_cast<uint32_t>(s), i);
    uint64_t& w = block[slot.word];
    if (((w >> slot.shift) & 15) != 0) w -= uint64_t{1} << slot.shift;
  }
}

void FrequencySketch::Halve() {
  int64_t odd = 0;
  for (uint64_t& w : table_) {
    odd += std::popcount(w & kLowBitOfEachCounter);
    w = (w >> 1) & kLowThreeBitsOfEachCounter;
  }
  // Each addition raised four counters; the halving truncated `odd` halves.
  additions_ = std::max<int64_t>(0, (additions_ - odd / 4) / 2);
}

}  // namespace lcache::internal
