// The data set the benchmarks share: 1M entries of 16-byte keys and 100-byte
// values, read in a fixed pseudo-random order.
//
// Keys are formatted once, before timing, into one flat buffer in the order
// the benchmark reads them (KeySequence). Why not the alternatives:
//   - snprintf per operation costs more than a hot hit and would be counted
//     in the result;
//   - std::vector<std::string>: a 16-byte key does not fit libstdc++'s
//     15-byte small-string buffer, so every key is its own heap block and a
//     random read pays an extra cache miss that is not the store's.
// The flat buffer is read sequentially (or with a small stride, see
// KeyCursor), which the hardware prefetcher hides, so the time measured is
// the store's own. The entries themselves are inserted in key order, not in
// this order, so the store's memory is still visited at random.

#ifndef LCACHE_BENCH_BENCH_DATA_H_
#define LCACHE_BENCH_BENCH_DATA_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace lcache::bench {

inline constexpr int kEntries = 1'000'000;
inline constexpr size_t kKeySize = 16;
inline constexpr size_t kValueSize = 100;

// Room for every entry of the data set: 1M x 116 bytes is about 111 MiB, and
// LRU-2's main list gets 3/4 of it.
inline constexpr int64_t kBigCapacity = int64_t{256} << 20;

// The 100-byte value every entry holds.
inline std::string_view Value() {
  static const std::string* const value = new std::string(kValueSize, 'v');
  return *value;
}

// Writes the 16-byte key number `n` under a 4-byte `prefix` ("key-", "mis-").
inline void FormatKey(const char* prefix, int n, char out[kKeySize]) {
  char buf[kKeySize + 1];
  std::snprintf(buf, sizeof(buf), "%.4s%012d", prefix, n);
  std::copy_n(buf, kKeySize, out);
}

// kEntries keys "<prefix><12 digits>" for the numbers 0..kEntries-1, laid out
// back to back in a shuffled (but fixed) order.
class KeySequence {
 public:
  explicit KeySequence(const char* prefix, uint64_t seed = 42) : buf_(kEntries * kKeySize) {
    std::vector<int> order(kEntries);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
    for (size_t i = 0; i < order.size(); ++i) FormatKey(prefix, order[i], &buf_[i * kKeySize]);
  }

  std::string_view operator[](size_t i) const { return {&buf_[i * kKeySize], kKeySize}; }
  size_t size() const { return kEntries; }

 private:
  std::vector<char> buf_;
};

// The keys the stores hold, and keys they never hold (same length).
inline const KeySequence& HitKeys() {
  static const KeySequence* const keys = new KeySequence("key-");
  return *keys;
}
inline const KeySequence& MissKeys() {
  static const KeySequence* const keys = new KeySequence("mis-");
  return *keys;
}

// Positions in a KeySequence of kEntries keys: every key once per pass, each
// pass with a different stride. With one fixed order, a pass would leave the
// LRU list in access order, and the next pass's MoveToFront would find the
// entry's list neighbours to be the key just read and the key read next,
// which is an accidental prefetch that a real random workload does not get.
// The strides are small, so the key buffer is still read in a pattern the
// hardware prefetcher follows.
class KeyCursor {
 public:
  // Thread `thread` of `threads` starts at its own share of the sequence so
  // that threads do not read the same keys in lockstep.
  KeyCursor(int thread, int threads)
      : i_(static_cast<size_t>(thread) * kEntries / static_cast<size_t>(threads)) {}

  size_t Next() {
    const size_t i = i_;
    i_ += kStrides[stride_];
    if (i_ >= kEntries) i_ -= kEntries;
    if (--left_ == 0) {
      left_ = kEntries;
      stride_ = (stride_ + 1) % std::size(kStrides);
    }
    return i;
  }

 private:
  // Odd and not multiples of 5: coprime to kEntries = 2^6 * 5^6.
  static constexpr size_t kStrides[] = {1, 3, 7, 9, 11, 13, 17, 19};
  static_assert(kEntries == 1'000'000, "the strides must stay coprime to kEntries");

  size_t i_;
  size_t stride_ = 0;
  size_t left_ = kEntries;
};

}  // namespace lcache::bench

#endif  // LCACHE_BENCH_BENCH_DATA_H_
