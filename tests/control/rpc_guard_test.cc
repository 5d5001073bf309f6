#include "services/control/rpc_guard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace rwg::control {
namespace {

using ::testing::HasSubstr;

TEST(RpcGuardTest, StatusPassesThrough) {
  int thrown = 0;
  auto count = [&] { ++thrown; };
  EXPECT_TRUE(RunCatching(
                  "GetConfig", [] { return absl::OkStatus(); }, count)
                  .ok());
  EXPECT_EQ(RunCatching(
                "GetConfig", [] { return absl::NotFoundError("x"); }, count),
            absl::NotFoundError("x"));
  EXPECT_EQ(thrown, 0);
}

TEST(RpcGuardTest, StdExceptionBecomesInternal) {
  int thrown = 0;
  absl::Status s = RunCatching(
      "ListEmergencyRoutes",
      []() -> absl::Status {
        // What a damaged record does: a string expected, a number found.
        nlohmann::json j = nlohmann::json::parse(R"({"location": 5})");
        return absl::NotFoundError(j.value("location", ""));
      },
      [&] { ++thrown; });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("internal error in ListEmergencyRoutes"));
  EXPECT_EQ(thrown, 1);
}

TEST(RpcGuardTest, AnythingThrownBecomesInternal) {
  int thrown = 0;
  absl::Status s = RunCatching(
      "Login", []() -> absl::Status { throw 42; }, [&] { ++thrown; });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(thrown, 1);
  // A counter that throws in turn does not escape either.
  s = RunCatching(
      "Login", []() -> absl::Status { throw std::runtime_error("x"); },
      [] { throw std::bad_alloc(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(RunCatching("Login", []() -> absl::Status { throw std::bad_alloc(); }).code() ==
              absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace rwg::control
