// SingleFlight: one execution per key for concurrent callers.
//
// Do(key, fn) runs fn once for all callers that ask for the same key while a
// call is in flight; every one of them gets the same result (value or error).
// If fn throws, the exception is captured, every waiting caller gets it
// rethrown, and the key is released: a throwing fn never leaves later callers
// waiting (the bug of a groupcache fork whose panicking loader did).
//
// Thread-safe. Uses std synchronisation only, so ThreadSanitizer sees it.

#ifndef LCACHE_SINGLEFLIGHT_H_
#define LCACHE_SINGLEFLIGHT_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "lcache/byte_view.h"

namespace lcache {

class SingleFlight {
 public:
  using Result = absl::StatusOr<ExpiringValue>;

  struct Outcome {
    Result result;
    bool shared;  // true when this caller waited on another caller's fn
  };

  SingleFlight() = default;
  SingleFlight(const SingleFlight&) = delete;
  SingleFlight& operator=(const SingleFlight&) = delete;

  // Runs fn, or waits for the call already running for key. fn runs on the
  // calling thread of the first caller.
  Outcome Do(std::string_view key, const std::function<Result()>& fn);

  // Number of keys with a call in flight.
  size_t InFlight() const;

 private:
  friend class SingleFlightTestPeer;
  struct Call;

  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lcache

#endif  // LCACHE_SINGLEFLIGHT_H_
