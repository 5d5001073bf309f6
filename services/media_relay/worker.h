// A packet worker: one thread owning the sessions assigned to it. Each packet is decrypted,
// re-encrypted and sent to the other leg; nothing is locked or allocated per packet. The
// control plane changes a session only through Run(), which executes on the worker's thread.
//
// Two ways to wait for packets:
// - io_uring (the default): one multishot receive per socket into a ring of provided
//   buffers, sends queued on the same ring; one system call carries a whole batch of
//   arrivals and departures, whatever the number of sockets they are spread over;
// - epoll: recvmmsg / sendmmsg per readable socket (three system calls per packet when each
//   socket carries one packet per 20 ms), used where io_uring is unavailable.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/core/thread.h"
#include "services/media_relay/session.h"

namespace prometheus {
class Counter;
}

namespace rwg::media_relay {

// Exceptions caught on the packet path (the packet or queued change is dropped, the worker
// goes on): counted in `counter` (rwg_media_relay_internal_errors_total), set once at start.
void SetPacketPathErrorCounter(prometheus::Counter* counter);
// An exception caught in an API handler: logged and counted in the same counter.
void CountHandlerError(const char* rpc, const char* what) noexcept;

enum class IoMode { kUring, kEpoll };
absl::StatusOr<IoMode> ParseIoMode(const std::string& name);
const char* IoModeName(IoMode m);

class Worker {
 public:
  // `io`: kUring falls back to epoll (with a warning) when the kernel refuses io_uring.
  // `scheduling`: the thread's (other:0 leaves the process's); one it may not take is warned
  // about and the thread runs as the process's.
  explicit Worker(int index, IoMode io = IoMode::kUring, core::ThreadScheduling scheduling = {});
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  absl::Status Start();
  void Stop();

  // Runs `fn` on the worker's thread and returns when it has run.
  void Run(const std::function<void()>& fn);

  // On the worker's thread (inside Run): starts or stops carrying a session's packets. After
  // Detach the worker holds nothing of the session's sockets: they may be closed.
  absl::Status Attach(Session* s);
  void Detach(Session* s);

  int index() const { return index_; }
  // The mode in use (after a fallback, epoll).
  IoMode io() const { return io_; }
  std::atomic<int>& sessions() { return sessions_; }

  static constexpr int kBatch = 32;
  static constexpr size_t kBufferSize = 2048;

 private:
  // Where a packet goes after it went through its session, if anywhere.
  struct Forward {
    int fd = -1;
    const Address* dest = nullptr;
    size_t len = 0;
  };
  Forward Process(const Leg::Tag& tag, uint8_t* buf, size_t len, const sockaddr* name,
                  socklen_t namelen);

  // epoll
  absl::Status EpollInit();
  void EpollLoop();
  void Readable(Leg::Tag* tag);  // guarded: nothing thrown leaves the packet path
  void ReadableUnguarded(Leg::Tag* tag);
  // io_uring
  absl::Status UringInit();
  void UringLoop();
  void UringCompletion(const io_uring_cqe* cqe);  // guarded: nothing thrown leaves the packet path
  void UringCompletionUnguarded(const io_uring_cqe* cqe);
  void UringArm(uint32_t slot);
  void UringArmEvents();
  io_uring_sqe* UringSqe();
  void Recycle(uint16_t bid);

  void RunQueued();
  // On the worker's thread, first: its name and priority.
  void PrepareThread();

  const int index_;
  IoMode io_;
  const core::ThreadScheduling scheduling_;
  int epfd_ = -1;
  int evfd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sessions_{0};
  absl::Mutex mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int64_t now_ns_ = 0;

  // epoll: batch buffers, reused for every read.
  alignas(16) uint8_t bufs_[kBatch][kBufferSize + kMaxTrailer];
  mmsghdr rx_[kBatch];
  iovec rx_iov_[kBatch];
  sockaddr_storage names_[kBatch];
  mmsghdr tx_[kBatch];
  iovec tx_iov_[kBatch];

  // io_uring. A socket's receive is identified by a slot and the slot's generation, so that
  // completions arriving after Detach are recognised and ignored.
  struct RecvSlot {
    Leg::Tag* tag = nullptr;  // null: free
    int fd = -1;
    uint32_t gen = 0;
    bool armed = false;
  };
  // A packet on its way out: the buffer stays lent to the send until it completes.
  struct SendSlot {
    msghdr msg{};
    iovec iov{};
    Address dest;
    uint32_t slot = 0;  // the receiving slot, to find the session's counters
    uint32_t gen = 0;
    bool rtcp = false;
  };
  static constexpr uint32_t kRingBuffers = 4096;  // a power of two
  static constexpr size_t kHeadroom = sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_storage);
  static constexpr size_t kSlotSize = (kHeadroom + kBufferSize + kMaxTrailer + 63) & ~size_t{63};
  bool uring_ready_ = false;
  io_uring ring_{};
  io_uring_buf_ring* buf_ring_ = nullptr;
  std::unique_ptr<uint8_t[]> pool_;
  std::vector<SendSlot> sends_;
  std::vector<RecvSlot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<uint32_t> disarmed_;  // receives that ended (no buffers): armed again later
  msghdr recv_template_{};
  bool events_armed_ = false;
  uint32_t recycled_ = 0;  // buffers given back since the ring was last advanced
};

}  // namespace rwg::media_relay
