#include "services/sip_edge/tls_keepalive.h"

#include <gtest/gtest.h>

#include <string>

namespace rwg::sip_edge {
namespace {

std::string Message(const std::string& length_header, const std::string& body) {
  return "MESSAGE sip:1001@example.com SIP/2.0\r\n"
         "Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK1\r\n"
         "Content-Type: text/plain\r\n" +
         length_header + "\r\n\r\n" + body;
}

TEST(PingDetectorTest, CountsEachPingBetweenMessages) {
  PingDetector d;
  EXPECT_EQ(d.Feed("\r\n\r\n"), 1);
  EXPECT_EQ(d.Feed("\r\n\r\n\r\n\r\n"), 2);
  EXPECT_TRUE(d.AtMessageBoundary());
}

TEST(PingDetectorTest, PingSplitAcrossReads) {
  PingDetector d;
  EXPECT_EQ(d.Feed("\r\n"), 0);
  EXPECT_EQ(d.Feed("\r"), 0);
  EXPECT_EQ(d.Feed("\n"), 1);
}

TEST(PingDetectorTest, BlankLinesInABodyAreNoPings) {
  PingDetector d;
  const std::string body = "\r\n\r\n\r\n\r\nhello\r\n\r\n";
  EXPECT_EQ(d.Feed(Message("Content-Length: " + std::to_string(body.size()), body)), 0);
  EXPECT_TRUE(d.AtMessageBoundary());
  EXPECT_EQ(d.Feed("\r\n\r\n"), 1);
}

TEST(PingDetectorTest, PingRightAfterAMessageInTheSameRead) {
  PingDetector d;
  const std::string body = "\r\n\r\n";
  EXPECT_EQ(d.Feed(Message("Content-Length: 4", body) + "\r\n\r\n"), 1);
}

TEST(PingDetectorTest, CompactFormAndOddSpacing) {
  PingDetector d;
  EXPECT_EQ(d.Feed(Message("l :   6  ", "\r\n\r\n\r\n")), 0);
  EXPECT_TRUE(d.AtMessageBoundary());
  EXPECT_EQ(d.Feed(Message("CONTENT-LENGTH:2", "\r\n")), 0);
  EXPECT_TRUE(d.AtMessageBoundary());
}

TEST(PingDetectorTest, MessageSplitAnywhere) {
  const std::string body = "\r\n\r\n\r\n\r\n";
  const std::string stream =
      Message("Content-Length: 8", body) + "\r\n\r\n" + Message("Content-Length: 8", body);
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    PingDetector d;
    const int pings = d.Feed(stream.substr(0, cut)) + d.Feed(stream.substr(cut));
    EXPECT_EQ(pings, 1) << "cut at " << cut;
    EXPECT_TRUE(d.AtMessageBoundary()) << "cut at " << cut;
  }
}

TEST(PingDetectorTest, MidMessageIsNoBoundary) {
  PingDetector d;
  EXPECT_EQ(d.Feed("OPTIONS sip:x SIP/2.0\r\nContent-Length: 10\r\n"), 0);
  EXPECT_FALSE(d.AtMessageBoundary());
  EXPECT_EQ(d.Feed("\r\n\r\n\r\n\r\n\r\n"), 0);  // the end of the headers, then body bytes
  EXPECT_FALSE(d.AtMessageBoundary());
  EXPECT_EQ(d.Feed("\r\n"), 0);
  EXPECT_TRUE(d.AtMessageBoundary());
}

TEST(PingDetectorTest, NoContentLengthMeansNoBody) {
  PingDetector d;
  EXPECT_EQ(d.Feed("OPTIONS sip:x SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n\r\n\r\n"), 1);
}

TEST(PingDetectorTest, BareLineFeeds) {
  PingDetector d;
  EXPECT_EQ(d.Feed("OPTIONS sip:x SIP/2.0\nContent-Length: 2\n\n\n\n"), 0);
  EXPECT_TRUE(d.AtMessageBoundary());
}

}  // namespace
}  // namespace rwg::sip_edge
