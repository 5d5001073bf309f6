#include "services/sip_edge/protection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace rwg::sip_edge {
namespace {

using ::testing::MatchesRegex;

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

TEST(ProtectionTest, UsernamesAreBoundedInBansAndStillTellNamesApart) {
  EXPECT_EQ(core::BanUserKey("1001"), "1001");
  EXPECT_EQ(core::BanUserKey("alice.martin@example.com"), "alice.martin@example.com");
  // Not printable ASCII, or longer than 32: a readable prefix and a hash of the whole name.
  EXPECT_THAT(core::BanUserKey("\xff"), MatchesRegex("\\\\xff#[0-9a-f]{16}"));
  EXPECT_THAT(core::BanUserKey("a b"), MatchesRegex("a\\\\x20b#[0-9a-f]{16}"));
  EXPECT_THAT(core::BanUserKey("x#y"), MatchesRegex("x\\\\x23y#[0-9a-f]{16}"));
  const std::string huge(60000, 'u');
  const std::string key = core::BanUserKey(huge);
  EXPECT_THAT(key, MatchesRegex(std::string(32, 'u') + "#[0-9a-f]{16}"));
  EXPECT_LE(core::BanUserKey(std::string(60000, '\xff')).size(), 4 * 32 + 17u);
  // Names with the same first 32 bytes are different users.
  EXPECT_NE(core::BanUserKey(huge), core::BanUserKey(huge + "v"));
  EXPECT_NE(core::BanUserKey(std::string(33, 'a')), core::BanUserKey(std::string(34, 'a')));
  // A plain name can never look like a hashed one: plain names hold no '#'.
  EXPECT_NE(core::BanUserKey(key), key);

  core::ManualClock clock;
  Protection p(Small(), clock);
  EXPECT_FALSE(p.CountAuthFailure("203.0.113.5", huge));
  std::optional<core::Ban> ban = p.CountAuthFailure("203.0.113.5", huge);
  ASSERT_TRUE(ban.has_value());
  EXPECT_EQ(ban->id, "auth:203.0.113.5|" + key);
  EXPECT_EQ(ban->user, key);
  EXPECT_LT(ban->id.size(), 100u);
  EXPECT_TRUE(p.AuthBanned("203.0.113.5", huge));
  EXPECT_FALSE(p.AuthBanned("203.0.113.5", huge + "v"));
  EXPECT_FALSE(p.AuthBanned("203.0.113.5", std::string(32, 'u')));
  // The same from the ban read back from Redis.
  p.SetBans({*ban});
  EXPECT_TRUE(p.AuthBanned("203.0.113.5", huge));
  EXPECT_FALSE(p.AuthBanned("203.0.113.5", huge + "v"));
  std::optional<core::Ban> ff;
  for (int i = 0; i < Small().auth_failures && !ff; ++i) ff = p.CountAuthFailure("::1", "\xff");
  ASSERT_TRUE(ff.has_value());
  EXPECT_THAT(ff->id, MatchesRegex("auth:::/64[|]\\\\xff#[0-9a-f]{16}"));
  EXPECT_TRUE(p.AuthBanned("::1", "\xff"));
}

TEST(ProtectionTest, BansAreBoundedTheFirstToEndGoFirst) {
  core::ManualClock clock;
  Protection p(Small(), clock);
  const auto ban = [&](const std::string& ip, absl::Duration left) {
    return core::Ban{core::SourceBanId(ip), "source",          ip, "", "x", "",
                     clock.Now(),           clock.Now() + left};
  };
  p.AddBan(ban("192.0.2.1", absl::Seconds(1)));  // ends first
  for (size_t i = 0; i < Protection::kMaxBans - 1; ++i) {
    p.AddBan(
        ban(absl::StrCat("10.", i >> 16, ".", (i >> 8) & 255, ".", i & 255), absl::Seconds(100)));
  }
  EXPECT_EQ(p.bans(), Protection::kMaxBans);
  EXPECT_TRUE(p.SourceBanned("192.0.2.1"));
  p.AddBan(ban("192.0.2.2", absl::Seconds(100)));
  EXPECT_EQ(p.bans(), Protection::kMaxBans);
  EXPECT_FALSE(p.SourceBanned("192.0.2.1"));
  EXPECT_TRUE(p.SourceBanned("192.0.2.2"));
  EXPECT_TRUE(p.SourceBanned("10.0.0.7"));
  // Bans that ended are dropped as new ones come.
  clock.Advance(absl::Seconds(100));
  p.AddBan(ban("192.0.2.3", absl::Seconds(100)));
  EXPECT_EQ(p.bans(), 1u);
  // A ban renewed keeps one entry, with its new end.
  p.AddBan(ban("192.0.2.3", absl::Seconds(200)));
  EXPECT_EQ(p.bans(), 1u);
  clock.Advance(absl::Seconds(150));
  EXPECT_TRUE(p.SourceBanned("192.0.2.3"));
}

}  // namespace
}  // namespace rwg::sip_edge
