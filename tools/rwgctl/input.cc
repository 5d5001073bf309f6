#include "tools/rwgctl/input.h"

#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tools/rwgctl/errors.h"

namespace rwg::rwgctl {
namespace {

std::string ReadAll(std::istream& in) {
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  if (path == "-") return ReadAll(std::cin);
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return ReadAll(in);
}

std::string DefaultTokenFile() {
  if (const char* d = std::getenv("RWG_CONFIG_DIR")) return absl::StrCat(d, "/token");
  if (const char* x = std::getenv("XDG_CONFIG_HOME")) return absl::StrCat(x, "/rwg/token");
  const char* home = std::getenv("HOME");
  return absl::StrCat(home ? home : ".", "/.config/rwg/token");
}

absl::StatusOr<std::string> ReadSecret(const char* env, const std::string& prompt,
                                       bool from_stdin) {
  if (from_stdin) {
    std::string line;
    std::getline(std::cin, line);
    return std::string(absl::StripTrailingAsciiWhitespace(line));
  }
  if (const char* v = std::getenv(env)) return std::string(v);
  if (!isatty(STDIN_FILENO)) {
    return absl::FailedPreconditionError(absl::StrCat("no terminal for the prompt '", prompt,
                                                      "': set ", env, " or use --password-stdin"));
  }
  std::cerr << prompt << ": " << std::flush;
  termios old{};
  tcgetattr(STDIN_FILENO, &old);
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  std::string line;
  std::getline(std::cin, line);
  tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::cerr << "\n";
  return line;
}

absl::StatusOr<std::optional<std::string>> ReadPasswordFlags(const std::string& password_file,
                                                             bool password_stdin) {
  if (!password_file.empty() && password_stdin) {
    return ArgumentError("--password-file and --password-stdin: give one");
  }
  std::string password;
  if (!password_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile(password_file);
    if (!text.ok()) {
      return absl::NotFoundError(absl::StrCat("--password-file: ", text.status().message()));
    }
    password = text->substr(0, text->find('\n'));
  } else if (password_stdin) {
    std::string line;
    std::getline(std::cin, line);
    password = std::move(line);
  } else {
    return std::nullopt;
  }
  password = std::string(absl::StripSuffix(password, "\r"));
  if (password.empty()) {
    return FlagError(password_stdin ? "--password-stdin" : "--password-file",
                     "the password is empty");
  }
  return password;
}

}  // namespace rwg::rwgctl
