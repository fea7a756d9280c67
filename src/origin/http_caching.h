// What an HTTP answer says about keeping it: the freshness rules of RFC 9111
// for a shared cache, reduced to what a read-through cache can honour. It
// cannot revalidate, so whatever would need revalidation is not kept.
//
//   Cache-Control: no-store, no-cache or private   served, not kept
//   Vary: *                                        served, not kept
//   Cache-Control: s-maxage=N (else max-age=N)     kept for N s minus Age
//   Expires (without max-age)                      kept until then, measured
//                                                  against the answer's Date
//   none of these                                  the group's default TTL
//
// A lifetime of zero or less (already stale, an Expires that is not a date)
// means: served, not kept. Age is taken from the Age header only, not from
// the origin's Date against our clock: a few seconds of skew between the two
// would otherwise shorten (or void) every short max-age.

#ifndef LCACHE_SRC_ORIGIN_HTTP_CACHING_H_
#define LCACHE_SRC_ORIGIN_HTTP_CACHING_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace lcache::internal {

// The answer's headers that matter, as received (the last of each wins;
// Cache-Control lines are joined with ", ").
struct CachingHeaders {
  std::string cache_control;
  std::optional<std::string> expires;
  std::optional<std::string> date;
  std::optional<std::string> age;
  bool vary_any = false;  // Vary: * (no request can ever match it)

  // Takes one header line ("Name: value\r\n"); ignores the others.
  void Add(std::string_view line);
};

struct Freshness {
  bool cacheable = true;
  std::optional<absl::Duration> ttl;  // nullopt: the group's default
};

// `now`: when the answer arrived, for an Expires without a Date.
Freshness FreshnessOf(const CachingHeaders& headers, absl::Time now);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_ORIGIN_HTTP_CACHING_H_
