// The slow-link rule of the lean client (src/peer/h2/round_trips.h): PING
// round trips against their own usual, with times given by the test.

#include "peer/h2/round_trips.h"

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kMs = absl::Milliseconds(1);
const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

class RoundTripsTest : public ::testing::Test {
 protected:
  // `n` round trips of `rtt`, a second apart.
  void Add(int n, absl::Duration rtt) {
    for (int i = 0; i < n; ++i) {
      trips_.Add(rtt, now_);
      now_ += absl::Seconds(1);
    }
  }
  bool Slow() const {
    return trips_.slow([this] { return now_; });
  }

  RoundTrips trips_;
  absl::Time now_ = kStart;
};

TEST_F(RoundTripsTest, ALinkIsSlowAfterThreeSlowRoundTripsInARow) {
  Add(10, absl::Microseconds(100));
  EXPECT_FALSE(Slow());
  Add(2, 200 * kMs);
  EXPECT_FALSE(Slow()) << "two slow round trips are not yet a slow link";
  Add(1, 200 * kMs);
  EXPECT_TRUE(Slow());
  EXPECT_THAT(trips_.Why(), HasSubstr("PING round trip 200ms, usually 100us"));
  Add(1, absl::Microseconds(150));
  EXPECT_FALSE(Slow()) << "back at the first usual round trip";
}

TEST_F(RoundTripsTest, SlowMeansFarAboveTheUsualAndByMoreThanTheMargin) {
  // On loopback, eight times the usual is still microseconds: not slow.
  Add(5, absl::Microseconds(50));
  Add(5, absl::Microseconds(2000));
  EXPECT_FALSE(Slow());
  // Across a WAN, 20 ms over a usual 40 ms is not eight times it.
  RoundTrips wan;
  for (int i = 0; i < 5; ++i) wan.Add(40 * kMs, kStart + absl::Seconds(i));
  for (int i = 5; i < 10; ++i) wan.Add(300 * kMs, kStart + absl::Seconds(i));
  EXPECT_FALSE(wan.slow([] { return kStart + absl::Seconds(10); }));
  for (int i = 10; i < 13; ++i) wan.Add(400 * kMs, kStart + absl::Seconds(i));
  EXPECT_TRUE(wan.slow([] { return kStart + absl::Seconds(13); }));
}

TEST_F(RoundTripsTest, TheFirstRoundTripsHaveNoUsualToBeSlowAgainst) {
  Add(3, 200 * kMs);
  EXPECT_FALSE(Slow());
}

TEST_F(RoundTripsTest, ASlowLinkThatCarriesNothingIsNotJudgedOnItsPast) {
  Add(5, absl::Microseconds(100));
  Add(3, 200 * kMs);
  EXPECT_TRUE(Slow());
  now_ += RoundTrips::kStale;
  EXPECT_FALSE(Slow());
}

TEST_F(RoundTripsTest, ARoundTripThatIsNotPositiveIsIgnored) {
  Add(5, absl::Microseconds(100));
  Add(1, absl::ZeroDuration());
  Add(1, -absl::Milliseconds(5));  // a clock that stepped back
  Add(3, 200 * kMs);
  EXPECT_TRUE(Slow());
  EXPECT_THAT(trips_.Why(), HasSubstr("usually 100us"));
}

TEST_F(RoundTripsTest, TheLastRoundTripAloneCanBeSlow) {
  Add(5, absl::Microseconds(100));
  Add(1, 200 * kMs);
  EXPECT_TRUE(trips_.last_slow());
  EXPECT_FALSE(Slow());
  EXPECT_TRUE(trips_.recent(now_));
  EXPECT_FALSE(trips_.recent(now_ + RoundTrips::kStale));
}

TEST_F(RoundTripsTest, AFaultLongerThanTheWindowBecomesTheUsual) {
  Add(5, absl::Microseconds(100));
  Add(3, 200 * kMs);
  EXPECT_TRUE(Slow());
  // Minutes of 200 ms round trips: the fast minutes leave the window.
  Add(static_cast<int>(absl::ToInt64Seconds(RoundTrips::kUsualWindow)) + 60, 200 * kMs);
  EXPECT_FALSE(Slow());
  EXPECT_THAT(trips_.Why(), HasSubstr("usually 200ms"));
}

}  // namespace
}  // namespace lcache::internal
