#include "services/tma/rw_csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/tma/phone_file.h"

namespace rwg::tma {

// Readable failures.
void PrintTo(const CsvProblem& p, std::ostream* os) {
  *os << "{row " << p.row << ", column \"" << p.column << "\", "
      << (p.warning ? "warning" : "error") << ": " << p.message << "}";
}
void PrintTo(const Param& p, std::ostream* os) {
  *os << "{" << (p.locked ? "!" : "") << p.name << ": " << p.value << "}";
}

namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kHeader[] =
    "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\r\n";
constexpr char kUser[] = "!sip line1 user name";
constexpr char kAuth[] = "!sip line1 auth name";
constexpr char kPassword[] = "sip line1 password";
constexpr char kMac[] = "MAC ADDRESS";

// A problem at `row`, `column`, whose message has `text`.
::testing::Matcher<CsvProblem> Error(int row, const std::string& column, const std::string& text) {
  return AllOf(Field("row", &CsvProblem::row, row), Field("column", &CsvProblem::column, column),
               Field("message", &CsvProblem::message, HasSubstr(text)),
               Field("warning", &CsvProblem::warning, false));
}
::testing::Matcher<CsvProblem> Warning(int row, const std::string& column,
                                       const std::string& text) {
  return AllOf(Field("row", &CsvProblem::row, row), Field("column", &CsvProblem::column, column),
               Field("message", &CsvProblem::message, HasSubstr(text)),
               Field("warning", &CsvProblem::warning, true));
}

class RwCsvTest : public ::testing::Test {
 protected:
  RwCsvTest() {
    Declare({"1001", "pw-1001", "", "paris"});
    Declare({"1002", "pw-1002", "", "paris"});
    Declare({"1003", "pw-1003", "08-00-0f-00-00-03", "lyon"});
    Declare({"jean.dupont", "s3cret,\"x\"", "", "lyon"});
  }

  void Declare(const DeviceFacts& d) { devices_[d.set_username] = d; }

  DeviceLookup Lookup() {
    return [this](const std::vector<std::string>& users) {
      ++calls_;
      std::vector<std::optional<DeviceFacts>> out;
      for (const std::string& user : users) {
        ++lookups_;
        auto it = devices_.find(user);
        out.push_back(it == devices_.end() ? std::nullopt : std::optional(it->second));
      }
      return out;
    };
  }

  CheckedCsv Check(const std::string& csv, const SystemData& system = {},
                   const CsvLimits& limits = {}) {
    return CheckRemoteWorkerCsv(csv, system, Lookup(), limits);
  }

  // The problems of a file expected to be refused.
  std::vector<CsvProblem> Problems(const std::string& csv, const CsvLimits& limits = {}) {
    CheckedCsv c = Check(csv, {}, limits);
    EXPECT_FALSE(c.ok()) << csv;
    EXPECT_THAT(c.phones, IsEmpty());
    return c.problems;
  }

  std::map<std::string, DeviceFacts> devices_;
  int lookups_ = 0;  // user names asked
  int calls_ = 0;    // times the lookup was called
};

TEST_F(RwCsvTest, AcceptsAGoodFile) {
  CheckedCsv c = Check(std::string(kHeader) +
                       "08:00:0f:00:00:01,1001,1001,pw-1001\r\n"
                       "0800.0f00.0002,1002,21002,pw-1002\r\n");
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(c.problems, IsEmpty());
  ASSERT_THAT(c.phones, SizeIs(2));
  EXPECT_EQ(c.phones[0].row, 2);
  EXPECT_EQ(c.phones[0].mac, "08000F000001");
  EXPECT_EQ(c.phones[0].user, "1001");
  EXPECT_THAT(c.phones[0].params, ElementsAre(Param{"sip line1 user name", "1001", true},
                                              Param{"sip line1 auth name", "1001", true},
                                              Param{"sip line1 password", "pw-1001", false}));
  EXPECT_EQ(c.phones[1].row, 3);
  EXPECT_EQ(c.phones[1].mac, "08000F000002");
  EXPECT_EQ(c.phones[1].params[1], (Param{"sip line1 auth name", "21002", true}));
}

TEST_F(RwCsvTest, ByteOrderMarkIsSkipped) {
  CheckedCsv c = Check("\xEF\xBB\xBF" + std::string(kHeader) + "080000000001,1001,1001,pw-1001\n");
  ASSERT_TRUE(c.ok()) << c.problems[0].message;
  ASSERT_THAT(c.phones, SizeIs(1));
  EXPECT_EQ(c.phones[0].row, 2);
  EXPECT_EQ(c.phones[0].mac, "080000000001");
}

TEST_F(RwCsvTest, LineEndingsAndBlankLinesKeepRowsNumberedAsLines) {
  CheckedCsv c = Check(
      "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\r\n"
      "\r\n"
      "080000000001,1001,1001,pw-1001\n"
      "   \n"
      ",,,\r\n"  // a spreadsheet's empty row
      "080000000002,1002,1002,pw-1002\r"
      "080000000003,1003,1003,pw-1003");  // no line break at the end
  ASSERT_TRUE(c.ok());
  ASSERT_THAT(c.phones, SizeIs(3));
  EXPECT_EQ(c.phones[0].row, 3);
  EXPECT_EQ(c.phones[1].row, 6);
  EXPECT_EQ(c.phones[2].row, 7);
  // A lone CR ended a line: the last row is on line 7 (the device 1003 is declared with
  // another MAC: a warning, named by the row's line).
  EXPECT_THAT(c.problems, ElementsAre(Warning(7, kMac, "declared with MAC")));
}

TEST_F(RwCsvTest, QuotedCellsWithCommasQuotesAndSpaces) {
  CheckedCsv c = Check(std::string(kHeader) +
                       "\"08:00:0F:00:00:04\", jean.dupont ,\"jean.dupont\",\"s3cret,\"\"x\"\"\"\n"
                       "080000000001,1001,1001,\" pw-1001 \"\n");
  ASSERT_TRUE(c.ok()) << c.problems[0].message;
  ASSERT_THAT(c.phones, SizeIs(2));
  EXPECT_EQ(c.phones[0].user, "jean.dupont");
  EXPECT_EQ(c.phones[0].params[2], (Param{"sip line1 password", "s3cret,\"x\"", false}));
  // Spaces around a cell, quoted or not, are not part of it.
  EXPECT_EQ(c.phones[1].params[2], (Param{"sip line1 password", "pw-1001", false}));
  EXPECT_THAT(c.problems, IsEmpty());
}

TEST_F(RwCsvTest, CellWithALineBreak) {
  // The row starts on line 2; the quoted line break puts the next row on line 4.
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001,1001,\"pw\n1001\"\n"
                                              "080000000002,1002,1002,\"pw-1002\r\"\n"),
              ElementsAre(Error(2, kPassword, "line break"), Error(4, kPassword, "line break")));
}

TEST_F(RwCsvTest, CellThatIsNotUtf8) {
  for (const char* bad :
       {"caf\xE9", "\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF\xFE"}) {
    EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001," + bad + ",pw-1001\n"),
                ElementsAre(Error(2, kAuth, "not valid UTF-8")))
        << bad;
  }
  // UTF-8 itself is fine.
  Declare({"jos\xC3\xA9", "mot de passe \xE2\x82\xAC \xF0\x9F\x98\x80", "", ""});
  CheckedCsv c = Check(std::string(kHeader) +
                       "080000000001,jos\xC3\xA9,jos\xC3\xA9,mot de passe \xE2\x82\xAC "
                       "\xF0\x9F\x98\x80\n");
  EXPECT_TRUE(c.ok()) << c.problems[0].message;
}

TEST_F(RwCsvTest, CellWithAControlCharacter) {
  for (const char* user : {"c1", "c2", "c3", "c4", "c5"}) Declare({user, "pw", "", ""});
  constexpr char kNul[] = "080000000005,c5,c5\0,pw\n";
  EXPECT_THAT(Problems(std::string(kHeader) +
                       "080000000001,c1,c1,p\tw\n"
                       "080000000002,c2\x01,c2,pw\n"
                       "080000000003,c3,c3,pw\x7F\n"
                       "\t080000000004,c4,c4,\"p\"\"\xC2\x85\"\n" +
                       std::string(kNul, sizeof(kNul) - 1)),
              ElementsAre(Error(2, kPassword, "control character U+0009"),
                          Error(3, kUser, "control character U+0001"),
                          Error(4, kPassword, "control character U+007F"),
                          Error(5, kMac, "control character U+0009"),
                          Error(5, kPassword, "control character U+0085"),
                          Error(6, kAuth, "control character U+0000")));
}

TEST_F(RwCsvTest, CellOverTheLimit) {
  CsvLimits limits;
  limits.max_cell = 12;
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001,1001,pw-1001-longer\n", limits),
              ElementsAre(Error(2, kPassword, "longer than the limit of 12 bytes")));
  // 12 bytes exactly (the MAC) is allowed.
  EXPECT_TRUE(Check(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n", {}, limits).ok());
}

TEST_F(RwCsvTest, TooManyRows) {
  CsvLimits limits;
  limits.max_rows = 2;
  const std::string two = std::string(kHeader) +
                          "080000000001,1001,1001,pw-1001\n"
                          "080000000002,1002,1002,pw-1002\n";
  EXPECT_TRUE(Check(two, {}, limits).ok());
  EXPECT_THAT(Problems(two + "080000000003,1003,1003,pw-1003\n", limits),
              ElementsAre(Error(0, "", "more than 2 phone rows")));
  // Blank rows do not count.
  EXPECT_TRUE(Check(two + ",,,\n\n", {}, limits).ok());
}

TEST_F(RwCsvTest, FileOverTheLimit) {
  CsvLimits limits;
  limits.max_bytes = 64;
  const std::string csv = std::string(kHeader) + "080000000001,1001,1001,pw-1001\n";
  EXPECT_THAT(
      Problems(csv, limits),
      ElementsAre(
          Error(0, "", absl::StrCat("the file is ", csv.size(), " bytes, over the limit of 64"))));
  EXPECT_EQ(lookups_, 0);
}

TEST_F(RwCsvTest, EmptyFileNoRowsUtf16) {
  for (const std::string csv : {"", "\xEF\xBB\xBF", "\r\n\n  \n", ",,,\n"}) {
    EXPECT_THAT(Problems(csv), ElementsAre(Error(0, "", "the file is empty"))) << csv;
  }
  EXPECT_THAT(Problems(kHeader), ElementsAre(Error(0, "", "no phone rows")));
  EXPECT_THAT(Problems(std::string(kHeader) + ",,,\n"), ElementsAre(Error(0, "", "no phone rows")));
  EXPECT_THAT(Problems(std::string("\xFF\xFEM\0A\0", 6)), ElementsAre(Error(0, "", "UTF-16")));
}

TEST_F(RwCsvTest, BadHeaders) {
  const std::vector<CsvProblem> problems = Problems(
      "MAC ADDRESS,Sip Line1 User Name,,!sip line1 auth name,sip line1 password,"
      "sip_proxy_ip,sip proxy ip,!sip proxy ip,mac address,caf\xC3\xA9,x\xFF\n"
      "080000000001,1001,,1001,pw-1001,a,b,c,d,e,f\n");
  EXPECT_THAT(problems,
              ElementsAre(Error(1, "Sip Line1 User Name", "is not a parameter name of the phones"),
                          Error(1, "", "column 3 has no header"),
                          Error(1, "sip_proxy_ip", "is not a parameter name"),
                          Error(1, "!sip proxy ip", "repeats column 7 ('sip proxy ip')"),
                          Error(1, "mac address", "repeats column 1 ('MAC ADDRESS')"),
                          Error(1, "caf\xC3\xA9", "is not a parameter name"),
                          Error(1, "x\\xff", "'x\\xff' is not a parameter name"),
                          Error(1, "sip line1 user name", "required column")));
  EXPECT_EQ(lookups_, 0);
}

TEST_F(RwCsvTest, EachRequiredColumnMissing) {
  const std::vector<std::string> required = {kMac, kUser, kAuth, kPassword};
  for (size_t missing = 0; missing < required.size(); ++missing) {
    std::string header;
    for (size_t i = 0; i < required.size(); ++i) {
      if (i == missing) continue;
      absl::StrAppend(&header, header.empty() ? "" : ",", required[i]);
    }
    std::string name = required[missing];
    if (name.front() == '!') name.erase(0, 1);
    EXPECT_THAT(
        Problems(header + "\na,b,c\n"),
        ElementsAre(Error(1, name, absl::StrCat("the required column '", name, "' is missing"))));
  }
}

TEST_F(RwCsvTest, HeaderAfterBlankLinesIsNamedByItsLine) {
  EXPECT_THAT(Problems("\n\nMAC ADDRESS,!sip line1 user name,sip line1 password\n"),
              ElementsAre(Error(3, "sip line1 auth name", "is missing")));
}

TEST_F(RwCsvTest, MalformedCsv) {
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n"
                                              "080000000002,1002,\"1002\"x,pw-1002\n"),
              ElementsAre(Error(3, "", "malformed CSV on line 3")));
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000002,1002,10\"02,pw-1002\n"),
              ElementsAre(Error(2, "", "malformed CSV on line 2")));
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n"
                                              "080000000002,1002,1002,\"pw-1002\n"
                                              "\n"),
              ElementsAre(Error(3, "", "a quoted cell is not closed")));
}

TEST_F(RwCsvTest, WrongNumberOfCells) {
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001,1001\n"
                                              "080000000002,1002,1002,pw-1002,\n"
                                              "080000000003,1001,1001,pw-1001\n"),
              ElementsAre(Error(2, "", "the row has 3 cells, the header has 4"),
                          Error(3, "", "the row has 5 cells, the header has 4")));
}

TEST_F(RwCsvTest, BadMac) {
  EXPECT_THAT(Problems(std::string(kHeader) + "08:00:0f:00:00,1001,1001,pw-1001\n"
                                              "ff:ff:ff:ff:ff:ff,1002,1002,pw-1002\n"
                                              "08:00-0f:00:00:03,1003,1003,pw-1003\n"),
              ElementsAre(Error(2, kMac, "has 10 hexadecimal digits"), Error(3, kMac, "broadcast"),
                          Error(4, kMac, "mixes the separators")));
}

TEST_F(RwCsvTest, RepeatedMacInTwoSpellings) {
  EXPECT_THAT(Problems(std::string(kHeader) + "08:00:0f:00:00:01,1001,1001,pw-1001\n"
                                              "080000000002,1002,1002,pw-1002\n"
                                              "0800.0F00.0001,1003,1003,pw-1003\n"),
              ElementsAre(Error(4, kMac, "MAC 08000F000001 is also on row 2")));
}

TEST_F(RwCsvTest, EmptyMandatoryCells) {
  EXPECT_THAT(Problems(std::string(kHeader) + ",1001,1001,pw-1001\n"
                                              "080000000002,,1002,pw-1002\n"
                                              "08000F000003,1003,  ,pw-1003\n"
                                              "080000000004,jean.dupont,jean.dupont,\"\"\n"),
              ElementsAre(Error(2, kMac, "empty"), Error(3, kUser, "empty"),
                          Error(4, kAuth, "empty"), Error(5, kPassword, "empty")));
}

TEST_F(RwCsvTest, UserDeclaredTwice) {
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n"
                                              "080000000002,1002,1002,pw-1002\n"
                                              "080000000003,1001,1001,pw-1001\n"),
              ElementsAre(Error(4, kUser, "the user '1001' is also on row 2")));
  EXPECT_EQ(lookups_, 2);
  EXPECT_EQ(calls_, 1);
}

TEST_F(RwCsvTest, UnknownUser) {
  EXPECT_THAT(Problems(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n"
                                              "080000000002,9999,9999,pw-9999\n"),
              ElementsAre(Error(3, kUser, "no declared device has the set-side user name '9999'")));
  // With no lookup no device is declared.
  CheckedCsv c =
      CheckRemoteWorkerCsv(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n", {}, nullptr);
  EXPECT_THAT(c.problems, ElementsAre(Error(2, kUser, "no declared device")));
}

TEST_F(RwCsvTest, PasswordMismatchIsAWarning) {
  CheckedCsv c = Check(std::string(kHeader) +
                       "080000000001,1001,1001,not-the-password\n"
                       "080000000002,1002,1002,pw-1002\n");
  EXPECT_TRUE(c.ok());
  EXPECT_THAT(c.phones, SizeIs(2));
  ASSERT_THAT(c.problems, ElementsAre(Warning(2, kPassword, "differs from the set-side password")));
  // The message never shows a password.
  EXPECT_THAT(c.problems[0].message, Not(HasSubstr("not-the-password")));
  EXPECT_THAT(c.problems[0].message, Not(HasSubstr("pw-1001")));
  // The file's password is the one written.
  EXPECT_EQ(c.phones[0].params[2].value, "not-the-password");
}

TEST_F(RwCsvTest, DeviceWithAnotherMacIsAWarning) {
  CheckedCsv c = Check(std::string(kHeader) +
                       "08:00:0f:00:00:03,1003,1003,pw-1003\n"
                       "08:00:0f:00:00:04,1003x,1003,pw-1003\n"
                       "08:00:0f:00:00:05,1002,1002,pw-1002\n");
  EXPECT_FALSE(c.ok());  // 1003x
  devices_["1002"].mac = "08000F000099";
  EXPECT_THAT(Check(std::string(kHeader) + "08:00:0f:00:00:03,1003,1003,pw-1003\n"
                                           "08:00:0f:00:00:05,1002,1002,pw-1002\n")
                  .problems,
              ElementsAre(Warning(3, kMac,
                                  "the device '1002' is declared with MAC 08000F000099, "
                                  "not 08000F000005")));
}

TEST_F(RwCsvTest, EveryProblemIsReportedByRowThenColumn) {
  const std::vector<CsvProblem> problems = Problems(std::string(kHeader) +
                                                    "zz,9999,,pw\x01\n"
                                                    "080000000002,1002,1002,pw-1002\n"
                                                    "080000000002,1002,1002,other\n"
                                                    "080000000004,1001\n");
  EXPECT_THAT(problems,
              ElementsAre(Error(2, kMac, "is not a hexadecimal digit"),
                          Error(2, kUser, "no declared device"), Error(2, kAuth, "empty"),
                          Error(2, kPassword, "control character"), Error(4, kMac, "also on row 3"),
                          Error(4, kUser, "also on row 3"), Error(5, "", "the row has 2 cells")));
}

TEST_F(RwCsvTest, ColumnsInAnyOrder) {
  std::vector<std::string> columns = {kMac, kUser, kAuth, kPassword, "!softkey1 value"};
  const std::map<std::string, std::string> cells = {{kMac, "08:00:0f:00:00:01"},
                                                    {kUser, "1001"},
                                                    {kAuth, "21001"},
                                                    {kPassword, "pw-1001"},
                                                    {"!softkey1 value", "https://x/y"}};
  std::sort(columns.begin(), columns.end());
  int permutations = 0;
  do {
    std::string csv;
    for (size_t i = 0; i < columns.size(); ++i) {
      absl::StrAppend(&csv, i ? "," : "", columns[i]);
    }
    csv += "\n";
    for (size_t i = 0; i < columns.size(); ++i) {
      absl::StrAppend(&csv, i ? "," : "", cells.at(columns[i]));
    }
    CheckedCsv c = Check(csv);
    ASSERT_TRUE(c.ok()) << csv << c.problems[0].message;
    ASSERT_THAT(c.phones, SizeIs(1));
    EXPECT_EQ(c.phones[0].mac, "08000F000001");
    EXPECT_EQ(c.phones[0].user, "1001");
    // The parameters in the header's order, with their locks.
    std::vector<Param> want;
    for (const std::string& column : columns) {
      if (column == kMac) continue;
      const bool locked = column.front() == '!';
      want.push_back({column.substr(locked ? 1 : 0), cells.at(column), locked});
    }
    EXPECT_EQ(c.phones[0].params, want) << csv;
    ++permutations;
  } while (std::next_permutation(columns.begin(), columns.end()));
  EXPECT_EQ(permutations, 120);
}

TEST_F(RwCsvTest, ExtraParameterColumnsCopiedInOrderWithLocks) {
  CheckedCsv c = Check(
      "softkey1 type,MAC ADDRESS,!softkey1 value,!sip line1 user name,!sip line1 auth name,"
      "sip line1 password,  sip line1 screen name  ,!time zone name\n"
      "xml,080000000001,https://ipbx/menu,1001,1001,pw-1001,\"Dupont, Jean\",FR-Paris\n"
      "xml,080000000002,,1002,1002,pw-1002,,FR-Paris\n");
  ASSERT_TRUE(c.ok()) << c.problems[0].message;
  ASSERT_THAT(c.phones, SizeIs(2));
  EXPECT_THAT(c.phones[0].params, ElementsAre(Param{"softkey1 type", "xml", false},
                                              Param{"softkey1 value", "https://ipbx/menu", true},
                                              Param{"sip line1 user name", "1001", true},
                                              Param{"sip line1 auth name", "1001", true},
                                              Param{"sip line1 password", "pw-1001", false},
                                              Param{"sip line1 screen name", "Dupont, Jean", false},
                                              Param{"time zone name", "FR-Paris", true}));
  // An empty cell writes nothing.
  EXPECT_THAT(c.phones[1].params, ElementsAre(Param{"softkey1 type", "xml", false},
                                              Param{"sip line1 user name", "1002", true},
                                              Param{"sip line1 auth name", "1002", true},
                                              Param{"sip line1 password", "pw-1002", false},
                                              Param{"time zone name", "FR-Paris", true}));
}

TEST_F(RwCsvTest, SystemDataWhereTheCsvHasNoColumn) {
  SystemData system;
  system.sip_proxy_ip = "rw.example.com";
  system.sip_registrar_ip = "reg.example.com";
  system.https_server = "prov.example.com";
  system.https_path = "abc123/ftp_67xxi";
  system.keyboard_script = "https://ipbx.example/kb";
  CheckedCsv c = Check(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n", system);
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(c.phones[0].params,
              ElementsAre(Param{"sip line1 user name", "1001", true},
                          Param{"sip line1 auth name", "1001", true},
                          Param{"sip line1 password", "pw-1001", false},
                          Param{"sip proxy ip", "rw.example.com", true},
                          Param{"sip registrar ip", "reg.example.com", true},
                          Param{"https server", "prov.example.com", true},
                          Param{"https path", "abc123/ftp_67xxi", true},
                          Param{"keyboard script", "https://ipbx.example/kb", false}));

  // Empty system data is not written.
  SystemData some;
  some.https_path = "h/ftp_67xxi";
  c = Check(std::string(kHeader) + "080000000001,1001,1001,pw-1001\n", some);
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(c.phones[0].params, SizeIs(4));
  EXPECT_EQ(c.phones[0].params[3], (Param{"https path", "h/ftp_67xxi", true}));
}

TEST_F(RwCsvTest, CsvColumnsOverrideSystemData) {
  SystemData system;
  system.sip_proxy_ip = "rw.example.com";
  system.sip_registrar_ip = "reg.example.com";
  system.https_path = "abc123/ftp_67xxi";
  // The CSV's column wins, with its lock (none here); an empty cell takes the system data's
  // value, still with the column's lock.
  CheckedCsv c = Check(
      "MAC ADDRESS,sip proxy ip,!sip line1 user name,!sip line1 auth name,sip line1 password,"
      "keyboard script\n"
      "080000000001,csv.example.com,1001,1001,pw-1001,https://kb\n"
      "080000000002,,1002,1002,pw-1002,\n",
      system);
  ASSERT_TRUE(c.ok()) << c.problems[0].message;
  EXPECT_THAT(c.phones[0].params, ElementsAre(Param{"sip proxy ip", "csv.example.com", false},
                                              Param{"sip line1 user name", "1001", true},
                                              Param{"sip line1 auth name", "1001", true},
                                              Param{"sip line1 password", "pw-1001", false},
                                              Param{"keyboard script", "https://kb", false},
                                              Param{"sip registrar ip", "reg.example.com", true},
                                              Param{"https path", "abc123/ftp_67xxi", true}));
  EXPECT_THAT(c.phones[1].params, ElementsAre(Param{"sip proxy ip", "rw.example.com", false},
                                              Param{"sip line1 user name", "1002", true},
                                              Param{"sip line1 auth name", "1002", true},
                                              Param{"sip line1 password", "pw-1002", false},
                                              Param{"sip registrar ip", "reg.example.com", true},
                                              Param{"https path", "abc123/ftp_67xxi", true}));
}

TEST(ExportRemoteWorkerCsvTest, TheSeedsColumnsQuotedWhereNeeded) {
  const std::vector<DeviceFacts> devices = {
      {"1001", "pw,1001", "08:00:0f:00:00:01", "paris"},
      {"1002", "pw-1002", "", "paris"},
      {"1003", "=cmd|' /C calc'!A0", "0800.0f00.0003", "paris", "21003"},
      {"1004", "say \"hi\"", "not a mac", "paris"},
      {"1005", " spaced ", "08000f000005", "paris"},
  };
  ExportedCsv out = ExportRemoteWorkerCsv(devices, {}, false);
  EXPECT_EQ(out.csv,
            "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\r\n"
            "08000F000001,1001,1001,\"pw,1001\"\r\n"
            "08000F000003,1003,21003,=cmd|' /C calc'!A0\r\n"
            "08000F000005,1005,1005,\" spaced \"\r\n");
  EXPECT_THAT(out.skipped, ElementsAre("1002", "1004"));
}

TEST(ExportRemoteWorkerCsvTest, SystemColumns) {
  SystemData system;
  system.sip_proxy_ip = "rw.example.com";
  system.https_path = "h/ftp_67xxi";
  system.keyboard_script = "https://kb?a=1,b=2";
  const std::vector<DeviceFacts> devices = {{"1001", "pw-1001", "080000000001", "paris"}};
  EXPECT_EQ(ExportRemoteWorkerCsv(devices, system, true).csv,
            "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password,"
            "!sip proxy ip,!https path,keyboard script\r\n"
            "080000000001,1001,1001,pw-1001,rw.example.com,h/ftp_67xxi,\"https://kb?a=1,b=2\"\r\n");
  EXPECT_EQ(ExportRemoteWorkerCsv(devices, system, false).csv,
            "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\r\n"
            "080000000001,1001,1001,pw-1001\r\n");
}

// ExportRemoteWorkerCsv → CheckRemoteWorkerCsv → RenderPhoneFile → ParsePhoneFile gives back
// the devices' values, with the system data, however they were exported.
TEST(RwCsvRoundTripTest, ExportCheckRenderParse) {
  const std::vector<DeviceFacts> devices = {
      {"1001", "pw-1001", "08:00:0f:00:00:01", "paris"},
      {"jean.dupont", "s3cret, \"quoted\" #1: =x", "08-00-0F-00-00-02", "paris", "21002"},
      {"jos\xC3\xA9", "\xE2\x82\xAC uro", "0800.0f00.0003", "paris"},
      {"nomac", "pw", "", "paris"},
  };
  std::map<std::string, DeviceFacts> by_user;
  for (const DeviceFacts& d : devices) by_user[d.set_username] = d;
  DeviceLookup lookup = [&](const std::vector<std::string>& users) {
    std::vector<std::optional<DeviceFacts>> out;
    for (const std::string& user : users) {
      auto it = by_user.find(user);
      out.push_back(it == by_user.end() ? std::nullopt : std::optional(it->second));
    }
    return out;
  };
  SystemData system;
  system.sip_proxy_ip = "rw.example.com";
  system.sip_registrar_ip = "rw.example.com";
  system.https_server = "prov.example.com";
  system.https_path = "0123abcd/ftp_67xxi";
  system.keyboard_script = "https://ipbx.example/kb?x=1";

  for (const bool system_columns : {false, true}) {
    SCOPED_TRACE(system_columns ? "system columns" : "system data");
    ExportedCsv exported = ExportRemoteWorkerCsv(devices, system, system_columns);
    EXPECT_THAT(exported.skipped, ElementsAre("nomac"));
    // In columns, the system data the check is given is not needed.
    CheckedCsv c =
        CheckRemoteWorkerCsv(exported.csv, system_columns ? SystemData{} : system, lookup);
    ASSERT_TRUE(c.ok()) << c.problems[0].message;
    EXPECT_THAT(c.problems, IsEmpty());
    ASSERT_THAT(c.phones, SizeIs(3));
    for (size_t i = 0; i < c.phones.size(); ++i) {
      const DeviceFacts& d = devices[i];
      const Phone& phone = c.phones[i];
      EXPECT_EQ(phone.row, static_cast<int>(i) + 2);
      EXPECT_EQ(phone.user, d.set_username);
      PhoneFileOptions options;
      options.trusted_certificate = "CA_Mitel.pem";
      options.comment = "round trip";
      absl::StatusOr<std::vector<Param>> parsed =
          ParsePhoneFile(RenderPhoneFile(phone.params, options));
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      std::map<std::string, Param> by_name;
      for (const Param& p : *parsed) {
        EXPECT_TRUE(by_name.emplace(p.name, p).second) << "twice: " << p.name;
      }
      EXPECT_EQ(by_name["sip line1 user name"],
                (Param{"sip line1 user name", d.set_username, true}));
      EXPECT_EQ(
          by_name["sip line1 auth name"],
          (Param{"sip line1 auth name", d.auth_name.empty() ? d.set_username : d.auth_name, true}));
      EXPECT_EQ(by_name["sip line1 password"],
                (Param{"sip line1 password", d.set_password, false}));
      EXPECT_EQ(by_name["sip proxy ip"], (Param{"sip proxy ip", "rw.example.com", true}));
      EXPECT_EQ(by_name["sip registrar ip"], (Param{"sip registrar ip", "rw.example.com", true}));
      EXPECT_EQ(by_name["https server"], (Param{"https server", "prov.example.com", true}));
      EXPECT_EQ(by_name["https path"], (Param{"https path", "0123abcd/ftp_67xxi", true}));
      EXPECT_EQ(by_name["keyboard script"],
                (Param{"keyboard script", "https://ipbx.example/kb?x=1", false}));
      // The fixed Remote Worker parameters, locked.
      EXPECT_EQ(by_name["sip transport protocol"], (Param{"sip transport protocol", "4", true}));
      EXPECT_EQ(by_name["sip proxy port"], (Param{"sip proxy port", "5061", true}));
      EXPECT_EQ(by_name["sip registrar port"], (Param{"sip registrar port", "5061", true}));
      EXPECT_EQ(by_name["sip srtp mode"], (Param{"sip srtp mode", "2", true}));
      EXPECT_EQ(by_name["download protocol"], (Param{"download protocol", "HTTPS", true}));
      EXPECT_EQ(by_name["https port"], (Param{"https port", "4445", true}));
      EXPECT_EQ(by_name["contact rcs"], (Param{"contact rcs", "0", true}));
      EXPECT_EQ(by_name["sips trusted certificates"],
                (Param{"sips trusted certificates", "CA_Mitel.pem", true}));
      EXPECT_EQ(by_name["https user certificates"],
                (Param{"https user certificates", "CA_Mitel.pem", true}));
      EXPECT_EQ(by_name.size(), 17u);
      // After the fixed parameters, exactly the phone's, in order.
      ASSERT_GE(parsed->size(), phone.params.size());
      EXPECT_EQ(
          std::vector<Param>(parsed->end() - static_cast<long>(phone.params.size()), parsed->end()),
          phone.params);
    }
  }
}

}  // namespace
}  // namespace rwg::tma
