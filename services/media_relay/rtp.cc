#include "services/media_relay/rtp.h"

namespace rwg::media_relay {
namespace {

uint16_t ReadU16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

uint32_t ReadU32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

uint8_t Version(const uint8_t* buf) { return buf[0] >> 6; }

}  // namespace

bool IsRtcp(const uint8_t* buf, size_t len) {
  if (buf == nullptr || len < 2) return false;
  return buf[1] >= 192 && buf[1] <= 223;
}

std::optional<size_t> RtpHeaderSize(const uint8_t* buf, size_t len) {
  if (buf == nullptr || len < kRtpHeaderSize || Version(buf) != kRtpVersion) return std::nullopt;
  const size_t csrc_count = buf[0] & 0x0f;
  size_t size = kRtpHeaderSize + 4 * csrc_count;
  if (size > len) return std::nullopt;
  if (buf[0] & 0x10) {
    // Header extension: 16-bit profile, 16-bit length in 32-bit words, then the words.
    if (size + 4 > len) return std::nullopt;
    size += 4 + 4 * static_cast<size_t>(ReadU16(buf + size + 2));
    if (size > len) return std::nullopt;
  }
  return size;
}

bool IsValidRtcp(const uint8_t* buf, size_t len) {
  return buf != nullptr && len >= kRtcpHeaderSize && Version(buf) == kRtpVersion;
}

std::optional<uint16_t> RtpSequence(const uint8_t* buf, size_t len) {
  if (buf == nullptr || len < kRtpHeaderSize) return std::nullopt;
  return ReadU16(buf + 2);
}

std::optional<uint32_t> RtpTimestamp(const uint8_t* buf, size_t len) {
  if (buf == nullptr || len < kRtpHeaderSize) return std::nullopt;
  return ReadU32(buf + 4);
}

std::optional<uint32_t> RtpSsrc(const uint8_t* buf, size_t len) {
  if (buf == nullptr || len < kRtpHeaderSize) return std::nullopt;
  return ReadU32(buf + 8);
}

std::optional<uint8_t> RtpPayloadType(const uint8_t* buf, size_t len) {
  if (buf == nullptr || len < kRtpHeaderSize) return std::nullopt;
  return static_cast<uint8_t>(buf[1] & 0x7f);
}

std::optional<uint32_t> RtcpSsrc(const uint8_t* buf, size_t len) {
  if (buf == nullptr || len < kRtcpHeaderSize) return std::nullopt;
  return ReadU32(buf + 4);
}

}  // namespace rwg::media_relay
