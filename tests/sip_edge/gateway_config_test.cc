#include "services/sip_edge/gateway_config.h"

#include <gtest/gtest.h>

namespace rwg::sip_edge {
namespace {

constexpr char kConfig[] = R"({
  "public_name": "phones.example.org",
  "icp": {"host": "127.0.0.2", "sip_port": 5070, "sip_transports": ["TCP", "TLS"]},
  "sip": {"udp": "DISABLED", "tcp": "DISABLED", "tls": "PUBLIC"},
  "licences": {"teleworker": 25},
  "ports": {"sip_tls": 5063, "sip_tcp": 5062}
})";

TEST(GatewayConfigTest, ReadsWhatTheEdgeNeeds) {
  auto v = ParseGatewayView(kConfig);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->public_name, "phones.example.org");
  EXPECT_EQ(v->icp_port, 5070u);
  EXPECT_EQ(v->icp_transport, "tls");  // TLS toward the iPBX when it offers it
  EXPECT_EQ(v->icp_addresses, std::vector<std::string>{"127.0.0.2"});
  EXPECT_EQ(v->licences, 25u);
}

TEST(GatewayConfigTest, ListenersFollowTheSipSettings) {
  auto v = ParseGatewayView(kConfig);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(ResolveListen("config", *v, ListenerKind::kTls), "0.0.0.0:5063");
  EXPECT_EQ(ResolveListen("config", *v, ListenerKind::kTcp), "");  // sip.tcp DISABLED
  EXPECT_EQ(ResolveListen("config", *v, ListenerKind::kUdp), "");  // sip.udp: not given, off
  EXPECT_EQ(ResolveListen("127.0.0.1:7000", *v, ListenerKind::kTcp), "127.0.0.1:7000");
  EXPECT_EQ(ResolveListen("", *v, ListenerKind::kTls), "");
  GatewayView udp = *v;
  udp.udp_exposure = "PUBLIC";
  udp.udp_port = 5090;
  EXPECT_EQ(ResolveListen("config", udp, ListenerKind::kUdp), "0.0.0.0:5090");
}

TEST(GatewayConfigTest, MediaSettingsAndTheirDefaults) {
  auto defaults = ParseGatewayView(kConfig);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->set_side_inbound, "SRTP_ONLY");
  EXPECT_EQ(defaults->set_side_outbound, "SRTP_ONLY");
  EXPECT_EQ(defaults->icp_side_inbound, "SRTP_OR_RTP");
  EXPECT_EQ(defaults->icp_side_outbound, "AVP_CRYPTO");
  EXPECT_EQ(defaults->rtp_set_side_address, "");
  auto v = ParseGatewayView(R"({
    "network": {"rtp_set_side_address": "198.51.100.7", "rtp_icp_side_address": "10.0.0.9"},
    "sip": {"set_side_inbound": "SRTP_OR_RTP", "set_side_outbound": "AVP_CRYPTO",
            "icp_side_inbound": "RTP_ONLY", "icp_side_outbound": "SRTP_ONLY",
            "srtp_suite": "AES_CM_128_HMAC_SHA1_32"}})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->rtp_set_side_address, "198.51.100.7");
  EXPECT_EQ(v->rtp_icp_side_address, "10.0.0.9");
  EXPECT_EQ(v->set_side_inbound, "SRTP_OR_RTP");
  EXPECT_EQ(v->set_side_outbound, "AVP_CRYPTO");
  EXPECT_EQ(v->icp_side_inbound, "RTP_ONLY");
  EXPECT_EQ(v->icp_side_outbound, "SRTP_ONLY");
  EXPECT_EQ(v->srtp_suite, "AES_CM_128_HMAC_SHA1_32");
}

TEST(GatewayConfigTest, DamagedConfigIsAnError) {
  EXPECT_FALSE(ParseGatewayView("{not json").ok());
  EXPECT_FALSE(ParseGatewayView("[1,2]").ok());
  // A field of the wrong type is an error, not a crash.
  EXPECT_FALSE(ParseGatewayView(R"({"sip": {"srtp_suite": 7}})").ok());
  EXPECT_FALSE(ParseGatewayView(R"({"icp": {"sip_port": "x"}})").ok());
}

}  // namespace
}  // namespace rwg::sip_edge
