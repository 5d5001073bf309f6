#include "services/core/refresher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>

namespace rwg::core {
namespace {

TEST(RefresherTest, StartReturnsTheFirstRefreshThenKeepsRefreshing) {
  std::atomic<int> runs{0};
  Refresher r("test state", [&] {
    ++runs;
    return runs.load() == 1 ? absl::UnavailableError("redis down") : absl::OkStatus();
  });
  EXPECT_EQ(r.Start(absl::Milliseconds(50)).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.last_status().code(), absl::StatusCode::kUnavailable);
  for (int i = 0; i < 100 && runs.load() < 3; ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_GE(runs.load(), 3);
  EXPECT_TRUE(r.last_status().ok());
  r.Stop();
  const int after = runs.load();
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(runs.load(), after);
}

TEST(RefresherTest, WhatARefreshThrowsIsAnErrorAndTheThreadGoesOn) {
  std::atomic<int> runs{0};
  Refresher r("test state", [&]() -> absl::Status {
    if (++runs == 2) throw std::runtime_error("boom");
    return absl::OkStatus();
  });
  ASSERT_TRUE(r.Start(absl::Milliseconds(20)).ok());
  for (int i = 0; i < 100 && runs.load() < 4; ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_GE(runs.load(), 4);
  r.Stop();
}

TEST(RefresherTest, ThrownErrorsBecomeInternal) {
  Refresher r("test state", []() -> absl::Status { throw std::runtime_error("boom"); });
  absl::Status s = r.Start(absl::Hours(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("boom"), absl::string_view::npos);
}

}  // namespace
}  // namespace rwg::core
