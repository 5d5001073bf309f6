#include "services/media_relay/rtp.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace rwg::media_relay {
namespace {

// V=2, no padding/extension/CSRC, PT 0 (PCMU), seq 0x1234, ts 0xa0b0c0d0, SSRC 0xdeadbeef.
std::vector<uint8_t> Pcmu() {
  return {0x80, 0x00, 0x12, 0x34, 0xa0, 0xb0, 0xc0, 0xd0, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff};
}

// A receiver report: V=2, RC=0, PT 201, length 1, sender SSRC 0x01020304.
std::vector<uint8_t> ReceiverReport() { return {0x81, 201, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04}; }

TEST(RtpTest, RtcpIsRecognisedByTheSecondOctet) {
  for (int pt : {192, 193, 200, 201, 202, 203, 204, 205, 206, 207, 223}) {
    std::vector<uint8_t> p = ReceiverReport();
    p[1] = static_cast<uint8_t>(pt);
    EXPECT_TRUE(IsRtcp(p.data(), p.size())) << pt;
  }
  for (int second : {0, 8, 18, 96, 101, 127, 128 | 0, 128 | 8, 128 | 63, 128 | 96, 128 | 127}) {
    std::vector<uint8_t> p = Pcmu();
    p[1] = static_cast<uint8_t>(second);
    EXPECT_FALSE(IsRtcp(p.data(), p.size())) << second;
  }
  // Marker bit set on payload types 64..95 is what RFC 5761 rules out for RTP.
  std::vector<uint8_t> p = Pcmu();
  p[1] = 0x80 | 72;
  EXPECT_TRUE(IsRtcp(p.data(), p.size()));
}

TEST(RtpTest, RtcpCheckNeedsTwoOctets) {
  const uint8_t one[] = {0x80};
  EXPECT_FALSE(IsRtcp(one, 1));
  EXPECT_FALSE(IsRtcp(nullptr, 0));
  const uint8_t two[] = {0x80, 200};
  EXPECT_TRUE(IsRtcp(two, 2));
}

TEST(RtpTest, ReadsFixedHeaderFields) {
  std::vector<uint8_t> p = Pcmu();
  EXPECT_EQ(RtpSequence(p.data(), p.size()), 0x1234);
  EXPECT_EQ(RtpTimestamp(p.data(), p.size()), 0xa0b0c0d0u);
  EXPECT_EQ(RtpSsrc(p.data(), p.size()), 0xdeadbeefu);
  EXPECT_EQ(RtpPayloadType(p.data(), p.size()), 0);
  p[1] = 0x80 | 101;  // marker bit does not leak into the payload type
  EXPECT_EQ(RtpPayloadType(p.data(), p.size()), 101);
  p[2] = 0xff;
  p[3] = 0xfe;
  EXPECT_EQ(RtpSequence(p.data(), p.size()), 0xfffe);

  std::vector<uint8_t> rr = ReceiverReport();
  EXPECT_EQ(RtcpSsrc(rr.data(), rr.size()), 0x01020304u);
}

TEST(RtpTest, ShortPacketsHaveNoFields) {
  std::vector<uint8_t> p = Pcmu();
  for (size_t len = 0; len < kRtpHeaderSize; ++len) {
    EXPECT_FALSE(RtpSequence(p.data(), len).has_value()) << len;
    EXPECT_FALSE(RtpTimestamp(p.data(), len).has_value()) << len;
    EXPECT_FALSE(RtpSsrc(p.data(), len).has_value()) << len;
    EXPECT_FALSE(RtpPayloadType(p.data(), len).has_value()) << len;
    EXPECT_FALSE(IsValidRtp(p.data(), len)) << len;
  }
  EXPECT_TRUE(RtpSsrc(p.data(), kRtpHeaderSize).has_value());
  EXPECT_TRUE(IsValidRtp(p.data(), kRtpHeaderSize));

  std::vector<uint8_t> rr = ReceiverReport();
  for (size_t len = 0; len < kRtcpHeaderSize; ++len) {
    EXPECT_FALSE(RtcpSsrc(rr.data(), len).has_value()) << len;
    EXPECT_FALSE(IsValidRtcp(rr.data(), len)) << len;
  }
  EXPECT_TRUE(IsValidRtcp(rr.data(), kRtcpHeaderSize));
  EXPECT_FALSE(RtpSsrc(nullptr, 0).has_value());
  EXPECT_FALSE(IsValidRtp(nullptr, 0));
  EXPECT_FALSE(IsValidRtcp(nullptr, 0));
}

TEST(RtpTest, VersionOtherThanTwoIsInvalid) {
  std::vector<uint8_t> p = Pcmu();
  for (uint8_t version : {0, 1, 3}) {
    p[0] = static_cast<uint8_t>(version << 6);
    EXPECT_FALSE(IsValidRtp(p.data(), p.size())) << int{version};
  }
  std::vector<uint8_t> rr = ReceiverReport();
  rr[0] = 0x41;
  EXPECT_FALSE(IsValidRtcp(rr.data(), rr.size()));
}

TEST(RtpTest, HeaderSizeCountsCsrcsAndExtension) {
  std::vector<uint8_t> p = Pcmu();  // 12-byte header + 2 payload bytes
  EXPECT_EQ(RtpHeaderSize(p.data(), p.size()), 12u);

  // Two CSRCs: 20-byte header; the packet must hold them.
  p[0] = 0x82;
  EXPECT_FALSE(RtpHeaderSize(p.data(), p.size()).has_value());
  p.resize(20, 0);
  EXPECT_EQ(RtpHeaderSize(p.data(), p.size()), 20u);

  // Extension after the CSRCs: profile 0xbede, length 2 words -> 20 + 4 + 8 = 32.
  p[0] = 0x92;
  EXPECT_FALSE(RtpHeaderSize(p.data(), p.size()).has_value());  // no room for its header
  p.insert(p.end(), {0xbe, 0xde, 0x00, 0x02});
  EXPECT_FALSE(RtpHeaderSize(p.data(), p.size()).has_value());  // words missing
  p.resize(31, 0);
  EXPECT_FALSE(RtpHeaderSize(p.data(), p.size()).has_value());
  p.resize(32, 0);
  EXPECT_EQ(RtpHeaderSize(p.data(), p.size()), 32u);
}

TEST(RtpTest, CsrcCountLargerThanThePacketIsInvalid) {
  std::vector<uint8_t> p = Pcmu();
  p[0] = 0x8f;  // 15 CSRCs = 72-byte header in a 14-byte packet
  EXPECT_FALSE(IsValidRtp(p.data(), p.size()));
  p.resize(12 + 60, 0);
  EXPECT_TRUE(IsValidRtp(p.data(), p.size()));
}

}  // namespace
}  // namespace rwg::media_relay
