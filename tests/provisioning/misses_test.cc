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

TEST(MissCounterTest, DistinctMissesCountOnceWithinTheWindow) {
  core::ManualClock clock;
  MissCounter m(3, absl::Seconds(60), clock);
  // A phone asking again and again for its own absent file is one miss.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(m.Miss("192.0.2.1", "0800A1B2C3D4"));
  EXPECT_FALSE(m.Miss("192.0.2.1", "0800A1B2C3D5"));
  EXPECT_TRUE(m.Miss("192.0.2.1", "0800A1B2C3D6"));  // the third different one
  // Once out of the window, the same one counts again.
  EXPECT_FALSE(m.Miss("192.0.2.2", "0800A1B2C3D4"));
  clock.Advance(absl::Seconds(61));
  EXPECT_FALSE(m.Miss("192.0.2.2", "0800A1B2C3D4"));
  EXPECT_FALSE(m.Miss("192.0.2.2", "0800A1B2C3D5"));
  EXPECT_TRUE(m.Miss("192.0.2.2", "0800A1B2C3D6"));
}

}  // namespace
}  // namespace rwg::provisioning
