// The test traffic of rwg-media-peer: G.711-sized RTP packets whose payload says which stream,
// direction and packet it is and when it was sent, followed by a pattern that depends on all
// three, so the receiver can tell lost, duplicated, reordered, corrupted and foreign packets
// apart; RTCP sender reports; and the counters and latency histogram of one direction.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "nlohmann/json.hpp"

namespace rwg::media_peer {

enum Direction : uint8_t {
  kSetToIcp = 0,  // phone → relay → iPBX
  kIcpToSet = 1,  // iPBX → relay → phone
};
const char* DirectionName(Direction d);

// Payload prefix: magic, stream, packet index, direction, flags, send time (CLOCK_MONOTONIC).
inline constexpr size_t kPayloadHeaderSize = 24;
inline constexpr uint8_t kPayloadType = 0;  // PCMU
// Flag of packets a third party sends to the relay in the phone's name.
inline constexpr uint8_t kFlagSpoofed = 0x01;

// One direction of one stream, as both ends know it.
struct StreamParams {
  uint32_t stream = 0;
  Direction direction = kSetToIcp;
  uint32_t ssrc = 0;
  uint16_t first_seq = 0;
  uint32_t first_timestamp = 0;
  uint32_t timestamp_step = 160;
  size_t payload_bytes = 160;
};

// Writes packet `index` of the stream into `buf` (room for 12 + payload_bytes octets) and
// returns its length. The sequence number is first_seq + index + seq_offset (mod 2^16).
size_t BuildRtp(const StreamParams& p, uint32_t index, int64_t sent_ns, uint8_t flags,
                uint16_t seq_offset, uint8_t* buf);

struct RtpCheck {
  enum class Kind {
    kOurs,     // a packet of this stream and direction (maybe damaged, see the flags)
    kSpoofed,  // a spoofed copy
    kForeign,  // not recognisably this stream's: other stream, garbage, not PT 0
  };
  Kind kind = Kind::kForeign;
  uint32_t index = 0;
  int64_t sent_ns = 0;
  bool payload_ok = false;  // payload length and every payload octet as sent
  bool header_ok = false;   // SSRC, sequence number, timestamp and PT as sent
};
// Checks a decrypted RTP packet against what `p` sends.
RtpCheck CheckRtp(const StreamParams& p, const uint8_t* pkt, size_t len);

// An RTCP compound packet, sender report plus SDES CNAME, for the stream of `p` after
// `packets` packets. Returns its length; `buf` needs 64 octets.
size_t BuildRtcpSr(const StreamParams& p, uint32_t packets, uint8_t* buf);
// A decrypted RTCP packet that starts with a sender report from the SSRC of `p`.
bool CheckRtcpSr(const StreamParams& p, const uint8_t* pkt, size_t len);

// Log-linear histogram of non-negative nanosecond values, about 3% resolution.
class Histogram {
 public:
  void Add(int64_t ns);
  void Merge(const Histogram& other);
  uint64_t count() const { return count_; }
  int64_t max() const { return max_; }
  double mean() const {
    return count_ == 0 ? 0 : static_cast<double>(sum_) / static_cast<double>(count_);
  }
  // The value at quantile q (0..1), e.g. 0.99; 0 when empty.
  int64_t Quantile(double q) const;

 private:
  static constexpr size_t kBuckets = 64 + 58 * 32;
  static size_t Bucket(uint64_t v);
  static uint64_t BucketMid(size_t b);

  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  int64_t max_ = 0;
  __int128 sum_ = 0;
};

// What happened to one direction, over all streams.
struct DirectionStats {
  uint64_t sent = 0;
  uint64_t send_errors = 0;
  uint64_t received = 0;  // distinct packets, damaged or not
  uint64_t duplicated = 0;
  uint64_t out_of_order = 0;
  uint64_t corrupted = 0;        // payload not identical
  uint64_t header_mismatch = 0;  // SSRC / sequence number / timestamp / PT changed
  uint64_t srtp_errors = 0;      // failed to decrypt or authenticate
  uint64_t foreign = 0;          // not this stream's packets, or RTCP on the RTP port
  uint64_t wrong_source = 0;     // from another address than the one this end sends to
  uint64_t spoofed_received = 0;
  uint64_t rtcp_sent = 0;
  uint64_t rtcp_received = 0;
  uint64_t rtcp_bad = 0;  // failed SRTCP, or not the expected sender report
  uint64_t streams_with_loss = 0;
  Histogram latency;

  void Merge(const DirectionStats& other);
  uint64_t lost() const { return sent > received ? sent - received : 0; }
  nlohmann::json ToJson() const;
};

}  // namespace rwg::media_peer
