#include "services/core/address.h"

#include <gtest/gtest.h>

namespace rwg::core {
namespace {

TEST(SourceKeyTest, Ipv4AddressesStayWhole) {
  EXPECT_EQ(SourceKey("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(SourceKey("127.0.0.1"), "127.0.0.1");
}

TEST(SourceKeyTest, Ipv6AddressesAreGroupedByTheirSlash64) {
  EXPECT_EQ(SourceKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(SourceKey("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(SourceKey("2001:db8:1:2::1"), SourceKey("2001:db8:1:2:ffff::9"));
  EXPECT_NE(SourceKey("2001:db8:1:2::1"), SourceKey("2001:db8:1:3::1"));
  EXPECT_EQ(SourceKey("::1"), "::/64");
  EXPECT_EQ(SourceKey("fe80::1"), "fe80::/64");
}

TEST(SourceKeyTest, MappedIpv4IsItsIpv4Address) {
  EXPECT_EQ(SourceKey("::ffff:192.0.2.7"), "192.0.2.7");
}

TEST(SourceKeyTest, NotAnAddressIsUnchanged) {
  EXPECT_EQ(SourceKey(""), "");
  EXPECT_EQ(SourceKey("unix"), "unix");
}

}  // namespace
}  // namespace rwg::core
