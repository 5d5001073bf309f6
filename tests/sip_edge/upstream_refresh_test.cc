#include <gtest/gtest.h>

#include "services/sip_edge/upstream_registrar.h"

namespace rwg::sip_edge {
namespace {

TEST(UpstreamRefreshDelay, LongGrantsAreRefreshedAtFourFifths) {
  EXPECT_EQ(UpstreamRefreshDelay(3600), absl::Seconds(2880));
  EXPECT_EQ(UpstreamRefreshDelay(60), absl::Seconds(48));
}

TEST(UpstreamRefreshDelay, ShortGrantsKeepThreeSecondsForTheTickAndTheRoundTrip) {
  // 20% of 10 s is 2 s: less than a housekeeping tick plus whole-second rounding allow.
  EXPECT_EQ(UpstreamRefreshDelay(10), absl::Seconds(7));
  EXPECT_EQ(UpstreamRefreshDelay(6), absl::Seconds(3));
}

TEST(UpstreamRefreshDelay, VeryShortGrantsAreRefreshedHalfway) {
  EXPECT_EQ(UpstreamRefreshDelay(4), absl::Seconds(2));
  EXPECT_EQ(UpstreamRefreshDelay(1), absl::Milliseconds(500));
}

}  // namespace
}  // namespace rwg::sip_edge
