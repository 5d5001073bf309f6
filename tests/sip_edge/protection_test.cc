#include "services/sip_edge/protection.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace rwg::sip_edge {
namespace {

ProtectionOptions Small() {
  ProtectionOptions o;
  o.requests = 3;
  o.window = absl::Seconds(2);
  o.ban = absl::Seconds(10);
  o.auth_failures = 2;
  o.auth_window = absl::Seconds(60);
  o.auth_ban = absl::Seconds(30);
  return o;
}

TEST(ProtectionTest, FloodBansTheSourceForAWhile) {
  core::ManualClock clock;
  Protection p(Small(), clock);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(p.CountRequest("198.51.100.7")) << i;
  auto ban = p.CountRequest("198.51.100.7");
  ASSERT_TRUE(ban);
  EXPECT_EQ(ban->id, "src:198.51.100.7");
  EXPECT_EQ(ban->until, clock.Now() + absl::Seconds(10));
  EXPECT_TRUE(p.SourceBanned("198.51.100.7"));
  EXPECT_FALSE(p.SourceBanned("198.51.100.8"));
  clock.Advance(absl::Seconds(10));
  EXPECT_FALSE(p.SourceBanned("198.51.100.7"));
}

TEST(ProtectionTest, SlowSourcesAreNeverBanned) {
  core::ManualClock clock;
  Protection p(Small(), clock);
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(p.CountRequest("198.51.100.7"));
    clock.Advance(absl::Milliseconds(700));
  }
}

TEST(ProtectionTest, AuthFailuresBanOnlyThatUserFromThatSource) {
  core::ManualClock clock;
  Protection p(Small(), clock);
  EXPECT_FALSE(p.CountAuthFailure("203.0.113.5", "1001"));
  auto ban = p.CountAuthFailure("203.0.113.5", "1001");
  ASSERT_TRUE(ban);
  EXPECT_EQ(ban->id, "auth:203.0.113.5|1001");
  EXPECT_TRUE(p.AuthBanned("203.0.113.5", "1001"));
  EXPECT_FALSE(p.AuthBanned("203.0.113.5", "1002"));  // colleagues behind the same NAT
  EXPECT_FALSE(p.AuthBanned("203.0.113.6", "1001"));
  EXPECT_FALSE(p.SourceBanned("203.0.113.5"));
}

TEST(ProtectionTest, Ipv6SourcesCountByTheirSlash64) {
  EXPECT_EQ(SourceKey("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(SourceKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(SourceKey("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(SourceKey("::1"), "::/64");
  core::ManualClock clock;
  Protection p(Small(), clock);
  // A host rotating through its /64 is one source.
  std::optional<core::Ban> ban;
  for (int i = 1; i <= Small().requests + 1 && !ban; ++i) {
    ban = p.CountRequest("2001:db8:1:2::" + std::to_string(i));
  }
  ASSERT_TRUE(ban.has_value());
  EXPECT_EQ(ban->id, "src:2001:db8:1:2::/64");
  EXPECT_TRUE(p.SourceBanned("2001:db8:1:2:ffff::9"));
  EXPECT_FALSE(p.SourceBanned("2001:db8:1:3::1")) << "the next /64 is someone else";
  EXPECT_EQ(p.BannedSources(), std::vector<std::string>{"2001:db8:1:2::/64"});
  // Password guessing from rotating addresses is one guesser too.
  std::optional<core::Ban> auth;
  for (int i = 1; i <= Small().auth_failures && !auth; ++i) {
    auth = p.CountAuthFailure("2001:db8:9::" + std::to_string(i), "1001");
  }
  ASSERT_TRUE(auth.has_value());
  EXPECT_TRUE(p.AuthBanned("2001:db8:9::77", "1001"));
}

TEST(ProtectionTest, ManySourcesCostMemoryWithinALimitAndNoMoreTime) {
  core::ManualClock clock;
  Protection p(Small(), clock);
  // A spray of sources within one window: counting still works and memory stays bounded.
  for (size_t i = 0; i < Protection::kMaxCounted + 50000; ++i) {
    // Distinct /64s: 2001:db8:<high>:<low>::1.
    ASSERT_FALSE(p.CountRequest(absl::StrCat("2001:db8:", absl::Hex(i >> 16), ":",
                                             absl::Hex(i & 0xffff), "::1"))
                     .has_value());
  }
  EXPECT_LE(p.counted(), Protection::kMaxCounted);
  // A flooding source among them is still caught.
  std::optional<core::Ban> ban;
  for (int i = 0; i <= Small().requests && !ban; ++i) ban = p.CountRequest("192.0.2.7");
  ASSERT_TRUE(ban.has_value());
  EXPECT_EQ(ban->id, "src:192.0.2.7");
  // Once their window is over, the sprayed sources are forgotten.
  clock.Advance(Small().window);
  EXPECT_FALSE(p.CountRequest("192.0.2.8").has_value());
  EXPECT_EQ(p.counted(), 1u);
}

TEST(ProtectionTest, LiftedBansDisappearOnRefresh) {
  core::ManualClock clock;
  Protection p(Small(), clock);
  for (int i = 0; i < 4; ++i) p.CountRequest("198.51.100.7");
  ASSERT_TRUE(p.SourceBanned("198.51.100.7"));
  p.SetBans({});
  EXPECT_FALSE(p.SourceBanned("198.51.100.7"));
  core::Ban other{"src:192.0.2.1",
                  "source",
                  "192.0.2.1",
                  "",
                  "x",
                  "b",
                  clock.Now(),
                  clock.Now() + absl::Seconds(5)};
  p.SetBans({other});
  EXPECT_TRUE(p.SourceBanned("192.0.2.1"));
}

}  // namespace
}  // namespace rwg::sip_edge
