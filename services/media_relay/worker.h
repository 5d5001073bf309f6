// A packet worker: one thread with its own epoll set, owning the sessions assigned to it.
// Packets are read in batches (recvmmsg), decrypted, re-encrypted and written in batches
// (sendmmsg) to the other leg; nothing is locked or allocated per packet. The control plane
// changes a session only through Run(), which executes on the worker's thread.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "services/media_relay/session.h"

namespace rwg::media_relay {

class Worker {
 public:
  explicit Worker(int index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  absl::Status Start();
  void Stop();

  // Runs `fn` on the worker's thread and returns when it has run.
  void Run(const std::function<void()>& fn);

  // On the worker's thread (inside Run): starts or stops carrying a session's packets.
  absl::Status Attach(Session* s);
  void Detach(Session* s);

  int index() const { return index_; }
  std::atomic<int>& sessions() { return sessions_; }

  static constexpr int kBatch = 32;
  static constexpr size_t kBufferSize = 2048;

 private:
  void Loop();
  void Readable(Leg::Tag* tag);
  void RunQueued();

  const int index_;
  int epfd_ = -1;
  int evfd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sessions_{0};
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  int64_t now_ns_ = 0;

  // Batch buffers, reused for every read.
  alignas(16) uint8_t bufs_[kBatch][kBufferSize + kMaxTrailer];
  mmsghdr rx_[kBatch];
  iovec rx_iov_[kBatch];
  sockaddr_storage names_[kBatch];
  mmsghdr tx_[kBatch];
  iovec tx_iov_[kBatch];
};

}  // namespace rwg::media_relay
