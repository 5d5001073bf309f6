#include "services/core/cidr.h"

#include <gtest/gtest.h>

namespace rwg::core {
namespace {

TEST(CidrTest, ALoneAddressMatchesOnlyItself) {
  absl::StatusOr<Cidr> c = ParseCidr("192.0.2.10");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ToString(), "192.0.2.10/32");
  EXPECT_TRUE(CidrContains(*c, "192.0.2.10"));
  EXPECT_FALSE(CidrContains(*c, "192.0.2.11"));
  EXPECT_TRUE(CidrContains(*c, "::ffff:192.0.2.10"));  // as a dual-stack socket reports it
  EXPECT_FALSE(CidrContains(*c, "2001:db8::1"));
  EXPECT_FALSE(CidrContains(*c, "not an address"));
}

TEST(CidrTest, RangesMatchTheirPrefix) {
  absl::StatusOr<Cidr> v4 = ParseCidr("10.1.0.0/17");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_TRUE(CidrContains(*v4, "10.1.127.255"));
  EXPECT_FALSE(CidrContains(*v4, "10.1.128.0"));
  absl::StatusOr<Cidr> v6 = ParseCidr("2001:db8:1::/48");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_TRUE(CidrContains(*v6, "2001:db8:1:ffff::7"));
  EXPECT_FALSE(CidrContains(*v6, "2001:db8:2::7"));
  EXPECT_FALSE(CidrContains(*v6, "10.1.0.1"));
  absl::StatusOr<Cidr> all = ParseCidr("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(CidrContains(*all, "203.0.113.9"));
}

TEST(CidrTest, RefusalsSayWhatIsWrong) {
  EXPECT_EQ(ParseCidr("ipbx.example.com").status().message(),
            "'ipbx.example.com' is not an IPv4 or IPv6 address");
  EXPECT_EQ(ParseCidr("192.0.2.0/33").status().message(),
            "'/33' is not a prefix length between 0 and 32");
  EXPECT_FALSE(ParseCidr("192.0.2.0/").ok());
  EXPECT_FALSE(ParseCidr("192.0.2.0/+8").ok());
  EXPECT_FALSE(ParseCidr("2001:db8::/129").ok());
  EXPECT_EQ(ParseCidr("192.0.2.1/24").status().message(),
            "'192.0.2.1/24' has address bits set beyond its /24 (the range starts at "
            "192.0.2.0/24)");
  EXPECT_FALSE(ParseCidr("").ok());
  EXPECT_FALSE(ParseCidr(std::string("192.0.2.1\0x", 11)).ok());
}

}  // namespace
}  // namespace rwg::core
