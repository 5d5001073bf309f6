// SharedState's bans in memory, without Redis (the state is not started).
#include "services/provisioning/state.h"

#include <gtest/gtest.h>

#include "services/core/random.h"

namespace rwg::provisioning {
namespace {

class StateTest : public ::testing::Test {
 protected:
  StateTest() {
    core::RedisOptions ro;
    ro.address = "127.0.0.1:1";  // never reached
    redis_ = std::make_unique<core::RedisClient>(ro);
    box_ = *core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
  }
  core::ManualClock clock_;
  std::unique_ptr<core::RedisClient> redis_;
  std::unique_ptr<core::SecretBox> box_;
};

TEST_F(StateTest, BansInMemoryAreBoundedAndTheNewestIsInForce) {
  SharedState state(*redis_, *box_, clock_, "test", 3);
  for (int i = 1; i <= 5; ++i) {
    state.Ban("192.0.2." + std::to_string(i), "hash misses", absl::Minutes(10));
    EXPECT_TRUE(state.Banned("192.0.2." + std::to_string(i))) << i;
    EXPECT_LE(state.BannedCount(), 3u);
  }
  EXPECT_EQ(state.BannedCount(), 3u);
  // Banning a source already banned pushes nothing out.
  state.Ban("192.0.2.5", "hash misses", absl::Minutes(10));
  EXPECT_EQ(state.BannedCount(), 3u);
  EXPECT_TRUE(state.Banned("192.0.2.5"));
}

TEST_F(StateTest, TheDefaultBoundIsTheSipEdges) {
  SharedState state(*redis_, *box_, clock_, "test");
  for (int i = 0; i < 1000; ++i) state.Ban("10.0." + std::to_string(i), "x", absl::Minutes(1));
  EXPECT_EQ(state.BannedCount(), 1000u);
  EXPECT_EQ(SharedState::kMaxBans, 200000u);
}

}  // namespace
}  // namespace rwg::provisioning
