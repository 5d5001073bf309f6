// Small waits shared by the unit tests that run real servers.
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace rwg::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick; 0 when it gave none).
int FreeTcpPort();

// Polls `condition` every `step` until it holds (true) or `timeout` passes (its last answer).
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(10),
                absl::Duration step = absl::Milliseconds(100));

}  // namespace rwg::testing
