// libFuzzer target: the HTTP origin's reading of an answer's headers
// (src/origin/http_caching.h): what an origin, or whoever answers in its
// place, sends decides how long a value is kept.
//
// The input is header lines split at '\n'. Property beyond "no crash, leak
// or UB": a value is kept for a positive time or not at all.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "origin/http_caching.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  lcache::internal::CachingHeaders headers;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    headers.Add(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  const lcache::internal::Freshness f =
      lcache::internal::FreshnessOf(headers, absl::FromUnixSeconds(1796299200));
  if (f.ttl && *f.ttl <= absl::ZeroDuration()) std::abort();
  if (!f.cacheable && f.ttl) std::abort();
  return 0;
}
