#include "services/media_relay/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rwg::media_relay {
namespace {

using ::testing::StartsWith;

TEST(MediaRelayConfigTest, DefaultsAreValid) { EXPECT_TRUE(Config().Validate().ok()); }

TEST(MediaRelayConfigTest, ErrorsNameTheOption) {
  struct Case {
    std::function<void(Config&)> set;
    std::string message;
  };
  const Case cases[] = {
      {[](Config& c) { c.relay.bind_address = "nowhere"; },
       "bind-address: 'nowhere' is not an IP address"},
      {[](Config& c) { c.relay.port_min = 80; }, "port-min/port-max: "},
      {[](Config& c) { c.relay.workers = 0; }, "workers: between 1 and 256"},
      {[](Config& c) { c.worker_scheduling = "deadline"; }, "worker-scheduling: "},
      {[](Config& c) { c.worker_scheduling = "fifo"; }, "worker-priority: "},
      {[](Config& c) { c.io = "poll"; }, "io: "},
      {[](Config& c) { c.srtp_engine = "nss"; }, "srtp-engine: "},
      {[](Config& c) { c.pool_part = "3/2"; }, "pool-part: '3/2' is not i/n with 1 <= i <= n"},
      {[](Config& c) {
         c.relay.port_min = 40000;
         c.relay.port_max = 40005;
         c.pool_part = "1/2";
       },
       "pool-part: fewer than 2 port pairs per part"},
  };
  for (const Case& k : cases) {
    Config c;
    k.set(c);
    absl::Status s = c.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << k.message;
    EXPECT_THAT(std::string(s.message()), StartsWith(k.message));
  }
}

TEST(MediaRelayConfigTest, PoolPartNarrowsThePortRange) {
  Config c;
  c.relay.port_min = 43000;
  c.relay.port_max = 43011;
  c.pool_part = "2/2";
  c.idle_seconds = 5;
  absl::StatusOr<RelayOptions> r = c.Relay();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->port_min, 43006);
  EXPECT_EQ(r->port_max, 43011);
  EXPECT_EQ(r->idle_timeout, absl::Seconds(5));
}

}  // namespace
}  // namespace rwg::media_relay
