// How a command of rwgctl fails. Commands return an absl::Status to main, which prints at most
// one line on standard error and exits with the code the status calls for:
//
//   kind of failure                                  line on stderr       exit code
//   the server refused or could not be reached       rwgctl: CODE: text   1  (RpcError)
//   a command-line value refused before any call     rwgctl: text         2  (ArgumentError)
//   any other local problem (unreadable file, ...)   rwgctl: text         1  (any other status)
//   an answer that is a failure in itself            (none)               1  (QuietFailure)
//
// Parse errors of the command line itself (unknown option, missing argument) exit 2 as well;
// CLI11 reports those before any command runs.
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace rwg::rwgctl {

// The name of a gRPC code (gRPC and absl share the numbering), e.g. "INVALID_ARGUMENT"; "ERROR"
// for a number outside it.
std::string CodeName(int code);

// An RPC's status: OK stays OK, a failure keeps its code and the server's message.
absl::Status RpcError(const grpc::Status& status);

// A value given on the command line that rwgctl refuses itself; `message` names the flag.
absl::Status ArgumentError(absl::string_view message);
// "<flag>: <message>" as an ArgumentError.
absl::Status FlagError(absl::string_view flag, absl::string_view message);

// A failure already shown by the command's own output.
absl::Status QuietFailure();

// What main does with a command's status.
struct Outcome {
  int exit_code = 0;
  std::string message;  // printed as "rwgctl: <message>"; empty: nothing printed
};
Outcome OutcomeOf(const absl::Status& status);

}  // namespace rwg::rwgctl
