#include "services/core/connections_per_source.h"

#include <gtest/gtest.h>

#include "services/core/address.h"

namespace rwg::core {
namespace {

TEST(ConnectionsPerSourceTest, OneSourceIsCappedOthersAreNot) {
  ConnectionsPerSource c(3, 100);
  EXPECT_TRUE(c.Acquire("192.0.2.1"));
  EXPECT_TRUE(c.Acquire("192.0.2.1"));
  EXPECT_TRUE(c.Acquire("192.0.2.1"));
  EXPECT_FALSE(c.Acquire("192.0.2.1"));  // the 4th
  EXPECT_EQ(c.open("192.0.2.1"), 3);
  EXPECT_TRUE(c.Acquire("192.0.2.2"));  // another source is served
  c.Release("192.0.2.1");
  EXPECT_TRUE(c.Acquire("192.0.2.1"));  // room again
  EXPECT_FALSE(c.Acquire("192.0.2.1"));
}

TEST(ConnectionsPerSourceTest, EntriesGoWhenTheirCountReachesZero) {
  ConnectionsPerSource c(2, 100);
  for (int i = 0; i < 50; ++i) {
    const std::string ip = "10.0.0." + std::to_string(i);
    ASSERT_TRUE(c.Acquire(ip));
    ASSERT_TRUE(c.Acquire(ip));
  }
  EXPECT_EQ(c.sources(), 50u);
  for (int i = 0; i < 50; ++i) {
    const std::string ip = "10.0.0." + std::to_string(i);
    c.Release(ip);
    c.Release(ip);
  }
  EXPECT_EQ(c.sources(), 0u);
  c.Release("10.9.9.9");  // never taken: nothing happens
  EXPECT_EQ(c.sources(), 0u);
  EXPECT_EQ(c.open("10.9.9.9"), 0);
}

TEST(ConnectionsPerSourceTest, TheTableIsBounded) {
  ConnectionsPerSource c(5, 10);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(c.Acquire("10.0.0." + std::to_string(i)));
  EXPECT_FALSE(c.Acquire("10.0.1.1"));  // an 11th source
  EXPECT_TRUE(c.Acquire("10.0.0.1"));   // a known one still may
  EXPECT_EQ(c.sources(), 10u);
}

TEST(ConnectionsPerSourceTest, AnIpv6Slash64IsOneSource) {
  ConnectionsPerSource c(2, 100);
  EXPECT_TRUE(c.Acquire(core::SourceKey("2001:db8:1:2::1")));
  EXPECT_TRUE(c.Acquire(core::SourceKey("2001:db8:1:2::2")));
  EXPECT_FALSE(c.Acquire(core::SourceKey("2001:db8:1:2:ffff:1:2:3")));
  EXPECT_TRUE(c.Acquire(core::SourceKey("2001:db8:1:3::1")));
}

}  // namespace
}  // namespace rwg::core
