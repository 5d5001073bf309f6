// The media peer judges the relay's integrity tests: a packet changed anywhere must be seen.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "tools/media-peer/traffic.h"

namespace rwg::media_peer {
namespace {

StreamParams Params(size_t payload_bytes) {
  StreamParams p;
  p.stream = 7;
  p.direction = kIcpToSet;
  p.ssrc = 0x11223344;
  p.first_seq = 65530;  // wraps within the test's packets
  p.first_timestamp = 0xfffff000;
  p.payload_bytes = payload_bytes;
  return p;
}

std::vector<uint8_t> Packet(const StreamParams& p, uint32_t index, uint8_t flags = 0) {
  std::vector<uint8_t> buf(12 + p.payload_bytes);
  buf.resize(BuildRtp(p, index, 123456789, flags, 0, buf.data()));
  return buf;
}

TEST(MediaPeerTrafficTest, WhatIsSentChecksOutWithItsIndexAndSendTime) {
  for (size_t payload : {24u, 25u, 160u, 150u, 1200u}) {
    const StreamParams p = Params(payload);
    for (uint32_t index : {0u, 5u, 6u, 499u}) {
      const std::vector<uint8_t> pkt = Packet(p, index);
      ASSERT_EQ(pkt.size(), 12 + payload);
      const RtpCheck c = CheckRtp(p, pkt.data(), pkt.size());
      EXPECT_EQ(c.kind, RtpCheck::Kind::kOurs);
      EXPECT_EQ(c.index, index);
      EXPECT_EQ(c.sent_ns, 123456789);
      EXPECT_TRUE(c.payload_ok) << payload << " " << index;
      EXPECT_TRUE(c.header_ok) << payload << " " << index;
    }
  }
}

TEST(MediaPeerTrafficTest, AnyChangedPayloadOctetIsCorruption) {
  // 160: the pattern fills whole 8-octet steps; 150: it ends with a partial one.
  for (size_t payload : {160u, 150u}) {
    const StreamParams p = Params(payload);
    const std::vector<uint8_t> good = Packet(p, 42);
    for (size_t at = 12 + kPayloadHeaderSize; at < good.size(); ++at) {
      std::vector<uint8_t> bad = good;
      bad[at] ^= 0x01;
      const RtpCheck c = CheckRtp(p, bad.data(), bad.size());
      EXPECT_EQ(c.kind, RtpCheck::Kind::kOurs);
      EXPECT_FALSE(c.payload_ok) << "payload " << payload << ", octet " << at;
      EXPECT_TRUE(c.header_ok);
    }
    std::vector<uint8_t> shorter = good;
    shorter.pop_back();
    EXPECT_FALSE(CheckRtp(p, shorter.data(), shorter.size()).payload_ok);
  }
}

TEST(MediaPeerTrafficTest, EachPacketHasItsOwnPattern) {
  const StreamParams p = Params(160);
  std::vector<uint8_t> a = Packet(p, 1);
  const std::vector<uint8_t> b = Packet(p, 2);
  // Packet 2's payload under packet 1's header: the pattern does not match index 1.
  std::copy(b.begin() + 12 + kPayloadHeaderSize, b.end(), a.begin() + 12 + kPayloadHeaderSize);
  EXPECT_FALSE(CheckRtp(p, a.data(), a.size()).payload_ok);
}

TEST(MediaPeerTrafficTest, ChangedHeaderFieldsAreSeen) {
  const StreamParams p = Params(160);
  const std::vector<uint8_t> good = Packet(p, 9);
  for (size_t at : {2u, 3u, 4u, 7u, 8u, 11u}) {  // sequence number, timestamp, SSRC
    std::vector<uint8_t> bad = good;
    bad[at] ^= 0x10;
    const RtpCheck c = CheckRtp(p, bad.data(), bad.size());
    EXPECT_FALSE(c.header_ok) << "octet " << at;
    EXPECT_TRUE(c.payload_ok);
  }
}

TEST(MediaPeerTrafficTest, OtherStreamsDirectionsAndSpoofedCopiesAreToldApart) {
  const StreamParams p = Params(160);
  StreamParams other = p;
  other.stream = 8;
  const std::vector<uint8_t> theirs = Packet(other, 3);
  EXPECT_EQ(CheckRtp(p, theirs.data(), theirs.size()).kind, RtpCheck::Kind::kForeign);
  StreamParams reverse = p;
  reverse.direction = kSetToIcp;
  const std::vector<uint8_t> back = Packet(reverse, 3);
  EXPECT_EQ(CheckRtp(p, back.data(), back.size()).kind, RtpCheck::Kind::kForeign);
  const std::vector<uint8_t> spoofed = Packet(p, 3, kFlagSpoofed);
  EXPECT_EQ(CheckRtp(p, spoofed.data(), spoofed.size()).kind, RtpCheck::Kind::kSpoofed);
  const uint8_t junk[40] = {0x80, 0};
  EXPECT_EQ(CheckRtp(p, junk, sizeof(junk)).kind, RtpCheck::Kind::kForeign);
}

TEST(MediaPeerTrafficTest, RtcpSenderReportNamesItsSource) {
  const StreamParams p = Params(160);
  uint8_t buf[64];
  const size_t len = BuildRtcpSr(p, 50, buf);
  EXPECT_EQ(len % 4, 0u);
  EXPECT_TRUE(CheckRtcpSr(p, buf, len));
  StreamParams other = p;
  other.ssrc = 1;
  EXPECT_FALSE(CheckRtcpSr(other, buf, len));
}

TEST(MediaPeerTrafficTest, HistogramQuantiles) {
  Histogram h;
  for (int i = 1; i <= 1000; ++i) h.Add(i * 1000);  // 1..1000 µs
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.max(), 1000000);
  EXPECT_NEAR(static_cast<double>(h.Quantile(0.5)), 500000, 500000 * 0.04);
  EXPECT_NEAR(static_cast<double>(h.Quantile(0.99)), 990000, 990000 * 0.04);
}

}  // namespace
}  // namespace rwg::media_peer
