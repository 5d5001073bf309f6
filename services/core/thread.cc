#include "services/core/thread.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace rwg::core {
namespace {

const char* PolicyName(ThreadScheduling::Policy p) {
  switch (p) {
    case ThreadScheduling::Policy::kFifo:
      return "fifo";
    case ThreadScheduling::Policy::kRr:
      return "rr";
    case ThreadScheduling::Policy::kOther:
      break;
  }
  return "other";
}

absl::Status Refused(const ThreadScheduling& s, int err, const char* call) {
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(
        absl::StrCat("scheduling ", s.ToString(), " needs CAP_SYS_NICE"));
  }
  return absl::InternalError(absl::StrCat(call, ": ", strerror(err)));
}

}  // namespace

void NameThisThread(absl::string_view name) {
  // The kernel keeps 15 characters and the terminating NUL.
  const std::string n(name.substr(0, 15));
  pthread_setname_np(pthread_self(), n.c_str());
}

absl::Status ThreadScheduling::Validate() const {
  if (policy == Policy::kOther && (priority < -20 || priority > 19)) {
    return absl::InvalidArgumentError(
        absl::StrCat("priority ", priority, ": a nice value is -20..19"));
  }
  if (policy != Policy::kOther && (priority < 1 || priority > 99)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "priority ", priority, ": a real-time priority (", PolicyName(policy), ") is 1..99"));
  }
  return absl::OkStatus();
}

std::string ThreadScheduling::ToString() const {
  return absl::StrCat(PolicyName(policy), ":", priority);
}

absl::StatusOr<ThreadScheduling::Policy> ParseSchedulingPolicy(absl::string_view name) {
  if (name == "other") return ThreadScheduling::Policy::kOther;
  if (name == "fifo") return ThreadScheduling::Policy::kFifo;
  if (name == "rr") return ThreadScheduling::Policy::kRr;
  return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not other, fifo or rr"));
}

absl::Status ScheduleThisThread(const ThreadScheduling& s) {
  if (absl::Status v = s.Validate(); !v.ok()) return v;
  sched_param param{};
  int policy = SCHED_OTHER;
  if (s.policy != ThreadScheduling::Policy::kOther) {
    policy = s.policy == ThreadScheduling::Policy::kFifo ? SCHED_FIFO : SCHED_RR;
    param.sched_priority = s.priority;
  }
  if (const int err = pthread_setschedparam(pthread_self(), policy, &param); err != 0) {
    return Refused(s, err, "pthread_setschedparam");
  }
  if (s.policy == ThreadScheduling::Policy::kOther) {
    // With PRIO_PROCESS, Linux applies a thread id to that thread alone.
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), s.priority) != 0) {
      return Refused(s, errno, "setpriority");
    }
  }
  return absl::OkStatus();
}

ThreadScheduling ThisThreadScheduling() {
  ThreadScheduling s;
  int policy = SCHED_OTHER;
  sched_param param{};
  pthread_getschedparam(pthread_self(), &policy, &param);
  if (policy == SCHED_FIFO || policy == SCHED_RR) {
    s.policy =
        policy == SCHED_FIFO ? ThreadScheduling::Policy::kFifo : ThreadScheduling::Policy::kRr;
    s.priority = param.sched_priority;
  } else {
    s.priority = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  }
  return s;
}

}  // namespace rwg::core
