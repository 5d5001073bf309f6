// A relay session: two legs, each a pair of UDP sockets, with SRTP state per direction.
// A session belongs to one worker thread, which alone touches its packet-path state; the
// counters are atomics the control plane may read at any time.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "services/media_relay/port_pool.h"
#include "services/media_relay/srtp.h"

namespace rwg::media_relay {

// A counter written by one thread only (plain loads and stores, no locked instruction) and
// read by others.
class Counter {
 public:
  void Add(uint64_t n) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }
  void Set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

enum class Drop : uint8_t { kForeignSource, kAuthFailure, kReplay, kMalformed, kNoDestination };
inline constexpr int kDropReasons = 5;
const char* DropName(Drop d);

struct LegCounters {
  Counter rtp_in_packets, rtp_in_bytes, rtp_out_packets, rtp_out_bytes;
  Counter rtcp_in_packets, rtcp_in_bytes, rtcp_out_packets, rtcp_out_bytes;
  std::array<Counter, kDropReasons> drops;
  // From the remote end's RTCP reports about what the relay sends it.
  Counter fraction_lost, cumulative_lost, jitter;
};

// What of a leg's counters the Prometheus totals already hold (read by the control side
// only).
struct LegCounted {
  uint64_t in_packets = 0, in_bytes = 0, out_packets = 0, out_bytes = 0;
  std::array<uint64_t, kDropReasons> drops{};
};

// A socket address that fits IPv4 and IPv6.
struct Address {
  sockaddr_storage ss{};
  socklen_t len = 0;

  bool empty() const { return len == 0; }
  bool operator==(const Address& o) const;
  std::string Host() const;
  int Port() const;
  static bool Parse(const std::string& host, int port, Address* out);
};

// Up to four SSRCs per direction whose SRTP state is persisted (rollover counters, SRTCP
// packets sent); more are relayed but not restored after a restart.
struct SsrcState {
  uint32_t ssrc = 0;
  uint32_t roc = 0;
  uint64_t srtcp_sent = 0;
  uint16_t last_seq = 0;
  bool used = false;
};
inline constexpr int kTrackedSsrcs = 4;

struct Leg {
  PortPair ports;
  SrtpSuite suite = SrtpSuite::kNone;
  std::string local_key;   // the relay's key: encrypts what the relay sends on this leg
  std::string remote_key;  // the remote's key: decrypts what the relay receives
  std::unique_ptr<SrtpContext> inbound;
  std::unique_ptr<SrtpContext> outbound;
  Address sdp_rtp, sdp_rtcp;          // from the control plane
  Address latched_rtp, latched_rtcp;  // learnt from packets
  std::array<SsrcState, kTrackedSsrcs> in_ssrcs, out_ssrcs;
  LegCounters counters;
  LegCounted counted;
  // Packet path: what the worker knows a socket by.
  struct Tag {
    struct Session* session;
    int leg;  // 0 set, 1 icp
    bool rtcp;
    uint32_t slot;  // io_uring: the worker's receive slot
  } rtp_tag{}, rtcp_tag{};
};

struct Session {
  std::string id;
  std::string call_id;
  absl::Time created;
  std::array<Leg, 2> legs;                 // 0 set side, 1 ICP side
  std::atomic<int64_t> last_packet_ns{0};  // unix ns of the last accepted packet, 0: none
  std::atomic<bool> idle{false};
  std::atomic<bool> dirty{false};  // SRTP/latch state changed since persisted
  int worker = 0;
};

}  // namespace rwg::media_relay
