#include "tools/media-peer/peer.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/media_relay/rtp.h"

namespace rwg::media_peer {
namespace {

using media_relay::SrtpContext;
using media_relay::SrtpResult;

// Spoofed copies run this far ahead of the phone's sequence numbers, as an attacker who wants
// the relay to take its packets over the phone's would send them.
constexpr uint16_t kSpoofSeqOffset = 0x4000;
constexpr size_t kBatch = 64;
constexpr size_t kBufSize = 2048;
constexpr size_t kControlSize = 64;
constexpr int kMaxEvents = 256;
// The sender sleeps only when its next deadline is further away than this; closer packets
// go out at once. 1% of a 20 ms interval: even enough, and with many streams it saves a
// wake-up per packet.
constexpr int64_t kSleepThresholdNs = 200'000;

enum Role : uint8_t { kPhoneRtp, kPhoneRtcp, kIpbxRtp, kIpbxRtcp, kSpoofer };

int64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
int64_t MonoNs() { return ClockNs(CLOCK_MONOTONIC); }

// One thread plays every end: it sends each stream's packets at their deadlines and, between
// them, receives on every socket (epoll + recvmmsg), decrypts and checks what arrives. With
// `busy_poll` it never sleeps (it polls the sockets without waiting), so a relay never pays for
// waking it: on loopback the relay's send runs the receiver's wake-up, which on a real network
// would be the far machine's business. Without, it waits for packets until the next deadline.
class Traffic {
 public:
  Traffic(const PeerOptions& options, std::vector<std::unique_ptr<Stream>>& streams,
          UdpSocket* spoofer, const std::atomic<bool>& stop)
      : options_(options), streams_(streams), spoofer_(spoofer), stop_(stop) {}

  ~Traffic() {
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }

  absl::Status Init() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
    for (size_t i = 0; i < streams_.size(); ++i) {
      Stream& s = *streams_[i];
      if (absl::Status st = Add(s.phone.rtp, &s, kPhoneRtp); !st.ok()) return st;
      if (absl::Status st = Add(s.phone.rtcp, &s, kPhoneRtcp); !st.ok()) return st;
      if (absl::Status st = Add(s.ipbx.rtp, &s, kIpbxRtp); !st.ok()) return st;
      if (absl::Status st = Add(s.ipbx.rtcp, &s, kIpbxRtcp); !st.ok()) return st;
    }
    if (spoofer_ != nullptr) {
      if (absl::Status st = Add(*spoofer_, nullptr, kSpoofer); !st.ok()) return st;
    }
    for (size_t i = 0; i < kBatch; ++i) {
      iov_[i] = iovec{bufs_[i], kBufSize};
    }
    return absl::OkStatus();
  }

  void Run(int64_t start_ns) {
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // 1 µs: wake close to each deadline
    const int64_t n = static_cast<int64_t>(streams_.size());
    // Sends go out from this far before their deadline; with a busy poll, at the deadline.
    const int64_t early_ns = options_.busy_poll ? 0 : kSleepThresholdNs;
    uint32_t k = 0;  // packet index
    int64_t i = 0;   // stream
    bool sending = options_.packets > 0 && n > 0;
    int64_t drain_deadline = sending ? INT64_MAX : MonoNs() + options_.drain_ns;
    uint64_t expected_rtp = 0;
    uint64_t expected_rtcp = 0;
    Progress progress(options_.rate_report_s, start_ns);
    epoll_event events[kMaxEvents];
    while (true) {
      int64_t now = MonoNs();
      int64_t next_deadline = INT64_MAX;
      while (sending) {
        const int64_t deadline = start_ns + static_cast<int64_t>(k) * options_.interval_ns +
                                 i * options_.interval_ns / n;
        if (deadline - now > early_ns) {
          next_deadline = deadline;
          break;
        }
        const int64_t late = now - deadline;
        if (late > late_max_ns_) late_max_ns_ = late;
        if (late > options_.interval_ns) ++late_packets_;
        SendPacketsOf(*streams_[static_cast<size_t>(i)], k);
        if (++i == n) {
          i = 0;
          if (++k == options_.packets || stop_.load(std::memory_order_relaxed)) {
            sending = false;
            for (const DirectionStats& d : stats) {
              expected_rtp += d.sent;
              expected_rtcp += d.rtcp_sent;
            }
            drain_deadline = MonoNs() + options_.drain_ns;
          }
        }
        now = MonoNs();
      }
      // Wait for packets until the next send (busy poll: not at all), or while draining
      // until the drain deadline, in steps that keep the progress lines coming.
      timespec timeout{0, 0};
      if (!options_.busy_poll) {
        const int64_t until = std::min(
            {sending ? next_deadline : drain_deadline, now + kMaxWaitNs, progress.next_ns()});
        const int64_t wait = std::max<int64_t>(0, until - now);
        timeout = timespec{static_cast<time_t>(wait / 1'000'000'000),
                           static_cast<long>(wait % 1'000'000'000)};
      }
      const int ready = epoll_pwait2(epoll_fd_, events, kMaxEvents, &timeout, nullptr);
      if (ready > 0) {
        // Kernel receive timestamps are CLOCK_REALTIME; the payload's send times monotonic.
        const int64_t realtime_offset = ClockNs(CLOCK_REALTIME) - MonoNs();
        for (int e = 0; e < ready; ++e) DrainSocket(events[e].data.u64, realtime_offset);
      }
      progress.Report(MonoNs(), sent_total(), received_);
      if (!sending && ((received_ >= expected_rtp && rtcp_received_ >= expected_rtcp) ||
                       MonoNs() >= drain_deadline)) {
        break;
      }
    }
  }

  DirectionStats stats[2];
  uint64_t spoofed_sent = 0;
  uint64_t spoof_socket_received = 0;

  int64_t late_max_ns() const { return late_max_ns_; }
  uint64_t late_packets() const { return late_packets_; }

 private:
  // The longest single wait: keeps the loop looking at `stop` and the drain deadline.
  static constexpr int64_t kMaxWaitNs = 20'000'000;

  // Progress lines on stderr every `every_s` seconds (0: none).
  class Progress {
   public:
    Progress(double every_s, int64_t start_ns)
        : every_ns_(static_cast<int64_t>(every_s * 1e9)),
          start_ns_(start_ns),
          last_ns_(start_ns),
          next_ns_(every_ns_ > 0 ? start_ns + every_ns_ : INT64_MAX) {}
    int64_t next_ns() const { return next_ns_; }
    void Report(int64_t now, uint64_t sent, uint64_t received) {
      if (now < next_ns_) return;
      const double dt = static_cast<double>(now - last_ns_) / 1e9;
      std::cerr << absl::StrFormat(
          "rwg-media-peer: %6.1f s  sent %llu (%.0f/s)  received %llu (%.0f/s)  in flight or "
          "lost %lld\n",
          static_cast<double>(now - start_ns_) / 1e9, static_cast<unsigned long long>(sent),
          static_cast<double>(sent - last_sent_) / dt, static_cast<unsigned long long>(received),
          static_cast<double>(received - last_received_) / dt,
          static_cast<long long>(sent) - static_cast<long long>(received));
      last_sent_ = sent;
      last_received_ = received;
      last_ns_ = now;
      next_ns_ += every_ns_;
    }

   private:
    int64_t every_ns_;
    int64_t start_ns_;
    int64_t last_ns_;
    int64_t next_ns_;
    uint64_t last_sent_ = 0;
    uint64_t last_received_ = 0;
  };

  // What a socket is for; the epoll key is its index in sources_.
  struct Source {
    int fd;
    Stream* stream;  // null for the spoofer
    Role role;
  };

  uint64_t sent_total() const { return stats[kSetToIcp].sent + stats[kIcpToSet].sent; }

  void SendPacketsOf(Stream& s, uint32_t k) {
    SendRtp(s, kSetToIcp, k);
    SendRtp(s, kIcpToSet, k);
    if (spoofer_ != nullptr && k >= options_.spoof_after) SendSpoof(s, k);
    if (options_.rtcp_every != 0 && (k + 1) % options_.rtcp_every == 0) {
      SendRtcp(s, kSetToIcp, k + 1);
      SendRtcp(s, kIcpToSet, k + 1);
    }
  }

  bool Send(int fd, const uint8_t* buf, size_t len, const SocketAddress& to) {
    while (true) {
      if (sendto(fd, buf, len, 0, to.sa(), to.len()) == static_cast<ssize_t>(len)) return true;
      if (errno != EINTR) return false;
    }
  }

  void SendRtp(Stream& s, Direction d, uint32_t index) {
    alignas(8) uint8_t buf[kBufSize];
    size_t len = BuildRtp(s.params[d], index, MonoNs(), 0, 0, buf);
    if (s.out[d]->ProtectRtp(buf, &len, sizeof(buf)) != SrtpResult::kOk) {
      ++stats[d].send_errors;
      return;
    }
    const bool from_phone = d == kSetToIcp;
    const int fd = from_phone ? s.phone.rtp.fd() : s.ipbx.rtp.fd();
    const SocketAddress& to = from_phone ? s.allocation.set.rtp : s.allocation.icp.rtp;
    if (!Send(fd, buf, len, to)) {
      ++stats[d].send_errors;
      return;
    }
    ++stats[d].sent;
    ++s.sent_count[d];
  }

  void SendSpoof(Stream& s, uint32_t index) {
    alignas(8) uint8_t buf[kBufSize];
    size_t len = BuildRtp(s.params[kSetToIcp], index, MonoNs(), kFlagSpoofed, kSpoofSeqOffset, buf);
    if (s.spoof_out->ProtectRtp(buf, &len, sizeof(buf)) != SrtpResult::kOk) return;
    if (Send(spoofer_->fd(), buf, len, s.allocation.set.rtp)) ++spoofed_sent;
  }

  void SendRtcp(Stream& s, Direction d, uint32_t packets) {
    alignas(8) uint8_t buf[kBufSize];
    size_t len = BuildRtcpSr(s.params[d], packets, buf);
    if (s.out[d]->ProtectRtcp(buf, &len, sizeof(buf)) != SrtpResult::kOk) {
      ++stats[d].send_errors;
      return;
    }
    const bool from_phone = d == kSetToIcp;
    const int fd = from_phone ? s.phone.rtcp.fd() : s.ipbx.rtcp.fd();
    const SocketAddress& to = from_phone ? s.allocation.set.rtcp : s.allocation.icp.rtcp;
    if (!Send(fd, buf, len, to)) {
      ++stats[d].send_errors;
      return;
    }
    ++stats[d].rtcp_sent;
  }

  absl::Status Add(UdpSocket& socket, Stream* stream, Role role) {
    if (absl::Status st = socket.EnableRxTimestamps(); !st.ok()) return st;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = sources_.size();
    sources_.push_back(Source{socket.fd(), stream, role});
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, socket.fd(), &ev) != 0) {
      return absl::InternalError(absl::StrCat("epoll_ctl: ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  void DrainSocket(uint64_t key, int64_t realtime_offset) {
    const Source& src = sources_[key];
    while (true) {
      for (size_t i = 0; i < kBatch; ++i) {
        msghdr& h = msgs_[i].msg_hdr;
        h = msghdr{};
        h.msg_iov = &iov_[i];
        h.msg_iovlen = 1;
        h.msg_name = &from_[i];
        h.msg_namelen = sizeof(from_[i]);
        h.msg_control = control_[i];
        h.msg_controllen = kControlSize;
      }
      const int n = recvmmsg(src.fd, msgs_, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;
      const int64_t fallback_ns = MonoNs();
      for (int i = 0; i < n; ++i) {
        int64_t rx_ns = fallback_ns;
        msghdr& h = msgs_[i].msg_hdr;
        for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts{};
            std::memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            rx_ns = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec - realtime_offset;
          }
        }
        if (src.role == kSpoofer) {
          ++spoof_socket_received;
          continue;
        }
        const SocketAddress from = SocketAddress::FromSockaddr(
            reinterpret_cast<const sockaddr*>(&from_[i]), h.msg_namelen);
        Handle(*src.stream, src.role, bufs_[i], msgs_[i].msg_len, rx_ns, from);
      }
      if (static_cast<size_t>(n) < kBatch) return;
    }
  }

  void Handle(Stream& s, Role role, uint8_t* buf, size_t len, int64_t rx_ns,
              const SocketAddress& from) {
    const Direction d = role == kIpbxRtp || role == kIpbxRtcp ? kSetToIcp : kIcpToSet;
    DirectionStats& st = stats[d];
    const RelayLeg& leg = d == kSetToIcp ? s.allocation.icp : s.allocation.set;
    if (role == kPhoneRtcp || role == kIpbxRtcp) {
      if (!(from == leg.rtcp)) ++st.wrong_source;
      if (s.in[d]->UnprotectRtcp(buf, &len) != SrtpResult::kOk ||
          !CheckRtcpSr(s.params[d], buf, len)) {
        ++st.rtcp_bad;
        return;
      }
      ++st.rtcp_received;
      ++rtcp_received_;
      return;
    }
    if (!(from == leg.rtp)) ++st.wrong_source;
    if (media_relay::IsRtcp(buf, len)) {
      ++st.foreign;
      return;
    }
    switch (s.in[d]->UnprotectRtp(buf, &len)) {
      case SrtpResult::kOk:
        break;
      case SrtpResult::kReplay:
        ++st.duplicated;  // SRTP refuses a packet index it has seen
        return;
      default:
        ++st.srtp_errors;
        return;
    }
    const RtpCheck c = CheckRtp(s.params[d], buf, len);
    if (c.kind == RtpCheck::Kind::kSpoofed) {
      ++st.spoofed_received;
      return;
    }
    if (c.kind == RtpCheck::Kind::kForeign || c.index >= options_.packets) {
      ++st.foreign;
      return;
    }
    uint64_t& word = s.seen[d][c.index / 64];
    const uint64_t bit = uint64_t{1} << (c.index % 64);
    if ((word & bit) != 0) {
      ++st.duplicated;
      return;
    }
    word |= bit;
    ++st.received;
    ++received_;
    if (static_cast<int64_t>(c.index) < s.highest[d]) {
      ++st.out_of_order;
    } else {
      s.highest[d] = c.index;
    }
    if (!c.payload_ok) ++st.corrupted;
    if (!c.header_ok) ++st.header_mismatch;
    st.latency.Add(rx_ns - c.sent_ns);
  }

  const PeerOptions& options_;
  std::vector<std::unique_ptr<Stream>>& streams_;
  UdpSocket* spoofer_;
  const std::atomic<bool>& stop_;
  int epoll_fd_ = -1;
  std::vector<Source> sources_;
  uint64_t received_ = 0;
  uint64_t rtcp_received_ = 0;
  int64_t late_max_ns_ = 0;
  uint64_t late_packets_ = 0;
  mmsghdr msgs_[kBatch]{};
  iovec iov_[kBatch]{};
  sockaddr_storage from_[kBatch]{};
  alignas(8) uint8_t bufs_[kBatch][kBufSize]{};
  alignas(8) uint8_t control_[kBatch][kControlSize]{};
};

}  // namespace

absl::Status PrepareStream(Stream& s, uint32_t packets, bool spoof) {
  using Dir = SrtpContext::Direction;
  struct {
    std::unique_ptr<SrtpContext>* ctx;
    const media_relay::SrtpKey* key;
    Dir dir;
    const char* what;
  } const contexts[] = {
      {&s.out[kSetToIcp], &s.plan.phone.key, Dir::kOutbound, "phone outbound"},
      {&s.out[kIcpToSet], &s.plan.ipbx.key, Dir::kOutbound, "iPBX outbound"},
      {&s.spoof_out, &s.plan.phone.key, Dir::kOutbound, "spoofer outbound"},
      {&s.in[kSetToIcp], &s.allocation.icp.key, Dir::kInbound, "iPBX inbound"},
      {&s.in[kIcpToSet], &s.allocation.set.key, Dir::kInbound, "phone inbound"},
  };
  for (const auto& c : contexts) {
    if (c.ctx == &s.spoof_out && !spoof) continue;
    absl::StatusOr<std::unique_ptr<SrtpContext>> ctx = SrtpContext::Create(*c.key, c.dir);
    if (!ctx.ok()) {
      return absl::Status(ctx.status().code(), absl::StrCat("stream ", s.id, ": ", c.what,
                                                            " SRTP: ", ctx.status().message()));
    }
    *c.ctx = std::move(*ctx);
  }
  for (auto& bitmap : s.seen) bitmap.assign((packets + 63) / 64, 0);
  return absl::OkStatus();
}

absl::StatusOr<RunResult> RunTraffic(const PeerOptions& options,
                                     std::vector<std::unique_ptr<Stream>>& streams,
                                     UdpSocket* spoofer, const std::atomic<bool>& stop) {
  auto traffic = std::make_unique<Traffic>(options, streams, spoofer, stop);
  if (absl::Status st = traffic->Init(); !st.ok()) return st;
  const int64_t start_ns = MonoNs();
  traffic->Run(start_ns);

  RunResult result;
  result.elapsed_s = static_cast<double>(MonoNs() - start_ns) / 1e9;
  result.interrupted = stop.load();
  for (int d = 0; d < 2; ++d) result.dir[d] = traffic->stats[d];
  for (const auto& s : streams) {
    for (int d = 0; d < 2; ++d) {
      uint64_t got = 0;
      for (uint64_t w : s->seen[d]) got += static_cast<uint64_t>(std::popcount(w));
      if (got < s->sent_count[d]) ++result.dir[d].streams_with_loss;
    }
  }
  result.spoofed_sent = traffic->spoofed_sent;
  result.spoof_socket_received = traffic->spoof_socket_received;
  result.send_late_max_ns = traffic->late_max_ns();
  result.send_late_packets = traffic->late_packets();
  return result;
}

}  // namespace rwg::media_peer
