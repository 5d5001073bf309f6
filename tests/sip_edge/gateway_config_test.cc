#include "services/sip_edge/gateway_config.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

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

// What control would never write, read back from Redis: refused with the field named, before
// anything of it is used (the watcher keeps the view it had).
TEST(GatewayConfigTest, ValuesOutOfRangeAreErrorsNamingTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"icp": {"sip_port": 70000}})", "icp.sip_port: 70000 is not in 1-65535"},
      {R"({"icp": {"sip_port": 0}})", "icp.sip_port: 0 is not in 1-65535"},
      // nlohmann alone reads these as 4294967295, 5060 and 5060: wrapped or truncated.
      {R"({"icp": {"sip_port": -1}})", "icp.sip_port: -1 is not in 1-65535"},
      {R"({"icp": {"sip_port": 4294972356}})", "icp.sip_port: 4294972356 is not in 1-65535"},
      {R"({"icp": {"sip_port": 5060.5}})", "icp.sip_port: not an integer"},
      {R"({"ports": {"sip_udp": 65536}})", "ports.sip_udp: 65536 is not in 1-65535"},
      {R"({"licences": {"teleworker": -3}})", "licences.teleworker: -3 is not in 0-4294967295"},
      {R"({"sip": {"tls": "OPEN"}})", "sip.tls: 'OPEN' is not one of DISABLED, PRIVATE, PUBLIC"},
      {R"({"sip": {"set_side_inbound": "AVP_CRYPTO"}})",
       "sip.set_side_inbound: 'AVP_CRYPTO' is not one of SRTP_ONLY, SRTP_OR_RTP, RTP_ONLY"},
      {R"({"sip": {"srtp_suite": "NULL_CIPHER"}})", "sip.srtp_suite: 'NULL_CIPHER' is not one of"},
      {R"({"icp": "pbx.example.com"})", "icp: not an object"},
      {R"({"icp": {"sip_transports": "TLS"}})", "icp.sip_transports: not an array"},
      {R"({"network": {"rtp_set_side_address": ["192.0.2.1"]}})",
       "network.rtp_set_side_address: not a string"},
  };
  for (const auto& [json, error] : cases) {
    absl::StatusOr<GatewayView> v = ParseGatewayView(json);
    ASSERT_FALSE(v.ok()) << json;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss) << json;
    EXPECT_NE(v.status().message().find(error), absl::string_view::npos)
        << json << " -> " << v.status();
  }
  const std::string long_name =
      std::string(R"({"public_name": ")") + std::string(254, 'a') + R"("})";
  EXPECT_NE(ParseGatewayView(long_name).status().message().find("public_name: longer than 253"),
            absl::string_view::npos);
  // The bounds themselves are values control writes.
  auto edge = ParseGatewayView(
      R"({"icp": {"sip_port": 65535}, "ports": {"sip_tls": 1}, "licences": {"teleworker": 0}})");
  ASSERT_TRUE(edge.ok()) << edge.status();
  EXPECT_EQ(edge->icp_port, 65535u);
  EXPECT_EQ(edge->tls_port, 1u);
}

TEST(GatewayConfigTest, TheIcpHostIsResolvedWithTheGivenResolver) {
  std::vector<std::string> asked;
  auto v =
      ParseGatewayView(R"({"icp": {"host": "pbx.example.com"}})", [&](const std::string& host) {
        asked.push_back(host);
        return std::vector<std::string>{"192.0.2.5", "2001:db8::5"};
      });
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(asked, std::vector<std::string>{"pbx.example.com"});
  EXPECT_EQ(v->icp_addresses, (std::vector<std::string>{"192.0.2.5", "2001:db8::5"}));
  // Nothing is resolved for a configuration that is refused.
  asked.clear();
  EXPECT_FALSE(ParseGatewayView(R"({"icp": {"host": "pbx.example.com", "sip_port": 0}})",
                                [&](const std::string& host) {
                                  asked.push_back(host);
                                  return std::vector<std::string>{};
                                })
                   .ok());
  EXPECT_TRUE(asked.empty());
}

}  // namespace
}  // namespace rwg::sip_edge
