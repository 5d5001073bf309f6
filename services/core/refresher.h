// A background thread that keeps a service's view of Redis fresh: runs a refresh once at Start
// (its status is Start's), then every `period` until Stop. What the refresh throws becomes an
// Internal status; the thread keeps running. The first failure after a success is logged once,
// not at every period. Used by provisioning's and ott's shared state.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace rwg::core {

class Refresher {
 public:
  // `what` names what is refreshed in the log line ("the hash key and bans").
  Refresher(std::string what, std::function<absl::Status()> refresh)
      : what_(std::move(what)), refresh_(std::move(refresh)) {}
  ~Refresher() { Stop(); }
  Refresher(const Refresher&) = delete;
  Refresher& operator=(const Refresher&) = delete;

  absl::Status Start(absl::Duration period);
  // Waits for a refresh in progress; none runs after.
  void Stop();
  // The last refresh's status (Unavailable before the first).
  absl::Status last_status() const;

 private:
  absl::Status SafeRefresh();

  const std::string what_;
  const std::function<absl::Status()> refresh_;
  mutable absl::Mutex mu_;
  absl::Status last_ ABSL_GUARDED_BY(mu_) = absl::UnavailableError("not read yet");
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rwg::core
