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

TEST(GatewayConfigTest, DamagedConfigIsAnError) {
  EXPECT_FALSE(ParseGatewayView("{not json").ok());
  EXPECT_FALSE(ParseGatewayView("[1,2]").ok());
}

}  // namespace
}  // namespace rwg::sip_edge
