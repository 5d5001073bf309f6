// rwgctl's output: tables and lines for people, JSON for scripts.
#include "tools/rwgctl/printer.h"

#include <google/protobuf/util/json_util.h>

#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rwg/admin/v1/admin.pb.h"
#include "rwg/relay/v1/relay.pb.h"
#include "tools/rwgctl/ban.h"
#include "tools/rwgctl/call.h"
#include "tools/rwgctl/device.h"
#include "tools/rwgctl/emergency.h"
#include "tools/rwgctl/hash.h"
#include "tools/rwgctl/registration.h"
#include "tools/rwgctl/relay.h"

namespace rwg::rwgctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace adminpb = ::rwg::admin::v1;
namespace relaypb = ::rwg::relay::v1;

adminpb::Device Alice() {
  adminpb::Device d;
  d.set_set_username("2001");
  d.set_set_password("Desk-2001-pw");
  d.set_icp_username("31001");
  d.set_icp_password("icp-secret");
  d.set_description("Café ☎ 東京");
  d.set_site("Zürich");
  d.set_srtp_optional(true);
  d.set_create_time_unix(1700000000);
  return d;
}

TEST(RwgctlTable, ColumnsAreTwoSpacesApartAndTrailingBlanksDropped) {
  EXPECT_EQ(RenderTable({{"A", "BB"}, {{"xxx", "y"}, {"z", ""}}}), "A    BB\nxxx  y\nz\n");
  EXPECT_EQ(RenderTable({{"ID", "KIND"}, {}}), "ID  KIND\n");
}

TEST(RwgctlTable, OverLongCellWidensItsColumnAndIsNotCut) {
  std::string long_text(300, 'x');
  std::string text = RenderTable({{"NAME", "NOTE", "N"}, {{"a", long_text, "1"}}});
  EXPECT_EQ(text, "NAME  NOTE" + std::string(298, ' ') + "N\na     " + long_text + "  1\n");
}

TEST(RwgctlTable, NonAsciiLinesUpByCharacters) {
  // "Zürich" is 7 bytes but 6 characters: the next column starts at the same place on every
  // row of a terminal.
  EXPECT_EQ(RenderTable({{"SITE", "N"}, {{"Zürich", "1"}, {"Paris", "2"}}}),
            "SITE    N\nZürich  1\nParis   2\n");
  EXPECT_EQ(DisplayWidth("Zürich"), 6u);
  EXPECT_EQ(DisplayWidth("\xE2\x82\xAC"), 1u);  // one three-byte character
  EXPECT_EQ(DisplayWidth("a\xFF"
                         "b"),
            3u);  // not UTF-8: each byte counts
}

TEST(RwgctlJson, FieldNamesAsInTheProtoAndEveryField) {
  adminpb::Device d;
  d.set_set_username("2001");
  std::string json = ToJson(d);
  EXPECT_THAT(json, HasSubstr("\"set_username\": \"2001\""));
  EXPECT_THAT(json, HasSubstr("\"mac\": \"\""));
  EXPECT_THAT(json, HasSubstr("\"srtp_optional\": false"));
  EXPECT_THAT(json, HasSubstr("\"create_time_unix\": \"0\""));
}

TEST(RwgctlJson, NonAsciiSurvivesTheRoundTrip) {
  adminpb::Device d = Alice();
  adminpb::Device back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(ToJson(d), &back).ok());
  EXPECT_EQ(back.description(), "Café ☎ 東京");
  EXPECT_EQ(back.site(), "Zürich");
}

TEST(RwgctlJson, ListOfMessages) {
  adminpb::ListBansResponse resp;
  adminpb::BanInfo* b = resp.add_bans();
  b->set_id("src:198.51.100.7");
  b->set_reason("digest failures");
  std::string json = ToJson(resp);
  EXPECT_THAT(json, HasSubstr("\"bans\": ["));
  EXPECT_THAT(json, HasSubstr("\"id\": \"src:198.51.100.7\""));
}

TEST(RwgctlFlatten, NestedMessagesAsDottedNames) {
  adminpb::GatewayConfig c;
  c.mutable_icp()->set_host("10.0.0.5");
  c.mutable_icp()->add_sip_transports(adminpb::TLS);
  c.mutable_icp()->add_sip_transports(adminpb::TCP);
  c.mutable_sip()->set_srtp_suite(adminpb::AES_CM_128_HMAC_SHA1_32);
  c.mutable_ports()->set_media_min(20000);
  FieldRows rows = Flatten(c);
  auto value = [&](const std::string& name) {
    for (const auto& [n, v] : rows)
      if (n == name) return v;
    return std::string("(absent)");
  };
  EXPECT_EQ(value("icp.host"), "10.0.0.5");
  EXPECT_EQ(value("icp.sip_transports"), "TLS,TCP");
  EXPECT_EQ(value("sip.srtp_suite"), "AES_CM_128_HMAC_SHA1_32");
  EXPECT_EQ(value("ports.media_min"), "20000");
  EXPECT_EQ(value("sso_mode"), "false");
  EXPECT_EQ(value("icp"), "(absent)");
}

TEST(RwgctlTime, UtcOrDash) {
  EXPECT_EQ(FormatTime(0), "-");
  EXPECT_EQ(FormatTime(1700000000), "2023-11-14 22:13:20 UTC");
}

TEST(RwgctlPrinter, ShowPrintsJsonOrTheText) {
  std::ostringstream out, err;
  Printer json(Format::kJson, out, err);
  adminpb::Device d;
  d.set_set_username("2001");
  json.Show(d, [&] { out << "text\n"; });
  json.Line("device 2001 deleted");
  EXPECT_EQ(out.str(), ToJson(d));

  std::ostringstream out2;
  Printer table(Format::kTable, out2, err);
  table.Show(d, [&] { out2 << "text\n"; });
  table.Line("device 2001 deleted");
  EXPECT_EQ(out2.str(), "text\ndevice 2001 deleted\n");
  EXPECT_EQ(err.str(), "");
}

TEST(RwgctlDevices, TableHidesPasswordsUnlessAsked) {
  std::vector<adminpb::Device> devices = {Alice()};
  devices.emplace_back().set_set_username("2002");
  Table t = DevicesTable(devices, false);
  EXPECT_THAT(t.header, ::testing::ElementsAre("SET USERNAME", "ICP USERNAME", "MAC", "SITE",
                                               "LOCATION", "SRTP", "DESCRIPTION"));
  EXPECT_THAT(t.rows[0], ::testing::ElementsAre("2001", "31001", "-", "Zürich", "-", "optional",
                                                "Café ☎ 東京"));
  EXPECT_THAT(t.rows[1], ::testing::ElementsAre("2002", "", "-", "-", "-", "required", ""));
  EXPECT_THAT(RenderTable(t), Not(HasSubstr("Desk-2001-pw")));

  Table s = DevicesTable(devices, true);
  EXPECT_EQ(s.header[1], "SET PASSWORD");
  EXPECT_EQ(s.header[3], "ICP PASSWORD");
  EXPECT_EQ(s.rows[0][1], "Desk-2001-pw");
  EXPECT_EQ(s.rows[0][3], "icp-secret");
}

TEST(RwgctlDevices, FieldsShowTimesAndHidePasswords) {
  FieldRows rows = DeviceFields(Alice(), false);
  EXPECT_THAT(rows, ::testing::Contains(std::pair<std::string, std::string>(
                        "create_time", "2023-11-14 22:13:20 UTC")));
  EXPECT_THAT(rows, ::testing::Contains(std::pair<std::string, std::string>("update_time", "-")));
  for (const auto& [name, value] : rows) EXPECT_THAT(name, Not(HasSubstr("password")));
  EXPECT_THAT(DeviceFields(Alice(), true), ::testing::Contains(std::pair<std::string, std::string>(
                                               "set_password", "Desk-2001-pw")));
}

TEST(RwgctlRegistrations, Table) {
  adminpb::ListRegistrationsResponse resp;
  adminpb::Registration* r = resp.add_registrations();
  r->set_set_username("2001");
  r->set_source("203.0.113.9:5061");
  r->set_reachable(true);
  r->set_since_unix(1700000000);
  Table t = RegistrationsTable(resp);
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_THAT(t.rows[0], ::testing::ElementsAre("2001", "", "203.0.113.9:5061", "", "", "yes",
                                                "2023-11-14 22:13:20 UTC", "-"));
  EXPECT_EQ(RegistrationFields(*r)[6], (std::pair<std::string, std::string>("reachable", "yes")));
}

TEST(RwgctlCalls, UnansweredAndWithoutRelayShowDashes) {
  adminpb::Call c;
  c.set_id("c1");
  c.set_started_unix(1700000000);
  FieldRows rows = CallFields(c);
  EXPECT_THAT(rows, ::testing::Contains(std::pair<std::string, std::string>("answered", "-")));
  EXPECT_THAT(rows, ::testing::Contains(std::pair<std::string, std::string>("relay session", "-")));
  adminpb::ListCallsResponse resp;
  *resp.add_calls() = c;
  EXPECT_EQ(CallsTable(resp).rows[0].back(), "-");
}

TEST(RwgctlBans, UserlessBanShowsDash) {
  adminpb::ListBansResponse resp;
  adminpb::BanInfo* b = resp.add_bans();
  b->set_id("src:198.51.100.7");
  b->set_kind("source");
  b->set_until_unix(1700000000);
  EXPECT_EQ(RenderTable(BansTable(resp)),
            "ID                KIND    SOURCE  USER  UNTIL                    REASON\n"
            "src:198.51.100.7  source          -     2023-11-14 22:13:20 UTC\n");
}

TEST(RwgctlEmergency, RoutesWithoutDescriptionShowDash) {
  adminpb::EmergencyRoute r;
  r.set_location("FR/Paris");
  r.set_number("112");
  r.set_dial("0112");
  EXPECT_EQ(RenderTable(RoutesTable({&r})),
            "LOCATION  NUMBER  DIAL  DESCRIPTION\nFR/Paris  112     0112  -\n");
}

TEST(RwgctlRelay, SessionsTable) {
  relaypb::ListResponse resp;
  relaypb::Session* s = resp.add_sessions();
  s->set_id("s1");
  s->mutable_set()->set_local_port(30000);
  s->mutable_set()->mutable_stats()->mutable_rtp_in()->set_packets(7);
  s->mutable_icp()->set_local_port(30002);
  Table t = SessionsTable(resp);
  EXPECT_THAT(t.rows[0], ::testing::ElementsAre("s1", "", "30000", "", "30002", "", "7/0", "no"));
}

TEST(RwgctlHash, WarningGoesToStandardErrorForPeopleOnly) {
  adminpb::HashKey h;
  h.set_key("0123456789abcdef0123456789abcdef");
  h.set_download_path("https://rwg.example:4445/0123/ftp_67xxi");
  h.set_warning("every phone deployed with the previous key loses its path");
  std::ostringstream out, err;
  Printer table(Format::kTable, out, err);
  PrintHash(table, h);
  EXPECT_EQ(out.str(),
            "hash key:      0123456789abcdef0123456789abcdef\n"
            "download path: https://rwg.example:4445/0123/ftp_67xxi\n"
            "created:       -\n");
  EXPECT_EQ(err.str(), "WARNING: every phone deployed with the previous key loses its path\n");

  std::ostringstream jout, jerr;
  Printer json(Format::kJson, jout, jerr);
  PrintHash(json, h);
  EXPECT_EQ(jout.str(), ToJson(h));
  EXPECT_EQ(jerr.str(), "");
}

}  // namespace
}  // namespace rwg::rwgctl
