// The two ends of every test call (the phone and the iPBX) and the traffic between them, played
// by one thread: it paces all streams' packets to absolute deadlines and, between them,
// receives on every socket with epoll + recvmmsg, decrypts and checks what arrives.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "services/media_relay/srtp.h"
#include "tools/media-peer/net.h"
#include "tools/media-peer/relay_control.h"
#include "tools/media-peer/traffic.h"

namespace rwg::media_peer {

struct PeerOptions {
  uint32_t packets = 500;  // per direction per stream
  int64_t interval_ns = 20'000'000;
  uint32_t rtcp_every = 50;    // 0: no RTCP
  uint32_t spoof_after = 100;  // phone packets before the spoofer (if any) starts
  int64_t drain_ns = 1'000'000'000;
  double rate_report_s = 0;  // 0: no progress lines
  // Poll the sockets without ever sleeping (a core of its own at 100%): the relay under test
  // then never pays for waking the peer, and receive times are not delayed by the peer's own
  // wake-ups.
  bool busy_poll = false;
};

// One test call: its sockets, what the relay said, and the state of each end.
struct Stream {
  int id = 0;
  RtpSocketPair phone;
  RtpSocketPair ipbx;
  StreamPlan plan;
  Allocation allocation;
  bool allocated = false;
  StreamParams params[2];  // indexed by Direction

  // out[kSetToIcp] is the phone's, out[kIcpToSet] the iPBX's.
  std::unique_ptr<media_relay::SrtpContext> out[2];
  std::unique_ptr<media_relay::SrtpContext> spoof_out;  // with --spoof only
  uint32_t sent_count[2] = {0, 0};
  // in[kSetToIcp] is the iPBX's (what the relay sends it),
  // in[kIcpToSet] the phone's.
  std::unique_ptr<media_relay::SrtpContext> in[2];
  std::vector<uint64_t> seen[2];  // bitmap of packet indexes received
  int64_t highest[2] = {-1, -1};
};

// Builds the crypto contexts of a stream from its plan and allocation (the spoofer's only
// with `spoof`: every live SRTP context makes libsrtp's protect slower with some backends).
absl::Status PrepareStream(Stream& s, uint32_t packets, bool spoof);

struct RunResult {
  DirectionStats dir[2];
  uint64_t spoofed_sent = 0;
  uint64_t spoof_socket_received = 0;  // media the relay sent to the spoofer
  int64_t send_late_max_ns = 0;        // worst lateness of the sender against its schedule
  uint64_t send_late_packets = 0;      // packets sent more than one interval late
  double elapsed_s = 0;
  bool interrupted = false;
};

// Runs the traffic of all streams; returns when everything sent has arrived or the drain
// time after the last packet has passed. `stop` ends sending early (signals).
absl::StatusOr<RunResult> RunTraffic(const PeerOptions& options,
                                     std::vector<std::unique_ptr<Stream>>& streams,
                                     UdpSocket* spoofer, const std::atomic<bool>& stop);

}  // namespace rwg::media_peer
