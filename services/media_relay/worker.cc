#include "services/media_relay/worker.h"

#include <arpa/inet.h>
#include <poll.h>
#include <prometheus/counter.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/log.h"
#include "services/core/thread.h"
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

absl::StatusOr<IoMode> ParseIoMode(const std::string& name) {
  if (name == "uring") return IoMode::kUring;
  if (name == "epoll") return IoMode::kEpoll;
  return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not uring or epoll"));
}

const char* IoModeName(IoMode m) { return m == IoMode::kUring ? "uring" : "epoll"; }

namespace {

// io_uring completions: what user_data says.
constexpr uint64_t kKindShift = 56;
constexpr uint64_t kRecv = 1, kSend = 2, kEvents = 3;

uint64_t RecvData(uint32_t slot, uint32_t gen) {
  return (kRecv << kKindShift) | (static_cast<uint64_t>(gen & 0xffffff) << 32) | slot;
}

}  // namespace

Worker::Worker(int index, IoMode io, core::ThreadScheduling scheduling)
    : index_(index), io_(io), scheduling_(scheduling) {
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
  evfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (evfd_ < 0) return absl::InternalError(absl::StrCat("worker ", index_, ": ", strerror(errno)));
  if (io_ == IoMode::kEpoll) {
    if (absl::Status s = EpollInit(); !s.ok()) return s;
    thread_ = std::thread([this] {
      PrepareThread();
      EpollLoop();
    });
    return absl::OkStatus();
  }
  // The ring belongs to the worker's thread (single issuer): it is set up there.
  std::promise<absl::Status> ready;
  std::future<absl::Status> started = ready.get_future();
  thread_ = std::thread([this, &ready] {
    PrepareThread();
    absl::Status s = UringInit();
    if (!s.ok()) {
      core::log::Warn("io_uring unavailable, packets go through epoll",
                      {{"worker", std::to_string(index_)}, {"error", std::string(s.message())}});
      io_ = IoMode::kEpoll;
      absl::Status e = EpollInit();
      const bool ok = e.ok();
      ready.set_value(std::move(e));
      if (ok) EpollLoop();
      return;
    }
    ready.set_value(absl::OkStatus());
    UringLoop();
  });
  absl::Status s = started.get();
  if (!s.ok()) thread_.join();
  return s;
}

void Worker::PrepareThread() {
  core::NameThisThread(absl::StrCat("rwg-worker-", index_));
  if (scheduling_.policy == core::ThreadScheduling::Policy::kOther && scheduling_.priority == 0) {
    return;
  }
  if (absl::Status s = core::ScheduleThisThread(scheduling_); !s.ok()) {
    // Once per process: every worker meets the same refusal, and a relay waiting for Redis
    // starts its workers again at each attempt.
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      core::log::Warn("packet worker keeps the process's scheduling",
                      {{"worker", std::to_string(index_)}, {"error", std::string(s.message())}});
    }
  }
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  uint64_t one = 1;
  (void)!write(evfd_, &one, sizeof(one));  // fails only on a full eventfd, which wakes anyway
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
    absl::MutexLock lock(&mu_);
    queue_.push_back([&fn, &done] {
      fn();
      done.set_value();
    });
  }
  uint64_t one = 1;
  (void)!write(evfd_, &one, sizeof(one));  // fails only on a full eventfd, which wakes anyway
  f.wait();
}

void Worker::RunQueued() {
  uint64_t n = 0;
  (void)!read(evfd_, &n, sizeof(n));  // resets the eventfd; EAGAIN: already reset
  std::vector<std::function<void()>> q;
  {
    absl::MutexLock lock(&mu_);
    q.swap(queue_);
  }
  for (auto& fn : q) fn();
}

absl::Status Worker::Attach(Session* s) {
  for (int l = 0; l < 2; ++l) {
    Leg& leg = s->legs[l];
    leg.rtp_tag = {s, l, false, 0};
    leg.rtcp_tag = {s, l, true, 0};
  }
  if (io_ == IoMode::kEpoll) {
    for (Leg& leg : s->legs) {
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
  } else {
    for (Leg& leg : s->legs) {
      for (Leg::Tag* tag : {&leg.rtp_tag, &leg.rtcp_tag}) {
        uint32_t slot;
        if (!free_slots_.empty()) {
          slot = free_slots_.back();
          free_slots_.pop_back();
        } else {
          slot = static_cast<uint32_t>(slots_.size());
          slots_.emplace_back();
        }
        RecvSlot& r = slots_[slot];
        r.tag = tag;
        r.fd = tag->rtcp ? leg.ports.rtcp_fd : leg.ports.rtp_fd;
        r.armed = false;
        tag->slot = slot;
        UringArm(slot);
      }
    }
    io_uring_submit(&ring_);
  }
  s->worker = index_;
  sessions_.fetch_add(1);
  return absl::OkStatus();
}

void Worker::Detach(Session* s) {
  if (io_ == IoMode::kEpoll) {
    for (Leg& leg : s->legs) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, leg.ports.rtp_fd, nullptr);
      epoll_ctl(epfd_, EPOLL_CTL_DEL, leg.ports.rtcp_fd, nullptr);
    }
  } else {
    // Sends already queued toward these sockets leave now (they hold their own reference to
    // the socket from then on); the receives are cancelled before this returns, so that the
    // caller may close the sockets and their ports are free again.
    io_uring_submit(&ring_);
    for (Leg& leg : s->legs) {
      for (Leg::Tag* tag : {&leg.rtp_tag, &leg.rtcp_tag}) {
        RecvSlot& r = slots_[tag->slot];
        if (r.tag != tag) continue;
        // Found by its user data: a hash lookup in the kernel, where a match by file
        // descriptor walks every armed receive of the ring (thousands with many sessions).
        io_uring_sync_cancel_reg reg{};
        reg.addr = RecvData(tag->slot, r.gen);
        reg.fd = -1;
        reg.timeout.tv_sec = 1;
        reg.timeout.tv_nsec = 0;
        int rc = io_uring_register_sync_cancel(&ring_, &reg);
        if (rc < 0 && rc != -ENOENT) {
          core::log::Warn("cannot cancel a media socket's receive",
                          {{"error", strerror(-rc)}, {"session", s->id}});
        }
        r.tag = nullptr;
        r.fd = -1;
        r.armed = false;
        ++r.gen;  // completions still on their way are recognised as stale
        free_slots_.push_back(tag->slot);
      }
    }
  }
  sessions_.fetch_sub(1);
}

// ---------------------------------------------------------------------------------------------
// The packet path, shared by both ways of waiting.

Worker::Forward Worker::Process(const Leg::Tag& tag, uint8_t* buf, size_t len, const sockaddr* name,
                                socklen_t namelen) {
  Session* s = tag.session;
  Leg& in = s->legs[tag.leg];
  Leg& out = s->legs[1 - tag.leg];
  const bool rtcp = tag.rtcp;
  Address& latched = rtcp ? in.latched_rtcp : in.latched_rtp;
  const Address& sdp = rtcp ? in.sdp_rtcp : in.sdp_rtp;
  const Address& dest_latched = rtcp ? out.latched_rtcp : out.latched_rtp;
  const Address& dest_sdp = rtcp ? out.sdp_rtcp : out.sdp_rtp;
  const bool plain_in = in.suite == SrtpSuite::kNone;
  auto drop = [&in](Drop d) {
    in.counters.drops[static_cast<int>(d)].Add(1);
    return Forward{};
  };

  Address src;
  src.len = std::min<socklen_t>(namelen, sizeof(src.ss));
  std::memcpy(&src.ss, name, src.len);
  // Strict source once latched; a plain leg is bound to its SDP address from the start.
  if (!latched.empty() ? !(src == latched) : (plain_in && !sdp.empty() && !(src == sdp))) {
    return drop(Drop::kForeignSource);
  }
  if (in.inbound == nullptr) return drop(Drop::kAuthFailure);  // SRTP key not known yet
  SrtpResult r = rtcp ? in.inbound->UnprotectRtcp(buf, &len) : in.inbound->UnprotectRtp(buf, &len);
  if (r != SrtpResult::kOk) {
    return drop(r == SrtpResult::kAuthFailed ? Drop::kAuthFailure
                : r == SrtpResult::kReplay   ? Drop::kReplay
                                             : Drop::kMalformed);
  }
  if (latched.empty()) {
    latched = src;
    s->dirty.store(true, std::memory_order_relaxed);
  }
  (rtcp ? in.counters.rtcp_in_packets : in.counters.rtp_in_packets).Add(1);
  (rtcp ? in.counters.rtcp_in_bytes : in.counters.rtp_in_bytes).Add(len);
  s->last_packet_ns.store(now_ns_, std::memory_order_relaxed);
  if (rtcp) {
    NoteReport(buf, len, in.counters);
  } else {
    NoteRtp(in.in_ssrcs, in.inbound.get(), buf, len, s);
  }
  if (out.outbound == nullptr) return drop(Drop::kNoDestination);
  r = rtcp ? out.outbound->ProtectRtcp(buf, &len, kBufferSize + kMaxTrailer)
           : out.outbound->ProtectRtp(buf, &len, kBufferSize + kMaxTrailer);
  if (r != SrtpResult::kOk) return drop(Drop::kMalformed);
  if (rtcp && out.suite != SrtpSuite::kNone) {
    if (std::optional<uint32_t> ssrc = RtcpSsrc(buf, len)) {
      if (SsrcState* st = Track(out.out_ssrcs, *ssrc)) ++st->srtcp_sent;
    }
  } else if (!rtcp) {
    NoteRtp(out.out_ssrcs, out.outbound.get(), buf, len, s);
  }
  const Address& dest = dest_latched.empty() ? dest_sdp : dest_latched;
  if (dest.empty()) return drop(Drop::kNoDestination);
  return Forward{rtcp ? out.ports.rtcp_fd : out.ports.rtp_fd, &dest, len};
}

// ---------------------------------------------------------------------------------------------
// epoll

absl::Status Worker::EpollInit() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    return absl::InternalError(absl::StrCat("worker ", index_, ": epoll: ", strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up event
  epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev);
  return absl::OkStatus();
}

void Worker::EpollLoop() {
  constexpr int kEpollEvents = 128;
  epoll_event events[kEpollEvents];
  while (!stop_.load(std::memory_order_relaxed)) {
    int n = epoll_wait(epfd_, events, kEpollEvents, 500);
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

namespace {
std::atomic<prometheus::Counter*> g_packet_errors{nullptr};
std::atomic<uint64_t> g_packet_error_count{0};

void PacketPathError(const char* where, const char* what) noexcept {
  try {
    if (prometheus::Counter* c = g_packet_errors.load()) c->Increment();
    const uint64_t n = ++g_packet_error_count;
    if ((n & (n - 1)) == 0) {  // the 1st, 2nd, 4th, 8th...: a storm does not flood the log
      core::log::Error("packet path error; the packet is dropped",
                       {{"where", where}, {"error", what}, {"count", absl::StrCat(n)}});
    }
  } catch (...) {
  }
}
}  // namespace

void SetPacketPathErrorCounter(prometheus::Counter* counter) { g_packet_errors.store(counter); }

void CountHandlerError(const char* rpc, const char* what) noexcept {
  try {
    if (prometheus::Counter* c = g_packet_errors.load()) c->Increment();
    core::log::Error("API handler error; answered INTERNAL", {{"rpc", rpc}, {"error", what}});
  } catch (...) {
  }
}

void Worker::Readable(Leg::Tag* tag) {
  try {
    ReadableUnguarded(tag);
  } catch (const std::exception& e) {
    PacketPathError("readable", e.what());
  } catch (...) {
    PacketPathError("readable", "unknown exception");
  }
}

void Worker::UringCompletion(const io_uring_cqe* cqe) {
  try {
    UringCompletionUnguarded(cqe);
  } catch (const std::exception& e) {
    PacketPathError("completion", e.what());
  } catch (...) {
    PacketPathError("completion", "unknown exception");
  }
}

void Worker::ReadableUnguarded(Leg::Tag* tag) {
  Session* s = tag->session;
  Leg& in = s->legs[tag->leg];
  Leg& out = s->legs[1 - tag->leg];
  const bool rtcp = tag->rtcp;
  const int fd = rtcp ? in.ports.rtcp_fd : in.ports.rtp_fd;
  const int out_fd = rtcp ? out.ports.rtcp_fd : out.ports.rtp_fd;
  Counter& out_packets = rtcp ? out.counters.rtcp_out_packets : out.counters.rtp_out_packets;
  Counter& out_bytes = rtcp ? out.counters.rtcp_out_bytes : out.counters.rtp_out_bytes;

  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < kBatch; ++i) rx_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    const int n = recvmmsg(fd, rx_, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return;
    int k = 0;
    for (int i = 0; i < n; ++i) {
      if (rx_[i].msg_hdr.msg_flags & MSG_TRUNC) {
        in.counters.drops[static_cast<int>(Drop::kMalformed)].Add(1);
        continue;
      }
      Forward f =
          Process(*tag, bufs_[i], rx_[i].msg_len, reinterpret_cast<const sockaddr*>(&names_[i]),
                  rx_[i].msg_hdr.msg_namelen);
      if (f.dest == nullptr) continue;
      tx_iov_[k] = {bufs_[i], f.len};
      tx_[k].msg_hdr.msg_name = const_cast<sockaddr_storage*>(&f.dest->ss);
      tx_[k].msg_hdr.msg_namelen = f.dest->len;
      ++k;
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

// ---------------------------------------------------------------------------------------------
// io_uring

absl::Status Worker::UringInit() {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = 4 * kRingBuffers;
  int rc = io_uring_queue_init_params(kRingBuffers / 2, &ring_, &p);
  if (rc < 0) return absl::UnavailableError(absl::StrCat("io_uring setup: ", strerror(-rc)));
  size_t ring_bytes = kRingBuffers * sizeof(io_uring_buf);
  void* mem = nullptr;
  if (posix_memalign(&mem, 4096, ring_bytes) != 0) {
    io_uring_queue_exit(&ring_);
    return absl::ResourceExhaustedError("io_uring buffer ring");
  }
  buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(buf_ring_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
  reg.ring_entries = kRingBuffers;
  reg.bgid = 0;
  rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (rc < 0) {
    io_uring_queue_exit(&ring_);
    free(buf_ring_);
    buf_ring_ = nullptr;
    return absl::UnavailableError(absl::StrCat("io_uring provided buffers: ", strerror(-rc)));
  }
  pool_ = std::make_unique<uint8_t[]>(kRingBuffers * kSlotSize);
  sends_.resize(kRingBuffers);
  for (uint32_t i = 0; i < kRingBuffers; ++i) {
    // The kernel may fill headroom + kBufferSize; kMaxTrailer more stay for SRTP's tag.
    io_uring_buf_ring_add(buf_ring_, pool_.get() + i * kSlotSize, kHeadroom + kBufferSize,
                          static_cast<uint16_t>(i), io_uring_buf_ring_mask(kRingBuffers),
                          static_cast<int>(i));
    SendSlot& ss = sends_[i];
    ss.msg.msg_iov = &ss.iov;
    ss.msg.msg_iovlen = 1;
  }
  io_uring_buf_ring_advance(buf_ring_, kRingBuffers);
  recv_template_ = {};
  recv_template_.msg_namelen = sizeof(sockaddr_storage);
  uring_ready_ = true;
  UringArmEvents();
  io_uring_submit(&ring_);
  return absl::OkStatus();
}

io_uring_sqe* Worker::UringSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void Worker::UringArm(uint32_t slot) {
  RecvSlot& r = slots_[slot];
  io_uring_sqe* sqe = UringSqe();
  if (sqe == nullptr) {
    disarmed_.push_back(slot);
    return;
  }
  io_uring_prep_recvmsg_multishot(sqe, r.fd, &recv_template_, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  io_uring_sqe_set_data64(sqe, RecvData(slot, r.gen));
  r.armed = true;
}

void Worker::UringArmEvents() {
  io_uring_sqe* sqe = UringSqe();
  if (sqe == nullptr) return;
  io_uring_prep_poll_multishot(sqe, evfd_, POLLIN);
  io_uring_sqe_set_data64(sqe, kEvents << kKindShift);
  events_armed_ = true;
}

void Worker::Recycle(uint16_t bid) {
  io_uring_buf_ring_add(buf_ring_, pool_.get() + static_cast<size_t>(bid) * kSlotSize,
                        kHeadroom + kBufferSize, bid, io_uring_buf_ring_mask(kRingBuffers),
                        static_cast<int>(recycled_));
  ++recycled_;
}

void Worker::UringLoop() {
  while (!stop_.load(std::memory_order_relaxed)) {
    // No timeout (a timer per wait costs): Stop() and Run() wake the worker through evfd_.
    io_uring_submit_and_wait(&ring_, 1);
    now_ns_ = CoarseNowNs();
    io_uring_cqe* cqe = nullptr;
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      UringCompletion(cqe);
      ++count;
    }
    io_uring_cq_advance(&ring_, count);
    if (recycled_ > 0) {
      io_uring_buf_ring_advance(buf_ring_, static_cast<int>(recycled_));
      recycled_ = 0;
    }
    // Receives that stopped for want of buffers start again now that some came back.
    std::vector<uint32_t> again;
    again.swap(disarmed_);
    for (uint32_t slot : again) {
      if (slots_[slot].tag != nullptr && !slots_[slot].armed) UringArm(slot);
    }
    if (!events_armed_) UringArmEvents();
  }
  RunQueued();
  io_uring_queue_exit(&ring_);
  free(buf_ring_);
  buf_ring_ = nullptr;
}

void Worker::UringCompletionUnguarded(const io_uring_cqe* cqe) {
  const uint64_t data = io_uring_cqe_get_data64(cqe);
  const uint64_t kind = data >> kKindShift;
  const bool has_buffer = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
  const uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
  if (kind == kEvents) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) events_armed_ = false;
    RunQueued();
    return;
  }
  if (kind == kSend) {
    SendSlot& ss = sends_[static_cast<uint16_t>(data)];
    RecvSlot& r = slots_[ss.slot];
    if (cqe->res >= 0 && r.tag != nullptr && r.gen == ss.gen) {
      Leg& out = r.tag->session->legs[1 - r.tag->leg];
      (ss.rtcp ? out.counters.rtcp_out_packets : out.counters.rtp_out_packets).Add(1);
      (ss.rtcp ? out.counters.rtcp_out_bytes : out.counters.rtp_out_bytes)
          .Add(static_cast<uint64_t>(cqe->res));
    }
    Recycle(static_cast<uint16_t>(data));
    return;
  }
  if (kind != kRecv) {
    if (has_buffer) Recycle(bid);
    return;
  }
  const uint32_t slot = static_cast<uint32_t>(data);
  const uint32_t gen = static_cast<uint32_t>(data >> 32) & 0xffffff;
  RecvSlot& r = slots_[slot];
  const bool current = r.tag != nullptr && (r.gen & 0xffffff) == gen;
  if (current && !(cqe->flags & IORING_CQE_F_MORE)) {
    // The multishot receive ended (no buffer left, or an error): armed again after this round.
    r.armed = false;
    disarmed_.push_back(slot);
  }
  if (!has_buffer) return;
  if (!current || cqe->res <= 0) {
    Recycle(bid);
    return;
  }
  uint8_t* base = pool_.get() + static_cast<size_t>(bid) * kSlotSize;
  io_uring_recvmsg_out* o =
      io_uring_recvmsg_validate(base, cqe->res, const_cast<msghdr*>(&recv_template_));
  Leg::Tag& tag = *r.tag;
  if (o == nullptr || (o->flags & MSG_TRUNC)) {
    tag.session->legs[tag.leg].counters.drops[static_cast<int>(Drop::kMalformed)].Add(1);
    Recycle(bid);
    return;
  }
  uint8_t* payload =
      static_cast<uint8_t*>(io_uring_recvmsg_payload(o, const_cast<msghdr*>(&recv_template_)));
  const size_t len =
      io_uring_recvmsg_payload_length(o, cqe->res, const_cast<msghdr*>(&recv_template_));
  const socklen_t namelen = std::min<socklen_t>(o->namelen, sizeof(sockaddr_storage));
  Forward f =
      Process(tag, payload, len, static_cast<const sockaddr*>(io_uring_recvmsg_name(o)), namelen);
  if (f.dest == nullptr) {
    Recycle(bid);
    return;
  }
  io_uring_sqe* sqe = UringSqe();
  if (sqe == nullptr) {  // cannot happen after a submit; counted as lost if it does
    Recycle(bid);
    return;
  }
  SendSlot& ss = sends_[bid];
  ss.dest = *f.dest;
  ss.iov = {payload, f.len};
  ss.msg.msg_name = &ss.dest.ss;
  ss.msg.msg_namelen = ss.dest.len;
  ss.slot = slot;
  ss.gen = r.gen;
  ss.rtcp = tag.rtcp;
  io_uring_prep_sendmsg(sqe, f.fd, &ss.msg, MSG_DONTWAIT);
  io_uring_sqe_set_data64(sqe, (kSend << kKindShift) | bid);
}

}  // namespace rwg::media_relay
