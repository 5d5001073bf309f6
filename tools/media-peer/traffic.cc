#include "tools/media-peer/traffic.h"

#include <arpa/inet.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "services/media_relay/rtp.h"

namespace rwg::media_peer {
namespace {

constexpr uint32_t kMagic = 0x5257474d;  // "RWGM"
constexpr char kCname[] = "rwg-media-peer";

void Put16(uint8_t* p, uint16_t v) {
  v = htons(v);
  std::memcpy(p, &v, 2);
}
void Put32(uint8_t* p, uint32_t v) {
  v = htonl(v);
  std::memcpy(p, &v, 4);
}
void Put64(uint8_t* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v >> 32));
  Put32(p + 4, static_cast<uint32_t>(v));
}
uint16_t Get16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return ntohs(v);
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}
uint64_t Get64(const uint8_t* p) { return (static_cast<uint64_t>(Get32(p)) << 32) | Get32(p + 4); }

// The payload after the prefix: a xorshift sequence seeded by stream, direction and index.
uint64_t PatternSeed(const StreamParams& p, uint32_t index) {
  uint64_t x =
      (static_cast<uint64_t>(p.stream) << 33) ^ (static_cast<uint64_t>(p.direction) << 32) ^ index;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return (x ^ (x >> 31)) | 1;
}

uint64_t NextPatternWord(uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

// Writes the pattern of `seed` into out[0..n), eight octets per step.
void FillPattern(uint64_t seed, uint8_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t w = NextPatternWord(seed);
    std::memcpy(out + i, &w, 8);
  }
  if (i < n) {
    const uint64_t w = NextPatternWord(seed);
    std::memcpy(out + i, &w, n - i);
  }
}

// Whether in[0..n) is the pattern of `seed`.
bool IsPattern(uint64_t seed, const uint8_t* in, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t w = NextPatternWord(seed);
    if (std::memcmp(in + i, &w, 8) != 0) return false;
  }
  if (i < n) {
    const uint64_t w = NextPatternWord(seed);
    if (std::memcmp(in + i, &w, n - i) != 0) return false;
  }
  return true;
}

}  // namespace

const char* DirectionName(Direction d) { return d == kSetToIcp ? "set_to_icp" : "icp_to_set"; }

size_t BuildRtp(const StreamParams& p, uint32_t index, int64_t sent_ns, uint8_t flags,
                uint16_t seq_offset, uint8_t* buf) {
  buf[0] = 0x80;                                                          // V=2
  buf[1] = static_cast<uint8_t>((index == 0 ? 0x80 : 0) | kPayloadType);  // marker on the first
  Put16(buf + 2, static_cast<uint16_t>(p.first_seq + index + seq_offset));
  Put32(buf + 4, p.first_timestamp + index * p.timestamp_step);
  Put32(buf + 8, p.ssrc);
  uint8_t* pl = buf + media_relay::kRtpHeaderSize;
  Put32(pl, kMagic);
  Put32(pl + 4, p.stream);
  Put32(pl + 8, index);
  pl[12] = p.direction;
  pl[13] = flags;
  Put16(pl + 14, 0);
  Put64(pl + 16, static_cast<uint64_t>(sent_ns));
  if (p.payload_bytes > kPayloadHeaderSize) {
    FillPattern(PatternSeed(p, index), pl + kPayloadHeaderSize,
                p.payload_bytes - kPayloadHeaderSize);
  }
  return media_relay::kRtpHeaderSize + p.payload_bytes;
}

RtpCheck CheckRtp(const StreamParams& p, const uint8_t* pkt, size_t len) {
  RtpCheck c;
  const std::optional<size_t> header = media_relay::RtpHeaderSize(pkt, len);
  if (!header.has_value() || len - *header < kPayloadHeaderSize) return c;
  const uint8_t* pl = pkt + *header;
  const size_t pl_len = len - *header;
  if (Get32(pl) != kMagic || Get32(pl + 4) != p.stream || pl[12] != p.direction) return c;
  c.index = Get32(pl + 8);
  c.sent_ns = static_cast<int64_t>(Get64(pl + 16));
  const uint8_t flags = pl[13];
  c.kind = (flags & kFlagSpoofed) != 0 ? RtpCheck::Kind::kSpoofed : RtpCheck::Kind::kOurs;

  // RTP padding (P bit) is not part of the payload.
  size_t data_len = pl_len;
  if ((pkt[0] & 0x20) != 0 && pl_len > 0 && pkt[len - 1] <= pl_len) data_len -= pkt[len - 1];
  c.payload_ok = data_len == p.payload_bytes && Get16(pl + 14) == 0;
  if (c.payload_ok && p.payload_bytes > kPayloadHeaderSize) {
    c.payload_ok = IsPattern(PatternSeed(p, c.index), pl + kPayloadHeaderSize,
                             p.payload_bytes - kPayloadHeaderSize);
  }
  const uint16_t seq = static_cast<uint16_t>(p.first_seq + c.index);
  c.header_ok = (pkt[1] & 0x7f) == kPayloadType && Get32(pkt + 8) == p.ssrc &&
                Get32(pkt + 4) == p.first_timestamp + c.index * p.timestamp_step &&
                (c.kind == RtpCheck::Kind::kSpoofed || Get16(pkt + 2) == seq);
  return c;
}

size_t BuildRtcpSr(const StreamParams& p, uint32_t packets, uint8_t* buf) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  // NTP time: seconds since 1900 and a 32-bit binary fraction.
  const uint64_t ntp_sec = static_cast<uint64_t>(now.tv_sec) + 2208988800ULL;
  const uint64_t ntp_frac = (static_cast<uint64_t>(now.tv_nsec) << 32) / 1000000000ULL;
  buf[0] = 0x80;  // V=2, no reception reports
  buf[1] = 200;   // SR
  Put16(buf + 2, 6);
  Put32(buf + 4, p.ssrc);
  Put32(buf + 8, static_cast<uint32_t>(ntp_sec));
  Put32(buf + 12, static_cast<uint32_t>(ntp_frac));
  Put32(buf + 16, p.first_timestamp + packets * p.timestamp_step);
  Put32(buf + 20, packets);
  Put32(buf + 24, static_cast<uint32_t>(packets * p.payload_bytes));
  // SDES with one chunk: SSRC, CNAME item, END, padding to a 32-bit boundary.
  uint8_t* sdes = buf + 28;
  const size_t cname_len = sizeof(kCname) - 1;
  size_t chunk = 4 + 2 + cname_len + 1;
  chunk = (chunk + 3) & ~size_t{3};
  sdes[0] = 0x81;  // V=2, one chunk
  sdes[1] = 202;   // SDES
  Put16(sdes + 2, static_cast<uint16_t>((4 + chunk) / 4 - 1));
  Put32(sdes + 4, p.ssrc);
  sdes[8] = 1;  // CNAME
  sdes[9] = static_cast<uint8_t>(cname_len);
  std::memcpy(sdes + 10, kCname, cname_len);
  std::memset(sdes + 10 + cname_len, 0, chunk - 6 - cname_len);
  return 28 + 4 + chunk;
}

bool CheckRtcpSr(const StreamParams& p, const uint8_t* pkt, size_t len) {
  return len >= 28 && (pkt[0] >> 6) == 2 && pkt[1] == 200 && Get32(pkt + 4) == p.ssrc;
}

size_t Histogram::Bucket(uint64_t v) {
  if (v < 64) return static_cast<size_t>(v);
  const int msb = 63 - __builtin_clzll(v);
  const int shift = msb - 5;  // keeps 6 significant bits: 32..63
  return 64 + static_cast<size_t>(shift - 1) * 32 + static_cast<size_t>((v >> shift) - 32);
}

uint64_t Histogram::BucketMid(size_t b) {
  if (b < 64) return b;
  const size_t shift = (b - 64) / 32 + 1;
  const uint64_t m = (b - 64) % 32 + 32;
  return (m << shift) + ((uint64_t{1} << shift) >> 1);
}

void Histogram::Add(int64_t ns) {
  if (ns < 0) ns = 0;
  ++buckets_[Bucket(static_cast<uint64_t>(ns))];
  ++count_;
  sum_ += ns;
  if (ns > max_) max_ = ns;
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  if (other.max_ > max_) max_ = other.max_;
}

int64_t Histogram::Quantile(double q) const {
  if (count_ == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min<int64_t>(static_cast<int64_t>(BucketMid(i)), max_);
  }
  return max_;
}

void DirectionStats::Merge(const DirectionStats& o) {
  sent += o.sent;
  send_errors += o.send_errors;
  received += o.received;
  duplicated += o.duplicated;
  out_of_order += o.out_of_order;
  corrupted += o.corrupted;
  header_mismatch += o.header_mismatch;
  srtp_errors += o.srtp_errors;
  foreign += o.foreign;
  wrong_source += o.wrong_source;
  spoofed_received += o.spoofed_received;
  rtcp_sent += o.rtcp_sent;
  rtcp_received += o.rtcp_received;
  rtcp_bad += o.rtcp_bad;
  streams_with_loss += o.streams_with_loss;
  latency.Merge(o.latency);
}

nlohmann::json DirectionStats::ToJson() const {
  auto us = [](double ns) { return std::round(ns / 100.0) / 10.0; };  // 0.1 us
  return {
      {"sent", sent},
      {"received", received},
      {"lost", lost()},
      {"loss_fraction", sent == 0 ? 0.0 : static_cast<double>(lost()) / static_cast<double>(sent)},
      {"duplicated", duplicated},
      {"out_of_order", out_of_order},
      {"corrupted", corrupted},
      {"header_mismatch", header_mismatch},
      {"srtp_errors", srtp_errors},
      {"foreign", foreign},
      {"wrong_source", wrong_source},
      {"send_errors", send_errors},
      {"spoofed_received", spoofed_received},
      {"streams_with_loss", streams_with_loss},
      {"rtcp_sent", rtcp_sent},
      {"rtcp_received", rtcp_received},
      {"rtcp_bad", rtcp_bad},
      {"latency_us",
       {{"samples", latency.count()},
        {"mean", us(latency.mean())},
        {"p50", us(static_cast<double>(latency.Quantile(0.50)))},
        {"p90", us(static_cast<double>(latency.Quantile(0.90)))},
        {"p99", us(static_cast<double>(latency.Quantile(0.99)))},
        {"p999", us(static_cast<double>(latency.Quantile(0.999)))},
        {"max", us(static_cast<double>(latency.max()))}}},
  };
}

}  // namespace rwg::media_peer
