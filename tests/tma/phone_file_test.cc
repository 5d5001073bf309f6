#include "services/tma/phone_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rwg::tma {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<Param> Parsed(const std::string& text) {
  absl::StatusOr<std::vector<Param>> params = ParsePhoneFile(text);
  EXPECT_TRUE(params.ok()) << params.status() << "\n" << text;
  return params.ok() ? *params : std::vector<Param>{};
}

std::string ParseError(const std::string& text) {
  absl::StatusOr<std::vector<Param>> params = ParsePhoneFile(text);
  EXPECT_FALSE(params.ok()) << text;
  if (params.ok()) return "";
  EXPECT_EQ(params.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(params.status().message());
}

TEST(IsParameterNameTest, LowerCaseWordsSeparatedBySingleSpaces) {
  EXPECT_TRUE(IsParameterName("sip line1 user name"));
  EXPECT_TRUE(IsParameterName("https path"));
  EXPECT_TRUE(IsParameterName("softkey12 value"));
  EXPECT_TRUE(IsParameterName("a"));
  EXPECT_TRUE(IsParameterName(std::string(64, 'a')));
  EXPECT_FALSE(IsParameterName(std::string(65, 'a')));
  EXPECT_FALSE(IsParameterName(""));
  EXPECT_FALSE(IsParameterName("Sip proxy ip"));
  EXPECT_FALSE(IsParameterName("MAC ADDRESS"));
  EXPECT_FALSE(IsParameterName("1sip"));
  EXPECT_FALSE(IsParameterName(" sip proxy ip"));
  EXPECT_FALSE(IsParameterName("sip proxy ip "));
  EXPECT_FALSE(IsParameterName("sip  proxy ip"));
  EXPECT_FALSE(IsParameterName("!sip proxy ip"));
  EXPECT_FALSE(IsParameterName("sip_proxy_ip"));
  EXPECT_FALSE(IsParameterName("sip\tproxy"));
  EXPECT_FALSE(IsParameterName("sip: ip"));
  EXPECT_FALSE(IsParameterName("caf\xC3\xA9"));
}

TEST(RenderPhoneFileTest, FixedRemoteWorkerParametersLockedThenTheParamsInOrder) {
  PhoneFileOptions options;
  const std::string file = RenderPhoneFile({{"sip line1 user name", "1001", true},
                                            {"sip line1 password", "p#ss: word", false},
                                            {"sip proxy ip", "rw.example.com", true}},
                                           options);
  EXPECT_EQ(file,
            "!sip transport protocol: 4\n"
            "!sip proxy port: 5061\n"
            "!sip registrar port: 5061\n"
            "!sip srtp mode: 2\n"
            "!download protocol: HTTPS\n"
            "!https port: 4445\n"
            "!contact rcs: 0\n"
            "!sip line1 user name: 1001\n"
            "sip line1 password: p#ss: word\n"
            "!sip proxy ip: rw.example.com\n");
}

TEST(RenderPhoneFileTest, OptionsPortsSrtpCertificateAndComment) {
  PhoneFileOptions options;
  options.sip_port = 5071;
  options.https_port = 8443;
  options.srtp_mode = 1;
  options.trusted_certificate = "CA_Mitel.pem";
  options.comment = "rwg deployment d-42\n2026-12-05T08:00:00Z";
  const std::vector<Param> params = Parsed(RenderPhoneFile({}, options));
  EXPECT_THAT(
      params,
      ElementsAre(Param{"sip transport protocol", "4", true}, Param{"sip proxy port", "5071", true},
                  Param{"sip registrar port", "5071", true}, Param{"sip srtp mode", "1", true},
                  Param{"download protocol", "HTTPS", true}, Param{"https port", "8443", true},
                  Param{"contact rcs", "0", true},
                  Param{"sips trusted certificates", "CA_Mitel.pem", true},
                  Param{"https user certificates", "CA_Mitel.pem", true}));
  const std::string file = RenderPhoneFile({}, options);
  EXPECT_TRUE(file.starts_with("# rwg deployment d-42\n# 2026-12-05T08:00:00Z\n")) << file;
}

TEST(RenderPhoneFileTest, AParamReplacesTheFixedOneOfTheSameName) {
  PhoneFileOptions options;
  const std::vector<Param> params = Parsed(
      RenderPhoneFile({{"sip srtp mode", "0", false}, {"https port", "443", true}}, options));
  EXPECT_THAT(
      params,
      ElementsAre(Param{"sip transport protocol", "4", true}, Param{"sip proxy port", "5061", true},
                  Param{"sip registrar port", "5061", true},
                  Param{"download protocol", "HTTPS", true}, Param{"contact rcs", "0", true},
                  Param{"sip srtp mode", "0", false}, Param{"https port", "443", true}));
}

TEST(RenderPhoneFileTest, ALineBreakNeverStartsAnotherParameter) {
  PhoneFileOptions options;
  options.comment = "one\r\nsip proxy ip: evil";
  const std::string file =
      RenderPhoneFile({{"sip line1 password", "a\nsip proxy ip: evil\r", false}}, options);
  const std::vector<Param> params = Parsed(file);
  for (const Param& p : params) EXPECT_NE(p.name, "sip proxy ip") << file;
  EXPECT_EQ(params.back(), (Param{"sip line1 password", "a sip proxy ip: evil", false}));
}

TEST(ParsePhoneFileTest, ParametersCommentsBlankLinesCrlfBom) {
  const std::string text =
      "\xEF\xBB\xBF# a comment\r\n"
      "\r\n"
      "   \n"
      "!sip line1 auth name: 1001\r\n"
      "sip proxy ip:rw.example.com\n"
      "  services script :  https://rw.example.com:4445/h/x?a=b#c  \n"
      "sip line1 display name:\n"
      "  # an indented comment\n"
      "! https path: abc/ftp_67xxi";
  EXPECT_THAT(Parsed(text),
              ElementsAre(Param{"sip line1 auth name", "1001", true},
                          Param{"sip proxy ip", "rw.example.com", false},
                          Param{"services script", "https://rw.example.com:4445/h/x?a=b#c", false},
                          Param{"sip line1 display name", "", false},
                          Param{"https path", "abc/ftp_67xxi", true}));
  EXPECT_TRUE(Parsed("").empty());
}

TEST(ParsePhoneFileTest, NamesTheBadLine) {
  EXPECT_THAT(ParseError("sip proxy ip: a\n\nno colon here\n"),
              HasSubstr("line 3: not a \"name: value\" line"));
  EXPECT_THAT(ParseError("# c\nSIP Proxy IP: a\n"),
              HasSubstr("line 2: 'SIP Proxy IP' is not a parameter name"));
  EXPECT_THAT(ParseError("^sip proxy ip: a\n"), HasSubstr("line 1: '^sip proxy ip'"));
  EXPECT_THAT(ParseError(": value\n"), HasSubstr("line 1: '' is not a parameter name"));
  EXPECT_THAT(ParseError("sip\xFF: x\n"), HasSubstr("'sip\\xff'"));
}

TEST(PhoneFileTest, RenderedParamsParseBack) {
  const std::vector<Param> params = {
      {"sip line1 user name", "jean.dupont", true},
      {"sip line1 password", "p@ss,w\"ord: #1 é", false},
      {"keyboard script", "https://ipbx.example/xml?x=1", false},
      {"softkey1 value", "", true},
  };
  PhoneFileOptions options;
  options.comment = "test";
  const std::vector<Param> parsed = Parsed(RenderPhoneFile(params, options));
  ASSERT_GE(parsed.size(), params.size());
  const std::vector<Param> tail(parsed.end() - static_cast<long>(params.size()), parsed.end());
  EXPECT_EQ(tail, params);
}

}  // namespace
}  // namespace rwg::tma
