#include "services/core/thread.h"

#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
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

// Whether the process's effective capabilities include CAP_SYS_NICE (/proc/self/status).
bool HoldsCapSysNice() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    uint64_t caps = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line.substr(7)), &caps)) return false;
    return (caps >> CAP_SYS_NICE) & 1U;
  }
  return false;
}

absl::Status Refused(const ThreadScheduling& s, int err, const char* call) {
  if (err == EACCES || err == EPERM) {
    if (s.policy != ThreadScheduling::Policy::kOther && HoldsCapSysNice()) {
      // The kernel's real-time group scheduling refuses real time to a task whose cgroup was
      // given no real-time runtime (cpu.rt_runtime_us 0, as every new cgroup, a container's
      // among them), whatever its capabilities.
      return absl::PermissionDeniedError(absl::StrCat(
          "scheduling ", s.ToString(),
          " refused although the process has CAP_SYS_NICE: its cgroup has no real-time "
          "runtime (real-time group scheduling; kernel.sched_rt_runtime_us=-1 lifts the limit)"));
    }
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
