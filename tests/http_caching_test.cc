// The HTTP origin's caching rules (src/origin/http_caching.h): what an
// answer's headers make of the entry's life. The origin itself runs against
// a real HTTP server in origin_test.py.

#include "origin/http_caching.h"

#include <initializer_list>
#include <string>

#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

// 2026-12-03 12:00:00 GMT, and HTTP dates around it.
const absl::Time kNow = absl::FromUnixSeconds(1796299200);
constexpr char kNowDate[] = "Thu, 03 Dec 2026 12:00:00 GMT";

Freshness Of(std::initializer_list<std::string> lines) {
  CachingHeaders headers;
  for (const std::string& line : lines) headers.Add(line + "\r\n");
  return FreshnessOf(headers, kNow);
}

TEST(HttpCachingTest, NothingSaidMeansTheGroupsDefault) {
  const Freshness f = Of({"Content-Type: text/plain", "ETag: \"x\""});
  EXPECT_TRUE(f.cacheable);
  EXPECT_FALSE(f.ttl.has_value());
}

TEST(HttpCachingTest, NoStoreNoCacheAndPrivateAreServedNotKept) {
  for (const char* value : {"no-store", "No-Cache", "private", "max-age=60, no-store",
                            "public,  PRIVATE=\"Set-Cookie\""}) {
    EXPECT_FALSE(Of({std::string("Cache-Control: ") + value}).cacheable) << value;
  }
  // Vary: * matches no later request.
  EXPECT_FALSE(Of({"Cache-Control: max-age=60", "Vary: Accept, *"}).cacheable);
  EXPECT_EQ(Of({"Cache-Control: max-age=60", "Vary: Accept-Encoding"}).ttl, absl::Seconds(60));
  // Across several Cache-Control lines too.
  EXPECT_FALSE(Of({"Cache-Control: max-age=60", "cache-control: no-store"}).cacheable);
}

TEST(HttpCachingTest, MaxAgeLessAgeIsTheLifetime) {
  EXPECT_EQ(Of({"Cache-Control: public, max-age=60"}).ttl, absl::Seconds(60));
  EXPECT_EQ(Of({"Cache-Control: max-age=60", "Age: 10"}).ttl, absl::Seconds(50));
  EXPECT_EQ(Of({"Cache-Control: max-age=\"30\""}).ttl, absl::Seconds(30));
  // s-maxage is for shared caches like this one: it wins over max-age.
  EXPECT_EQ(Of({"Cache-Control: max-age=60, s-maxage=5"}).ttl, absl::Seconds(5));
  // Stale already, zero, or malformed (RFC 9111: treat as stale): not kept.
  EXPECT_FALSE(Of({"Cache-Control: max-age=60", "Age: 60"}).cacheable);
  EXPECT_FALSE(Of({"Cache-Control: max-age=0"}).cacheable);
  EXPECT_FALSE(Of({"Cache-Control: max-age=-5"}).cacheable);
  EXPECT_FALSE(Of({"Cache-Control: max-age=soon"}).cacheable);
  // Too many digits for int64: capped, not wrapped.
  EXPECT_GT(*Of({"Cache-Control: max-age=99999999999999999999999"}).ttl, absl::Hours(24 * 365));
}

TEST(HttpCachingTest, ExpiresCountsFromTheAnswersDate) {
  EXPECT_EQ(Of({std::string("Date: ") + kNowDate, "Expires: Thu, 03 Dec 2026 12:00:30 GMT"}).ttl,
            absl::Seconds(30));
  // The origin's clock may differ from ours: Expires - Date, not Expires - now.
  EXPECT_EQ(Of({"Date: Thu, 03 Dec 2026 08:00:00 GMT", "Expires: Thu, 03 Dec 2026 08:01:00 GMT"})
                .ttl,
            absl::Seconds(60));
  // Without Date: against now. In the past, or not a date ("0"): not kept.
  EXPECT_EQ(Of({"Expires: Thu, 03 Dec 2026 12:10:00 GMT"}).ttl, absl::Minutes(10));
  EXPECT_FALSE(Of({"Expires: Thu, 03 Dec 2026 11:00:00 GMT"}).cacheable);
  EXPECT_FALSE(Of({"Expires: 0"}).cacheable);
  // max-age wins over Expires.
  EXPECT_EQ(Of({"Cache-Control: max-age=5", "Expires: Thu, 03 Dec 2026 13:00:00 GMT"}).ttl,
            absl::Seconds(5));
}

TEST(HttpCachingTest, LinesWithoutAColonAreIgnored) {
  CachingHeaders headers;
  headers.Add("HTTP/1.1 200 OK\r\n");
  headers.Add("\r\n");
  headers.Add("Cache-Control:max-age=7\r\n");
  EXPECT_EQ(FreshnessOf(headers, kNow).ttl, absl::Seconds(7));
}

}  // namespace
}  // namespace lcache::internal
