#include "services/provisioning/misses.h"

#include <gtest/gtest.h>

namespace rwg::provisioning {
namespace {

TEST(MissCounterTest, BansOnlyTheSourceOverTheThreshold) {
  core::ManualClock clock;
  MissCounter m(3, absl::Seconds(60), clock);
  EXPECT_FALSE(m.Miss("192.0.2.1"));
  EXPECT_FALSE(m.Miss("192.0.2.1"));
  EXPECT_FALSE(m.Miss("192.0.2.2"));  // someone else's misses count for them only
  EXPECT_TRUE(m.Miss("192.0.2.1"));
  EXPECT_FALSE(m.Miss("192.0.2.2"));
  // The count starts again after a ban.
  EXPECT_FALSE(m.Miss("192.0.2.1"));
}

TEST(MissCounterTest, OldMissesLeaveTheWindow) {
  core::ManualClock clock;
  MissCounter m(3, absl::Seconds(60), clock);
  EXPECT_FALSE(m.Miss("a"));
  EXPECT_FALSE(m.Miss("a"));
  clock.Advance(absl::Seconds(61));
  EXPECT_FALSE(m.Miss("a"));
  EXPECT_FALSE(m.Miss("a"));
  EXPECT_TRUE(m.Miss("a"));
}

TEST(MissCounterTest, MemoryIsBounded) {
  core::ManualClock clock;
  MissCounter m(5, absl::Seconds(60), clock, 100);
  for (int i = 0; i < 1000; ++i) m.Miss("10.0.0." + std::to_string(i));
  EXPECT_LE(m.tracked(), 100u);
  clock.Advance(absl::Seconds(61));
  m.Miss("fresh");
  m.Miss("x");
  for (int i = 0; i < 200; ++i) m.Miss("10.1.0." + std::to_string(i));
  EXPECT_LE(m.tracked(), 100u);
}

}  // namespace
}  // namespace rwg::provisioning
