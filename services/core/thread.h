// The calling thread's name (as ps, top and perf show it) and scheduling.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::core {

// Names the calling thread (at most 15 characters are kept).
void NameThisThread(absl::string_view name);

// How a thread is scheduled: the normal time-sharing policy with a nice value (-20, most
// favoured, to 19), or a real-time policy (FIFO, round robin) with a priority 1..99 that runs
// it ahead of every normal thread on its core.
struct ThreadScheduling {
  enum class Policy { kOther, kFifo, kRr };
  Policy policy = Policy::kOther;
  int priority = 0;  // kOther: nice value; kFifo/kRr: real-time priority

  // INVALID_ARGUMENT naming the range when `priority` does not fit `policy`.
  absl::Status Validate() const;
  std::string ToString() const;  // "other:-10", "fifo:10"
};

// "other", "fifo" or "rr".
absl::StatusOr<ThreadScheduling::Policy> ParseSchedulingPolicy(absl::string_view name);

// Applies `s` to the calling thread. A real-time policy, or a nice value below the current
// one, needs CAP_SYS_NICE (or RLIMIT_RTPRIO/RLIMIT_NICE): PERMISSION_DENIED saying so.
absl::Status ScheduleThisThread(const ThreadScheduling& s);

// The calling thread's scheduling.
ThreadScheduling ThisThreadScheduling();

}  // namespace rwg::core
