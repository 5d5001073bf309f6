// Files holding secrets (the first admin's password, rwgctl's session token, a device export
// with passwords), written so that no other user can read them at any moment.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace rwg::control {

// Writes `content` to `path` with mode 0600, whatever the umask: a new temporary file in the
// same directory (created exclusively, mode 0600), written, flushed to disk, then renamed over
// `path`. Readers see the old file or the whole new one; a symbolic link at `path` is
// replaced, never followed. On failure nothing is left behind and the error names the path.
absl::Status WritePrivateFile(const std::string& path, absl::string_view content);

}  // namespace rwg::control
