// Keeps an exception out of a gRPC handler: whatever the handler's body throws is answered
// INTERNAL, logged on one line and counted, and the service keeps running. gRPC itself would
// answer UNKNOWN without a trace of what happened.
#pragma once

#include <functional>

#include "absl/status/status.h"

namespace rwg::control {

// Runs `body`. A thrown std::exception or anything else becomes INTERNAL "internal error in
// <method>; see the control log", after a log line (method, what()) and `on_throw()`.
absl::Status RunCatching(const char* method, const std::function<absl::Status()>& body,
                         const std::function<void()>& on_throw = {});

}  // namespace rwg::control
