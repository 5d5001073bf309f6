#include "services/control/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rwg::control {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Errors(const adminpb::GatewayConfig& c) { return JoinErrors(ValidateConfig(c)); }

TEST(ConfigValidationTest, DefaultsFollowTheRecommendedSettings) {
  adminpb::GatewayConfig c = DefaultConfig();
  EXPECT_THAT(ValidateConfig(c), IsEmpty());
  EXPECT_EQ(c.sip().udp(), adminpb::DISABLED);
  EXPECT_EQ(c.sip().set_side_inbound(), adminpb::SRTP_ONLY);
  EXPECT_EQ(c.sip().icp_side_inbound(), adminpb::SRTP_OR_RTP);
  EXPECT_EQ(c.sip().icp_side_outbound(), adminpb::AVP_CRYPTO);
  EXPECT_EQ(c.sip().srtp_suite(), adminpb::AES_CM_128_HMAC_SHA1_80);
  EXPECT_EQ(c.icp().xml_listen_port(), 4445u);
  EXPECT_EQ(c.icp().xml_destination_port(), 4443u);
  EXPECT_EQ(c.ports().media_min(), 20000u);
  EXPECT_EQ(c.ports().media_max(), 31000u);
}

TEST(ConfigValidationTest, NamesEachBadField) {
  adminpb::GatewayConfig c = DefaultConfig();
  c.mutable_icp()->set_host("ipbx host");
  c.mutable_network()->set_rtp_set_side_address("203.0.113.300");
  c.mutable_ports()->set_sip_tls(70000);
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("icp.host: 'ipbx host' is not a host name or IP address"));
  EXPECT_THAT(e, HasSubstr("network.rtp_set_side_address: '203.0.113.300' is not an IP address"));
  EXPECT_THAT(e, HasSubstr("ports.sip_tls: 70000 is not a port number"));
}

TEST(ConfigValidationTest, EnumsMustBeSetAndFitTheDirection) {
  adminpb::GatewayConfig c = DefaultConfig();
  c.mutable_sip()->set_set_side_inbound(adminpb::AVP_CRYPTO);    // outbound-only policy
  c.mutable_sip()->set_icp_side_outbound(adminpb::SRTP_OR_RTP);  // inbound-only policy
  c.mutable_sip()->set_srtp_suite(adminpb::SRTP_SUITE_UNSPECIFIED);
  c.mutable_sip()->set_tls(adminpb::SIP_EXPOSURE_UNSPECIFIED);
  c.mutable_icp()->set_type(adminpb::ICP_TYPE_UNSPECIFIED);
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("sip.set_side_inbound: AVP_CRYPTO is not allowed"));
  EXPECT_THAT(e, HasSubstr("sip.icp_side_outbound: SRTP_OR_RTP is not allowed"));
  EXPECT_THAT(e, HasSubstr("sip.srtp_suite: must be"));
  EXPECT_THAT(e, HasSubstr("sip.tls: must be DISABLED, PRIVATE or PUBLIC"));
  EXPECT_THAT(e, HasSubstr("icp.type: must be MIVOICE_5000"));
}

TEST(ConfigValidationTest, PortRangesAndClashes) {
  adminpb::GatewayConfig c = DefaultConfig();
  c.mutable_ports()->set_media_min(20001);
  c.mutable_ports()->set_sip_tcp(5061);
  std::string e = Errors(c);
  EXPECT_THAT(e, HasSubstr("ports.media_min: 20001 must be even"));
  EXPECT_THAT(e, HasSubstr("ports.sip_tls: 5061 is also ports.sip_tcp"));
  c = DefaultConfig();
  c.mutable_ports()->set_media_max(20002);
  EXPECT_THAT(Errors(c), HasSubstr("ports.media_max: 20002 leaves no room"));
  c = DefaultConfig();
  c.mutable_sip()->set_udp(adminpb::PUBLIC);
  c.mutable_ports()->set_sip_udp(25000);
  EXPECT_THAT(Errors(c), HasSubstr("ports.sip_udp: 25000 lies in the media port range"));
}

TEST(ConfigValidationTest, IcpTransports) {
  adminpb::GatewayConfig c = DefaultConfig();
  c.mutable_icp()->clear_sip_transports();
  EXPECT_THAT(Errors(c), HasSubstr("icp.sip_transports: must list at least one"));
  c.mutable_icp()->add_sip_transports(adminpb::TLS);
  c.mutable_icp()->add_sip_transports(adminpb::TLS);
  EXPECT_THAT(Errors(c), HasSubstr("icp.sip_transports: TLS is listed twice"));
}

TEST(ConfigValidationTest, RestartRequiredOnlyForListeners) {
  adminpb::GatewayConfig a = DefaultConfig();
  adminpb::GatewayConfig b = a;
  b.mutable_icp()->set_host("10.0.0.5");
  EXPECT_THAT(RestartRequired(a, b), IsEmpty());
  b.mutable_ports()->set_sip_tls(5062);
  EXPECT_THAT(RestartRequired(a, b), ::testing::ElementsAre("ports.sip_tls (sip-edge)"));
}

TEST(HostTest, AcceptsNamesAndAddresses) {
  for (const char* ok :
       {"ipbx", "ipbx.example.com", "a-b.c", "10.1.2.3", "2001:db8::1", "rwg.example.com."}) {
    EXPECT_TRUE(IsHost(ok)) << ok;
  }
  for (const char* bad :
       {"", "a b", "-ab.com", "ab-.com", "a..b", "10.1.2.300", "1.2.3", "host/x", "x_y.com"}) {
    EXPECT_FALSE(IsHost(bad)) << bad;
  }
}

TEST(MacTest, NormalisesCommonForms) {
  for (const char* in :
       {"00085daabbcc", "00:08:5D:AA:BB:CC", "00-08-5d-aa-bb-cc", "0008.5daa.bbcc"}) {
    auto m = NormalizeMac(in);
    ASSERT_TRUE(m.ok()) << in;
    EXPECT_EQ(*m, "00085DAABBCC");
  }
  EXPECT_FALSE(NormalizeMac("00085daabb").ok());
  EXPECT_FALSE(NormalizeMac("00085daabbcg").ok());
}

adminpb::Device GoodDevice() {
  adminpb::Device d;
  d.set_set_username("1001");
  d.set_set_password("s3cret-pw");
  d.set_icp_username("21001");
  d.set_icp_password("icp");
  return d;
}

TEST(DeviceValidationTest, GoodDeviceIsNormalised) {
  adminpb::Device d = GoodDevice();
  d.set_set_username("  1001 ");
  d.set_mac("00:08:5d:aa:bb:cc");
  EXPECT_THAT(NormalizeAndValidateDevice(d, true), IsEmpty());
  EXPECT_EQ(d.set_username(), "1001");
  EXPECT_EQ(d.mac(), "00085DAABBCC");
}

TEST(DeviceValidationTest, EachBadField) {
  adminpb::Device d = GoodDevice();
  d.set_set_username("10 01");
  d.set_set_password("short");
  d.set_icp_username("");
  d.set_icp_password("has space");
  d.set_mac("zz");
  d.set_description("line\nbreak");
  d.set_location(std::string(300, 'x'));
  std::string e = JoinErrors(NormalizeAndValidateDevice(d, true));
  EXPECT_THAT(e, HasSubstr("set_username: '10 01' may hold only"));
  EXPECT_THAT(e, HasSubstr("set_password: must be 8 to 64 characters long, got 5"));
  EXPECT_THAT(e, HasSubstr("icp_username: must not be empty"));
  EXPECT_THAT(e, HasSubstr("icp_password: may hold only printable ASCII"));
  EXPECT_THAT(e, HasSubstr("mac: 'zz' is not a MAC address"));
  EXPECT_THAT(e, HasSubstr("description: must not contain control characters"));
  EXPECT_THAT(e, HasSubstr("location: is 300 bytes long; at most 255"));
}

TEST(Utf8Test, OnlyWellFormedUtf8) {
  for (const char* good : {"", "plain", "caf\xC3\xA9", "\xE2\x82\xAC", "\xED\x9F\xBF",
                           "\xEE\x80\x80", "\xF0\x9F\x93\x9E", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_TRUE(IsValidUtf8(good)) << good;
  }
  for (const char* bad : {
           "\x80",              // continuation byte first
           "caf\xC3",           // truncated
           "\xC3\x28",          // bad continuation
           "\xC0\xAF",          // overlong '/'
           "\xC1\xBF",          // overlong
           "\xE0\x80\xAF",      // overlong
           "\xED\xA0\x80",      // surrogate U+D800
           "\xF0\x80\x80\xAF",  // overlong
           "\xF4\x90\x80\x80",  // above U+10FFFF
           "\xF5\x80\x80\x80",  // above U+10FFFF
           "\xFF",
       }) {
    EXPECT_FALSE(IsValidUtf8(bad)) << bad;
  }
}

TEST(DeviceValidationTest, InvalidUtf8IsRefusedNamingTheField) {
  for (const char* bad : {"\xC3\x28", "Desk \xC0\xAF", "\xED\xA0\x80"}) {
    adminpb::Device d = GoodDevice();
    d.set_description(bad);
    d.set_site(bad);
    d.set_location(bad);
    std::string e = JoinErrors(NormalizeAndValidateDevice(d, true));
    EXPECT_THAT(e, HasSubstr("description: is not valid UTF-8"));
    EXPECT_THAT(e, HasSubstr("site: is not valid UTF-8"));
    EXPECT_THAT(e, HasSubstr("location: is not valid UTF-8"));
  }
  adminpb::GatewayConfig c = DefaultConfig();
  c.mutable_icp()->set_name("ipbx \xE0\x80\xAF");
  EXPECT_THAT(JoinErrors(ValidateConfig(c)), HasSubstr("icp.name: is not valid UTF-8"));
}

TEST(DeviceValidationTest, SetPasswordNotCheckedWhenGenerated) {
  adminpb::Device d = GoodDevice();
  d.clear_set_password();
  EXPECT_THAT(NormalizeAndValidateDevice(d, false), IsEmpty());
}

}  // namespace
}  // namespace rwg::control
