// What rwgctl reads besides its command line: files (or standard input), secrets from the
// environment or the terminal, and where the session token is kept.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace rwg::rwgctl {

// The whole file at `path`; "-" reads standard input.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Where the login token is kept when --token-file is not given: $RWG_CONFIG_DIR/token,
// $XDG_CONFIG_HOME/rwg/token or ~/.config/rwg/token.
std::string DefaultTokenFile();

// A secret: one line of standard input when `from_stdin`, else the environment variable `env`
// if set, else asked on the terminal without echo (`prompt` names it).
absl::StatusOr<std::string> ReadSecret(const char* env, const std::string& prompt, bool from_stdin);

// A password given by --password-file (its first line) or --password-stdin (one line of
// standard input), a final CR dropped; nullopt when neither flag is given. Errors name the
// flag: both given, a file that cannot be read, an empty password.
absl::StatusOr<std::optional<std::string>> ReadPasswordFlags(const std::string& password_file,
                                                             bool password_stdin);

}  // namespace rwg::rwgctl
