#include "services/core/thread.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

namespace rwg::core {
namespace {

using ::testing::HasSubstr;
using Policy = ThreadScheduling::Policy;

// Runs `fn` on a thread of its own, so that the test's thread keeps its scheduling.
template <typename Fn>
void OnOwnThread(Fn fn) {
  std::thread t(fn);
  t.join();
}

TEST(ThreadTest, PolicyNamesAndRanges) {
  EXPECT_EQ(*ParseSchedulingPolicy("other"), Policy::kOther);
  EXPECT_EQ(*ParseSchedulingPolicy("fifo"), Policy::kFifo);
  EXPECT_EQ(*ParseSchedulingPolicy("rr"), Policy::kRr);
  absl::StatusOr<Policy> bad = ParseSchedulingPolicy("FIFO ");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'FIFO ' is not other, fifo or rr"));

  EXPECT_TRUE((ThreadScheduling{Policy::kOther, -20}).Validate().ok());
  EXPECT_TRUE((ThreadScheduling{Policy::kOther, 19}).Validate().ok());
  EXPECT_THAT((ThreadScheduling{Policy::kOther, 20}).Validate().message(),
              HasSubstr("a nice value is -20..19"));
  EXPECT_TRUE((ThreadScheduling{Policy::kFifo, 99}).Validate().ok());
  EXPECT_THAT((ThreadScheduling{Policy::kFifo, 0}).Validate().message(),
              HasSubstr("a real-time priority (fifo) is 1..99"));
  EXPECT_THAT((ThreadScheduling{Policy::kRr, 100}).Validate().message(), HasSubstr("rr"));
  EXPECT_EQ((ThreadScheduling{Policy::kRr, 5}).ToString(), "rr:5");
}

TEST(ThreadTest, LoweringTheNiceValueOfOneThreadLeavesTheOthers) {
  const ThreadScheduling before = ThisThreadScheduling();
  OnOwnThread([] {
    ASSERT_TRUE(ScheduleThisThread({Policy::kOther, 7}).ok());
    const ThreadScheduling now = ThisThreadScheduling();
    EXPECT_EQ(now.policy, Policy::kOther);
    EXPECT_EQ(now.priority, 7);
  });
  EXPECT_EQ(ThisThreadScheduling().priority, before.priority);
  EXPECT_EQ(ThisThreadScheduling().policy, before.policy);
}

TEST(ThreadTest, RealTimeIsAppliedOrRefusedNamingTheCapability) {
  OnOwnThread([] {
    const absl::Status s = ScheduleThisThread({Policy::kFifo, 3});
    if (s.ok()) {
      const ThreadScheduling now = ThisThreadScheduling();
      EXPECT_EQ(now.policy, Policy::kFifo);
      EXPECT_EQ(now.priority, 3);
    } else {
      // Without CAP_SYS_NICE (an unprivileged run): a clear refusal, nothing changed.
      EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
      EXPECT_THAT(s.message(), HasSubstr("CAP_SYS_NICE"));
      EXPECT_EQ(ThisThreadScheduling().policy, Policy::kOther);
    }
  });
}

// With real-time group scheduling (cgroup v1's cpu.rt_runtime_us) a thread moved into a cgroup
// given no real-time runtime, as a container's, is refused real time even with CAP_SYS_NICE:
// the refusal says that, not that the capability is missing.
TEST(ThreadTest, RealTimeRefusedForACgroupWithoutRuntimeSaysWhy) {
  const std::string cpu = "/sys/fs/cgroup/cpu";
  std::ifstream budget("/proc/sys/kernel/sched_rt_runtime_us");
  long runtime = -1;
  budget >> runtime;
  if (geteuid() != 0 || runtime < 0 || access((cpu + "/cpu.rt_runtime_us").c_str(), F_OK) != 0) {
    GTEST_SKIP() << "needs root, cgroup v1's cpu controller with real-time group scheduling "
                    "and kernel.sched_rt_runtime_us >= 0";
  }
  const std::string group = cpu + "/rwg-thread-test-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(group.c_str(), 0755), 0) << strerror(errno);
  OnOwnThread([&] {
    {
      std::ofstream tasks(group + "/tasks");
      tasks << gettid() << std::flush;  // moves this thread only
      ASSERT_TRUE(tasks.good());
    }
    const absl::Status s = ScheduleThisThread({Policy::kFifo, 3});
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_THAT(s.message(), HasSubstr("its cgroup has no real-time runtime"));
    EXPECT_EQ(ThisThreadScheduling().policy, Policy::kOther);
    std::ofstream back(cpu + "/tasks");
    back << gettid() << std::flush;
  });
  EXPECT_EQ(rmdir(group.c_str()), 0) << strerror(errno);
}

TEST(ThreadTest, OutOfRangeIsRefusedBeforeTheKernelIsAsked) {
  OnOwnThread([] {
    // The run may itself be niced: nothing changes from what the thread had.
    const int before = ThisThreadScheduling().priority;
    const absl::Status s = ScheduleThisThread({Policy::kOther, -21});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ThisThreadScheduling().priority, before);
  });
}

TEST(ThreadTest, NamesTheThreadKeepingFifteenCharacters) {
  OnOwnThread([] {
    NameThisThread("rwg-worker-12345678");
    char name[32] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    EXPECT_STREQ(name, "rwg-worker-1234");
  });
}

}  // namespace
}  // namespace rwg::core
