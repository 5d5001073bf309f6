// Hands work from other threads (gRPC completions) to the SIP thread: closures are queued
// under a lock and an eventfd wakes the sofia-sip event loop, which runs them in order.
#pragma once

#include <sofia-sip/su_wait.h>

#include <deque>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace rwg::sip_edge {

class LoopQueue {
 public:
  // Runs on `root`'s thread; Post may be called from any thread while the queue exists.
  explicit LoopQueue(su_root_t* root);
  ~LoopQueue();
  LoopQueue(const LoopQueue&) = delete;
  LoopQueue& operator=(const LoopQueue&) = delete;

  bool ok() const { return index_ > 0; }
  void Post(std::function<void()> fn);

 private:
  static int OnWake(su_root_magic_t*, su_wait_t* w, su_wakeup_arg_t* arg);
  void RunAll();

  su_root_t* root_;
  int fd_ = -1;
  int index_ = 0;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool signaled_ ABSL_GUARDED_BY(mu_) = false;  // the eventfd was written since the last RunAll
};

}  // namespace rwg::sip_edge
