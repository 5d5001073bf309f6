#include "services/media_relay/worker.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "services/media_relay/rtp.h"

namespace rwg::media_relay {
namespace {

int64_t CoarseNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Remembers an SSRC's state; marks the session dirty when something to persist changed.
SsrcState* Track(std::array<SsrcState, kTrackedSsrcs>& slots, uint32_t ssrc) {
  for (SsrcState& s : slots) {
    if (s.used && s.ssrc == ssrc) return &s;
  }
  for (SsrcState& s : slots) {
    if (!s.used) {
      s.used = true;
      s.ssrc = ssrc;
      return &s;
    }
  }
  return nullptr;
}

// After an RTP packet of `ssrc` passed through `ctx`: notices a rollover of the sequence
// number and reads the new rollover counter.
void NoteRtp(std::array<SsrcState, kTrackedSsrcs>& slots, const SrtpContext* ctx,
             const uint8_t* buf, size_t len, Session* s) {
  std::optional<uint32_t> ssrc = RtpSsrc(buf, len);
  std::optional<uint16_t> seq = RtpSequence(buf, len);
  if (!ssrc || !seq) return;
  SsrcState* st = Track(slots, *ssrc);
  if (st == nullptr) return;
  const bool fresh = st->last_seq == 0 && st->roc == 0;
  if (*seq < st->last_seq && st->last_seq - *seq > 0x8000 && ctx != nullptr) {
    absl::StatusOr<uint32_t> roc = ctx->GetRoc(*ssrc);
    if (roc.ok() && *roc != st->roc) {
      st->roc = *roc;
      s->dirty.store(true, std::memory_order_relaxed);
    }
  }
  st->last_seq = *seq;
  if (fresh) s->dirty.store(true, std::memory_order_relaxed);
}

// Loss and jitter from the first report block of an SR or RR.
void NoteReport(const uint8_t* buf, size_t len, LegCounters& c) {
  if (len < 8) return;
  const int count = buf[0] & 0x1f;
  const uint8_t pt = buf[1];
  size_t block = pt == 200 ? 28 : pt == 201 ? 8 : 0;
  if (block == 0 || count == 0 || len < block + 24) return;
  const uint8_t* b = buf + block;
  c.fraction_lost.Set(b[4]);
  uint32_t cum = (static_cast<uint32_t>(b[5]) << 16) | (b[6] << 8) | b[7];
  c.cumulative_lost.Set(cum);
  c.jitter.Set((static_cast<uint32_t>(b[12]) << 24) | (b[13] << 16) | (b[14] << 8) | b[15]);
}

}  // namespace

const char* DropName(Drop d) {
  switch (d) {
    case Drop::kForeignSource:
      return "foreign_source";
    case Drop::kAuthFailure:
      return "auth_failure";
    case Drop::kReplay:
      return "replay";
    case Drop::kMalformed:
      return "malformed";
    case Drop::kNoDestination:
      return "no_destination";
  }
  return "other";
}

Worker::Worker(int index) : index_(index) {
  for (int i = 0; i < kBatch; ++i) {
    rx_iov_[i] = {bufs_[i], kBufferSize};
    rx_[i].msg_hdr = {};
    rx_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_[i].msg_hdr.msg_iovlen = 1;
    rx_[i].msg_hdr.msg_name = &names_[i];
    tx_[i].msg_hdr = {};
    tx_[i].msg_hdr.msg_iov = &tx_iov_[i];
    tx_[i].msg_hdr.msg_iovlen = 1;
  }
}

Worker::~Worker() {
  Stop();
  if (epfd_ >= 0) close(epfd_);
  if (evfd_ >= 0) close(evfd_);
}

absl::Status Worker::Start() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  evfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || evfd_ < 0) {
    return absl::InternalError(absl::StrCat("worker ", index_, ": ", strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up event
  epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev);
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  uint64_t one = 1;
  (void)!write(evfd_, &one, sizeof(one));
  thread_.join();
}

void Worker::Run(const std::function<void()>& fn) {
  if (!thread_.joinable()) {
    fn();
    return;
  }
  std::promise<void> done;
  std::future<void> f = done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back([&fn, &done] {
      fn();
      done.set_value();
    });
  }
  uint64_t one = 1;
  (void)!write(evfd_, &one, sizeof(one));
  f.wait();
}

void Worker::RunQueued() {
  uint64_t n = 0;
  (void)!read(evfd_, &n, sizeof(n));
  std::vector<std::function<void()>> q;
  {
    std::lock_guard<std::mutex> lock(mu_);
    q.swap(queue_);
  }
  for (auto& fn : q) fn();
}

absl::Status Worker::Attach(Session* s) {
  for (int l = 0; l < 2; ++l) {
    Leg& leg = s->legs[l];
    leg.rtp_tag = {s, l, false};
    leg.rtcp_tag = {s, l, true};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &leg.rtp_tag;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, leg.ports.rtp_fd, &ev) != 0) {
      return absl::InternalError(absl::StrCat("epoll: ", strerror(errno)));
    }
    ev.data.ptr = &leg.rtcp_tag;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, leg.ports.rtcp_fd, &ev) != 0) {
      return absl::InternalError(absl::StrCat("epoll: ", strerror(errno)));
    }
  }
  s->worker = index_;
  sessions_.fetch_add(1);
  return absl::OkStatus();
}

void Worker::Detach(Session* s) {
  for (Leg& leg : s->legs) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, leg.ports.rtp_fd, nullptr);
    epoll_ctl(epfd_, EPOLL_CTL_DEL, leg.ports.rtcp_fd, nullptr);
  }
  sessions_.fetch_sub(1);
}

void Worker::Loop() {
  constexpr int kEvents = 128;
  epoll_event events[kEvents];
  while (!stop_.load(std::memory_order_relaxed)) {
    int n = epoll_wait(epfd_, events, kEvents, 500);
    now_ns_ = CoarseNowNs();
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        RunQueued();
        // A queued change may have detached sessions whose events are still in this batch.
        for (int j = i + 1; j < n; ++j) events[j].data.ptr = nullptr;
        break;
      }
      Readable(static_cast<Leg::Tag*>(events[i].data.ptr));
    }
  }
  RunQueued();
}

void Worker::Readable(Leg::Tag* tag) {
  Session* s = tag->session;
  Leg& in = s->legs[tag->leg];
  Leg& out = s->legs[1 - tag->leg];
  const bool rtcp = tag->rtcp;
  const int fd = rtcp ? in.ports.rtcp_fd : in.ports.rtp_fd;
  const int out_fd = rtcp ? out.ports.rtcp_fd : out.ports.rtp_fd;
  Address& latched = rtcp ? in.latched_rtcp : in.latched_rtp;
  const Address& sdp = rtcp ? in.sdp_rtcp : in.sdp_rtp;
  const Address& dest_latched = rtcp ? out.latched_rtcp : out.latched_rtp;
  const Address& dest_sdp = rtcp ? out.sdp_rtcp : out.sdp_rtp;
  const bool plain_in = in.suite == SrtpSuite::kNone;
  Counter& in_packets = rtcp ? in.counters.rtcp_in_packets : in.counters.rtp_in_packets;
  Counter& in_bytes = rtcp ? in.counters.rtcp_in_bytes : in.counters.rtp_in_bytes;
  Counter& out_packets = rtcp ? out.counters.rtcp_out_packets : out.counters.rtp_out_packets;
  Counter& out_bytes = rtcp ? out.counters.rtcp_out_bytes : out.counters.rtp_out_bytes;
  auto drop = [&in](Drop d) { in.counters.drops[static_cast<int>(d)].Add(1); };

  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < kBatch; ++i) rx_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    const int n = recvmmsg(fd, rx_, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return;
    int k = 0;
    uint64_t accepted = 0, accepted_bytes = 0;
    for (int i = 0; i < n; ++i) {
      uint8_t* buf = bufs_[i];
      size_t len = rx_[i].msg_len;
      if (rx_[i].msg_hdr.msg_flags & MSG_TRUNC) {
        drop(Drop::kMalformed);
        continue;
      }
      Address src;
      src.len = rx_[i].msg_hdr.msg_namelen;
      std::memcpy(&src.ss, &names_[i], src.len);
      // Strict source once latched; a plain leg is bound to its SDP address from the start.
      if (!latched.empty() ? !(src == latched) : (plain_in && !sdp.empty() && !(src == sdp))) {
        drop(Drop::kForeignSource);
        continue;
      }
      if (in.inbound == nullptr) {  // SRTP leg whose key is not known yet
        drop(Drop::kAuthFailure);
        continue;
      }
      SrtpResult r =
          rtcp ? in.inbound->UnprotectRtcp(buf, &len) : in.inbound->UnprotectRtp(buf, &len);
      if (r != SrtpResult::kOk) {
        drop(r == SrtpResult::kAuthFailed ? Drop::kAuthFailure
             : r == SrtpResult::kReplay   ? Drop::kReplay
                                          : Drop::kMalformed);
        continue;
      }
      if (latched.empty()) {
        latched = src;
        s->dirty.store(true, std::memory_order_relaxed);
      }
      ++accepted;
      accepted_bytes += len;
      if (rtcp) {
        NoteReport(buf, len, in.counters);
      } else {
        NoteRtp(in.in_ssrcs, in.inbound.get(), buf, len, s);
      }
      if (out.outbound == nullptr) {
        drop(Drop::kNoDestination);
        continue;
      }
      r = rtcp ? out.outbound->ProtectRtcp(buf, &len, kBufferSize + kMaxTrailer)
               : out.outbound->ProtectRtp(buf, &len, kBufferSize + kMaxTrailer);
      if (r != SrtpResult::kOk) {
        drop(Drop::kMalformed);
        continue;
      }
      if (rtcp && out.suite != SrtpSuite::kNone) {
        if (std::optional<uint32_t> ssrc = RtcpSsrc(buf, len)) {
          if (SsrcState* st = Track(out.out_ssrcs, *ssrc)) ++st->srtcp_sent;
        }
      } else if (!rtcp) {
        NoteRtp(out.out_ssrcs, out.outbound.get(), buf, len, s);
      }
      const Address& dest = dest_latched.empty() ? dest_sdp : dest_latched;
      if (dest.empty()) {
        drop(Drop::kNoDestination);
        continue;
      }
      tx_iov_[k] = {buf, len};
      tx_[k].msg_hdr.msg_name = const_cast<sockaddr_storage*>(&dest.ss);
      tx_[k].msg_hdr.msg_namelen = dest.len;
      ++k;
    }
    if (accepted > 0) {
      in_packets.Add(accepted);
      in_bytes.Add(accepted_bytes);
      s->last_packet_ns.store(now_ns_, std::memory_order_relaxed);
    }
    int sent = 0;
    while (sent < k) {
      int m = sendmmsg(out_fd, tx_ + sent, k - sent, MSG_DONTWAIT);
      if (m <= 0) break;  // full socket buffer or an unreachable peer: the rest is lost
      sent += m;
    }
    if (sent > 0) {
      uint64_t bytes = 0;
      for (int i = 0; i < sent; ++i) bytes += tx_iov_[i].iov_len;
      out_packets.Add(static_cast<uint64_t>(sent));
      out_bytes.Add(bytes);
    }
    if (n < kBatch) return;
  }
}

}  // namespace rwg::media_relay
