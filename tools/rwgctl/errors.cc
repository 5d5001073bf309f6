#include "tools/rwgctl/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace rwg::rwgctl {
namespace {

// The payload that tells main how a status came about; absent for local problems.
constexpr absl::string_view kKindUrl = "type.rwg/rwgctl.failure_kind";
constexpr absl::string_view kRpc = "rpc";
constexpr absl::string_view kArgument = "argument";
constexpr absl::string_view kQuiet = "quiet";

absl::Status WithKind(absl::Status status, absl::string_view kind) {
  status.SetPayload(kKindUrl, absl::Cord(kind));
  return status;
}

}  // namespace

std::string CodeName(int code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "ERROR" : name;
}

absl::Status RpcError(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return WithKind(
      absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message()),
      kRpc);
}

absl::Status ArgumentError(absl::string_view message) {
  return WithKind(absl::InvalidArgumentError(message), kArgument);
}

absl::Status FlagError(absl::string_view flag, absl::string_view message) {
  return ArgumentError(absl::StrCat(flag, ": ", message));
}

absl::Status QuietFailure() { return WithKind(absl::UnknownError(""), kQuiet); }

Outcome OutcomeOf(const absl::Status& status) {
  if (status.ok()) return {0, ""};
  auto kind = status.GetPayload(kKindUrl);  // absl::optional<absl::Cord>
  if (!kind.has_value()) return {1, std::string(status.message())};
  if (*kind == kRpc) {
    return {1, absl::StrCat(CodeName(status.raw_code()), ": ", status.message())};
  }
  if (*kind == kArgument) return {2, std::string(status.message())};
  return {1, ""};
}

}  // namespace rwg::rwgctl
