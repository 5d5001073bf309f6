#include "services/sip_edge/call_sip.h"

#include <gtest/gtest.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_protos.h>

#include <string>

namespace rwg::sip_edge {
namespace {

// A message parsed as nta parses what it receives.
class Parsed {
 public:
  explicit Parsed(const std::string& text)
      : msg_(msg_make(sip_default_mclass(), 0, text.data(), static_cast<ssize_t>(text.size()))) {}
  ~Parsed() { msg_destroy(msg_); }
  Parsed(const Parsed&) = delete;
  Parsed& operator=(const Parsed&) = delete;
  const sip_t* sip() const { return sip_object(msg_); }
  su_home_t* home() { return msg_home(msg_); }

 private:
  msg_t* msg_;
};

std::string Invite(const std::string& extra, const std::string& body = "") {
  return "INVITE sip:21002@pbx.example.com SIP/2.0\r\n"
         "Via: SIP/2.0/TLS 192.0.2.7:5061;branch=z9hG4bK-1\r\n"
         "From: \"Alice Martin\" <sip:1001@rwg.example.com>;tag=a1\r\n"
         "To: <sip:1002@rwg.example.com>\r\n"
         "Call-ID: c1@192.0.2.7\r\n"
         "CSeq: 1 INVITE\r\n"
         "Contact: <sip:1001@192.0.2.7:5061;transport=tls>\r\n"
         "Max-Forwards: 70\r\n" +
         extra + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST(CallSipTest, PercentEncodingOfReplacesRoundTrips) {
  const std::string replaces = "c1@192.0.2.7;to-tag=b2;from-tag=a1";
  EXPECT_EQ(PercentEncode(replaces), "c1%40192.0.2.7%3Bto-tag%3Db2%3Bfrom-tag%3Da1");
  EXPECT_EQ(PercentDecode(PercentEncode(replaces)), replaces);
  const std::string bytes("\x00\xff%\r\n ", 6);
  EXPECT_EQ(PercentDecode(PercentEncode(bytes)), bytes);
  EXPECT_EQ(PercentDecode("%3b%3B"), ";;");
}

TEST(CallSipTest, PercentDecodeTakesOnlyTwoHexadecimalDigits) {
  // A number parser would read these as -1, 15 and 0: they stay as they are.
  EXPECT_EQ(PercentDecode("%-1"), "%-1");
  EXPECT_EQ(PercentDecode("% f"), "% f");
  EXPECT_EQ(PercentDecode("%+0"), "%+0");
  EXPECT_EQ(PercentDecode("%4"), "%4");  // truncated at the end
  EXPECT_EQ(PercentDecode("%"), "%");
  EXPECT_EQ(PercentDecode("%zz%41"), "%zzA");
}

TEST(CallSipTest, AddressesAsText) {
  Parsed p(Invite(""));
  ASSERT_NE(p.sip(), nullptr);
  EXPECT_EQ(NameAddr(p.home(), p.sip()->sip_from), "\"Alice Martin\" <sip:1001@rwg.example.com>");
  EXPECT_EQ(NameAddr(p.home(), p.sip()->sip_to), "<sip:1002@rwg.example.com>");
  EXPECT_EQ(UrlText(p.home(), p.sip()->sip_request->rq_url), "sip:21002@pbx.example.com");
  EXPECT_EQ(UrlText(p.home(), nullptr), "");
  EXPECT_EQ(NameAddr(p.home(), nullptr), "");
}

TEST(CallSipTest, AFoldedDisplayNameIsOneLine) {
  // sofia keeps the fold inside the quotes; the other side's From gets one line.
  std::string folded = Invite("");
  folded.replace(folded.find("\"Alice Martin\""), 14, "\"Alice \r\n\t Martin\"");
  Parsed p(folded);
  ASSERT_NE(p.sip(), nullptr);
  ASSERT_NE(p.sip()->sip_from, nullptr);
  EXPECT_EQ(NameAddr(p.home(), p.sip()->sip_from), "\"Alice Martin\" <sip:1001@rwg.example.com>");
}

TEST(CallSipTest, FoldsInQuotedParametersAreOneLine) {
  // sofia keeps these folds too: in a URI's quoted parameter and in Session-Expires'.
  std::string text = Invite("Session-Expires: 90;x=\"a\r\n b\"\r\n");
  text.replace(text.find("<sip:1001@192.0.2.7:5061;transport=tls>"), 39,
               "<sip:1001@192.0.2.7:5061;transport=tls;x=\"q\r\n\tr\">");
  Parsed folded(text);
  ASSERT_NE(folded.sip(), nullptr);
  ASSERT_NE(folded.sip()->sip_contact, nullptr);
  EXPECT_EQ(UrlText(folded.home(), folded.sip()->sip_contact->m_url),
            "sip:1001@192.0.2.7:5061;transport=tls;x=\"q r\"");
  EXPECT_EQ(TimerHeaders(folded.sip()), "Session-Expires: 90;x=\"a b\"");
}

TEST(CallSipTest, PayloadIsTheSdpBodyOnly) {
  const std::string sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\n";
  Parsed with_sdp(Invite("Content-Type: application/SDP\r\n", sdp));
  EXPECT_EQ(PayloadOf(with_sdp.sip()), sdp);
  Parsed other(Invite("Content-Type: application/isup\r\n", "not sdp"));
  EXPECT_EQ(PayloadOf(other.sip()), "");
  Parsed none(Invite(""));
  EXPECT_EQ(PayloadOf(none.sip()), "");
  EXPECT_EQ(PayloadOf(nullptr), "");
}

TEST(CallSipTest, OptionsAndSessionTimerHeaders) {
  Parsed p(
      Invite("Supported: 100rel, Timer\r\nRequire: replaces\r\n"
             "Session-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\n"));
  EXPECT_TRUE(HasOption(p.sip(), "100rel"));
  EXPECT_TRUE(HasOption(p.sip(), "replaces"));
  EXPECT_FALSE(RequiresOption(p.sip(), "100rel"));
  EXPECT_TRUE(RequiresOption(p.sip(), "replaces"));
  EXPECT_FALSE(HasOption(p.sip(), "path"));
  EXPECT_EQ(TimerHeaders(p.sip()),
            "Session-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\nSupported: timer");
  Parsed plain(Invite(""));
  EXPECT_EQ(TimerHeaders(plain.sip()), "");
  EXPECT_FALSE(HasOption(nullptr, "timer"));
}

TEST(CallSipTest, RemoteOfAnSdpStream) {
  AudioStream a;
  a.address = "192.0.2.7";
  a.port = 40000;
  a.rtcp_port = 40001;
  a.crypto.push_back(SdesCrypto{1, "AES_CM_128_HMAC_SHA1_80", std::string(30, 'k')});
  RelayRemote r = RemoteOf(a);
  EXPECT_EQ(r.suite, "AES_CM_128_HMAC_SHA1_80");
  EXPECT_EQ(r.key, std::string(30, 'k'));
  EXPECT_EQ(r.port, 40000);
  EXPECT_EQ(r.rtcp_port, 0);  // the usual port + 1: not named
  a.rtcp_port = 40011;
  a.crypto.clear();
  r = RemoteOf(a);
  EXPECT_EQ(r.suite, "RTP");
  EXPECT_EQ(r.rtcp_port, 40011);
}

}  // namespace
}  // namespace rwg::sip_edge
