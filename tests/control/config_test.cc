#include "services/control/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rwg::control {
namespace {

using ::testing::StartsWith;

TEST(ControlConfigTest, DefaultsAreValid) { EXPECT_TRUE(Config().Validate().ok()); }

TEST(ControlConfigTest, OutOfRangeValueNamesTheOption) {
  Config c;
  c.token_ttl_seconds = 10;
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.Validate().message(), "token-ttl-seconds: 10 is not between 60 and 86400");
  c = Config();
  c.login_max_concurrent = 65;
  EXPECT_THAT(std::string(c.Validate().message()), StartsWith("login-max-concurrent: "));
  c = Config();
  c.login_table_size = 0;
  EXPECT_THAT(std::string(c.Validate().message()), StartsWith("login-table-size: "));
}

TEST(ControlConfigTest, LoginLimitsFromTheOptions) {
  Config c;
  c.login_window_seconds = 60;
  c.login_lockout_seconds = 120;
  c.login_table_size = 7;
  c.login_user_failures = 3;
  LoginLimits l = c.login();
  EXPECT_EQ(l.window, absl::Seconds(60));
  EXPECT_EQ(l.lockout, absl::Seconds(120));
  EXPECT_EQ(l.max_entries, 7u);
  EXPECT_EQ(l.user_failures, 3);
  EXPECT_EQ(l.max_concurrent, LoginLimits().max_concurrent);
}

}  // namespace
}  // namespace rwg::control
