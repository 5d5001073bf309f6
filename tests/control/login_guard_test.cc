#include "services/control/login_guard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace rwg::control {
namespace {

using ::testing::HasSubstr;

TEST(LoginSourceKeyTest, AddressesFromGrpcPeers) {
  EXPECT_EQ(LoginSourceKey("ipv4:203.0.113.9:51234"), "203.0.113.9");
  EXPECT_EQ(LoginSourceKey("ipv6:[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443"), "2001:db8:1:2::/64");
  EXPECT_EQ(LoginSourceKey("ipv6:%5B2001:db8:1:2::7%5D:443"), "2001:db8:1:2::/64");
  EXPECT_EQ(LoginSourceKey("ipv6:%5B::1%5D:50051"), "::/64");
  EXPECT_EQ(LoginSourceKey("ipv6:[::ffff:198.51.100.7]:1234"), "198.51.100.7");
  EXPECT_EQ(LoginSourceKey("ipv6:[fe80::1%25eth0]:1234"), "fe80::/64");
  EXPECT_EQ(LoginSourceKey("unix:/run/rwg/control.sock"), "unix");
  EXPECT_EQ(LoginSourceKey(std::string(100, 'x')), std::string(64, 'x'));
  // Two addresses of one /64 are one source; the next /64 is another.
  EXPECT_EQ(LoginSourceKey("ipv6:[2001:db8:1:2::1]:1"), LoginSourceKey("ipv6:[2001:db8:1:2::2]:1"));
  EXPECT_NE(LoginSourceKey("ipv6:[2001:db8:1:2::1]:1"), LoginSourceKey("ipv6:[2001:db8:1:3::1]:1"));
}

TEST(FailureTableTest, LocksOutAfterTheLimitWithinTheWindow) {
  FailureTable t(3, absl::Minutes(5), absl::Minutes(10), 100);
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_FALSE(t.Fail("a", now));
  EXPECT_FALSE(t.Fail("a", now + absl::Minutes(1)));
  EXPECT_FALSE(t.LockedUntil("a", now + absl::Minutes(1)).has_value());
  EXPECT_TRUE(t.Fail("a", now + absl::Minutes(2)));
  EXPECT_EQ(t.LockedUntil("a", now + absl::Minutes(2)), now + absl::Minutes(12));
  EXPECT_TRUE(t.LockedUntil("a", now + absl::Minutes(11)).has_value());
  EXPECT_FALSE(t.LockedUntil("a", now + absl::Minutes(12)).has_value());
  // Failures older than the window are forgotten: 3 failures 6 minutes apart lock nothing.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(t.Fail("b", now + absl::Minutes(6 * i)));
  t.Clear("b");
  EXPECT_EQ(t.size(), 1u);
}

TEST(FailureTableTest, BoundedLeastRecentlyFailedGoesFirst) {
  FailureTable t(2, absl::Minutes(5), absl::Minutes(5), 3);
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  t.Fail("a", now);
  t.Fail("b", now);
  t.Fail("c", now);
  t.Fail("a", now);  // "a" locked out, and now the most recent
  EXPECT_TRUE(t.LockedUntil("a", now).has_value());
  t.Fail("d", now);  // evicts "b", the least recently failed
  EXPECT_EQ(t.size(), 3u);
  EXPECT_TRUE(t.Fail("c", now + absl::Seconds(1))) << "c kept its first failure";
  EXPECT_FALSE(t.Fail("b", now + absl::Seconds(1))) << "b starts again from nothing";
  for (int i = 0; i < 100000; ++i) t.Fail("x" + std::to_string(i), now);
  EXPECT_EQ(t.size(), 3u);
}

class LoginGuardTest : public ::testing::Test {
 protected:
  LoginGuardTest() : guard_(clock_, Limits(), [this](LoginEvent e) { ++events_[e]; }) {}
  static LoginLimits Limits() {
    LoginLimits l;
    l.max_concurrent = 2;
    l.source_failures = 5;
    l.user_failures = 10;
    return l;
  }
  core::ManualClock clock_;
  std::map<LoginEvent, int> events_;
  LoginGuard guard_;
};

TEST_F(LoginGuardTest, SourceLockoutLeavesOtherSourcesAndUsersAlone) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(guard_.Admit("198.51.100.7", "admin").ok());
    guard_.Failed("198.51.100.7", "admin");
  }
  EXPECT_EQ(events_[LoginEvent::kSourceLockout], 1);
  absl::Status s = guard_.Admit("198.51.100.7", "admin");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("too many failed logins from this address; try again in 5m"));
  EXPECT_EQ(guard_.Admit("198.51.100.7", "ops").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(guard_.Admit("203.0.113.9", "admin").ok()) << "5 of the user's 10";
  EXPECT_EQ(events_[LoginEvent::kSourceLocked], 2);

  clock_.Advance(absl::Minutes(5));
  EXPECT_TRUE(guard_.Admit("198.51.100.7", "admin").ok()) << "after the back-off";
}

TEST_F(LoginGuardTest, UserLockoutFromManySourcesCountsUnknownNamesToo) {
  for (int i = 0; i < 10; ++i) {
    const std::string src = "192.0.2." + std::to_string(i);
    ASSERT_TRUE(guard_.Admit(src, "nobody").ok());
    guard_.Failed(src, "nobody");
  }
  EXPECT_EQ(events_[LoginEvent::kUserLockout], 1);
  EXPECT_EQ(events_[LoginEvent::kSourceLockout], 0);
  absl::Status s = guard_.Admit("192.0.2.200", "nobody");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("for this username"));
  EXPECT_TRUE(guard_.Admit("192.0.2.200", "admin").ok());
}

TEST_F(LoginGuardTest, SuccessForgetsFailures) {
  for (int i = 0; i < 4; ++i) guard_.Failed("198.51.100.7", "admin");
  guard_.Succeeded("198.51.100.7", "admin");
  for (int i = 0; i < 4; ++i) guard_.Failed("198.51.100.7", "admin");
  EXPECT_TRUE(guard_.Admit("198.51.100.7", "admin").ok());
  EXPECT_EQ(guard_.sources_tracked(), 1u);
  EXPECT_EQ(guard_.users_tracked(), 1u);
}

TEST_F(LoginGuardTest, AtMostMaxConcurrentChecks) {
  std::optional<LoginGuard::Slot> a, b, c;
  ASSERT_TRUE(guard_.Acquire(a).ok());
  ASSERT_TRUE(guard_.Acquire(b).ok());
  absl::Status busy = guard_.Acquire(c);
  EXPECT_EQ(busy.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(busy.message(), HasSubstr("busy: 2 password checks in progress"));
  EXPECT_FALSE(c.has_value());
  EXPECT_EQ(events_[LoginEvent::kBusy], 1);
  a.reset();
  EXPECT_TRUE(guard_.Acquire(c).ok());
}

}  // namespace
}  // namespace rwg::control
