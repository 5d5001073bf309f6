// RTP and RTCP header checks for the media relay (RFC 3550, RFC 5761). Every function reads
// only inside [buf, buf + len), accepts any length (including 0) and never allocates: they run
// on every packet the relay receives, from untrusted sources.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace rwg::media_relay {

// Fixed RTP header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
inline constexpr size_t kRtpHeaderSize = 12;
// RTCP common header plus the sender SSRC.
inline constexpr size_t kRtcpHeaderSize = 8;
inline constexpr uint8_t kRtpVersion = 2;
// Largest packet the relay processes (the largest UDP payload is smaller still).
inline constexpr size_t kMaxPacketSize = 65535;

// True when the packet is RTCP rather than RTP on a port carrying both (RFC 5761 §4): the
// second octet, RTCP packet type or RTP marker bit plus payload type, is in 192..223.
bool IsRtcp(const uint8_t* buf, size_t len);

// Size of the RTP header including its CSRC list and header extension, or nullopt when the
// version is not 2 or the header does not fit in `len` octets.
std::optional<size_t> RtpHeaderSize(const uint8_t* buf, size_t len);
// A version 2 RTP packet whose whole header fits in `len` octets.
inline bool IsValidRtp(const uint8_t* buf, size_t len) {
  return RtpHeaderSize(buf, len).has_value();
}
// A version 2 RTCP packet at least as long as the common header and sender SSRC.
bool IsValidRtcp(const uint8_t* buf, size_t len);

// Fields of the fixed RTP header; nullopt when `len` is shorter than kRtpHeaderSize.
std::optional<uint16_t> RtpSequence(const uint8_t* buf, size_t len);
std::optional<uint32_t> RtpTimestamp(const uint8_t* buf, size_t len);
std::optional<uint32_t> RtpSsrc(const uint8_t* buf, size_t len);
std::optional<uint8_t> RtpPayloadType(const uint8_t* buf, size_t len);

// Sender SSRC of the first packet of an RTCP compound packet; nullopt when `len` is shorter
// than kRtcpHeaderSize.
std::optional<uint32_t> RtcpSsrc(const uint8_t* buf, size_t len);

}  // namespace rwg::media_relay
