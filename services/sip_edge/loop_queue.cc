#include "services/sip_edge/loop_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "services/sip_edge/guard.h"

namespace rwg::sip_edge {

LoopQueue::LoopQueue(su_root_t* root) : root_(root) {
  fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) return;
  su_wait_t wait[1];
  if (su_wait_create(wait, fd_, SU_WAIT_IN) != 0) return;
  index_ = su_root_register(root_, wait, &LoopQueue::OnWake,
                            reinterpret_cast<su_wakeup_arg_t*>(this), 0);
  if (index_ <= 0) su_wait_destroy(wait);
}

LoopQueue::~LoopQueue() {
  if (index_ > 0) su_root_deregister(root_, index_);
  if (fd_ >= 0) close(fd_);
}

void LoopQueue::Post(std::function<void()> fn) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(fn));
    // One write wakes the loop for everything posted until it runs the queue.
    wake = !signaled_;
    signaled_ = true;
  }
  if (wake) {
    const uint64_t one = 1;
    (void)!write(fd_, &one, sizeof(one));  // fails only on a full eventfd, which wakes anyway
  }
}

int LoopQueue::OnWake(su_root_magic_t*, su_wait_t*, su_wakeup_arg_t* arg) {
  auto* self = reinterpret_cast<LoopQueue*>(arg);
  uint64_t n = 0;
  (void)!read(self->fd_, &n, sizeof(n));  // resets the eventfd; EAGAIN: already reset
  self->RunAll();
  return 0;
}

void LoopQueue::RunAll() {
  std::deque<std::function<void()>> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(queue_);
    signaled_ = false;
  }
  for (auto& fn : batch) Guard("queued work", [&] { fn(); });
}

}  // namespace rwg::sip_edge
