#include "tools/rwgctl/errors.h"

#include "gtest/gtest.h"

namespace rwg::rwgctl {
namespace {

TEST(RwgctlErrors, OkIsExitZeroWithoutALine) {
  Outcome o = OutcomeOf(absl::OkStatus());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.message, "");
  EXPECT_TRUE(RpcError(grpc::Status::OK).ok());
}

TEST(RwgctlErrors, RpcFailureNamesItsCodeAndExitsOne) {
  absl::Status s =
      RpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, "set_username: no device '2009'"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  Outcome o = OutcomeOf(s);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.message, "NOT_FOUND: set_username: no device '2009'");

  o = OutcomeOf(RpcError(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "")));
  EXPECT_EQ(o.message, "UNAUTHENTICATED: ");
}

TEST(RwgctlErrors, CodeOutsideTheNumberingIsError) {
  EXPECT_EQ(CodeName(99), "ERROR");
  EXPECT_EQ(CodeName(grpc::StatusCode::INVALID_ARGUMENT), "INVALID_ARGUMENT");
  // 20: within what grpc::StatusCode can hold, but no code of either numbering.
  Outcome o = OutcomeOf(RpcError(grpc::Status(static_cast<grpc::StatusCode>(20), "odd")));
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.message, "ERROR: odd");
}

TEST(RwgctlErrors, RefusedArgumentExitsTwoWithoutACode) {
  Outcome o = OutcomeOf(ArgumentError("--set-remote: 'x' is not host:port"));
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.message, "--set-remote: 'x' is not host:port");
}

TEST(RwgctlErrors, LocalProblemExitsOneWithoutACode) {
  // Whatever its code: only the server's failures are shown with one.
  Outcome o = OutcomeOf(absl::InvalidArgumentError("'x' is not a configuration field"));
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.message, "'x' is not a configuration field");
  EXPECT_EQ(OutcomeOf(absl::NotFoundError("cannot read /x")).message, "cannot read /x");
}

TEST(RwgctlErrors, QuietFailureExitsOneWithoutALine) {
  Outcome o = OutcomeOf(QuietFailure());
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.message, "");
}

}  // namespace
}  // namespace rwg::rwgctl
