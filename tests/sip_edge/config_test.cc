#include "services/sip_edge/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

namespace rwg::sip_edge {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

// The default icp-listen binds every address: the address the iPBX reaches is needed.
Config Valid() {
  Config c;
  c.edge.icp_advertise = "192.0.2.1:5070";
  return c;
}

TEST(SipEdgeConfigTest, DefaultsAreValidAndListenersComeFromTheConfiguration) {
  Config c = Valid();
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  EXPECT_TRUE(c.ListenersFromConfig());
  c.edge.tls_listen = c.edge.tcp_listen = c.edge.udp_listen = "";
  EXPECT_FALSE(c.ListenersFromConfig());
}

TEST(SipEdgeConfigTest, ErrorsNameTheOption) {
  struct Case {
    std::function<void(Config&)> set;
    std::string message;
  };
  const Case cases[] = {
      {[](Config& c) { c.edge.tcp_keepalive_seconds = -1; }, "tcp-keepalive-seconds: "},
      {[](Config& c) { c.edge.max_calls_per_device = 0; }, "max-calls-per-device: "},
      {[](Config& c) { c.edge.max_subscriptions_per_device = 0; },
       "max-subscriptions-per-device: "},
      {[](Config& c) { c.edge.max_connections_per_source = -1; }, "max-connections-per-source: "},
      {[](Config& c) { c.edge.set_srtp_suite = "AES_256"; }, "srtp-suite: "},
      {[](Config& c) {
         c.edge.relay_ca_file = "ca.pem";
         c.edge.relay_plaintext = true;
       },
       "relay-ca-file and relay-plaintext exclude each other"},
      {[](Config& c) { c.algorithms = "md5,sha1"; },
       "digest-algorithms: 'sha1' is not md5 or sha-256"},
      {[](Config& c) { c.algorithms = " , "; }, "digest-algorithms: name at least one"},
      {[](Config& c) { c.edge.icp_advertise = ""; }, "icp-advertise: required"},
  };
  for (const Case& k : cases) {
    Config c = Valid();
    k.set(c);
    absl::Status s = c.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << k.message;
    EXPECT_THAT(std::string(s.message()), StartsWith(k.message));
  }
}

TEST(SipEdgeConfigTest, EdgeOptionsFromTheOptions) {
  Config c;
  c.algorithms = "sha-256,md5";
  c.md5_only = " Baresip ,Linphone";
  c.edge.icp_listen = "127.0.0.1:5070";
  c.auth_ban_seconds = 42;
  absl::StatusOr<EdgeOptions> e = c.Edge();
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_THAT(e->algorithms, ElementsAre(DigestAlgorithm::kSha256, DigestAlgorithm::kMd5));
  EXPECT_THAT(e->md5_only_user_agents, ElementsAre("baresip", "linphone"));
  EXPECT_EQ(e->protection.auth_ban, absl::Seconds(42));
}

}  // namespace
}  // namespace rwg::sip_edge
