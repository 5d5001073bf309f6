#include "services/control/config.h"

#include "absl/strings/str_cat.h"
#include "services/core/service_main.h"

namespace rwg::control {
namespace {

struct Range {
  const char* option;
  int Config::*field;
  int min;
  int max;
};

constexpr Range kRanges[] = {
    {"token-ttl-seconds", &Config::token_ttl_seconds, 60, 86400},
    {"login-max-concurrent", &Config::login_max_concurrent, 1, 64},
    {"login-source-failures", &Config::login_source_failures, 1, 1000000},
    {"login-user-failures", &Config::login_user_failures, 1, 1000000},
    {"login-failure-window-seconds", &Config::login_window_seconds, 1, 86400},
    {"login-lockout-seconds", &Config::login_lockout_seconds, 1, 86400},
    {"login-table-size", &Config::login_table_size, 1, 10000000},
};

CLI::Range RangeOf(const char* option) {
  for (const Range& r : kRanges) {
    if (std::string_view(r.option) == option) return CLI::Range(r.min, r.max);
  }
  return CLI::Range(0, 0);
}

}  // namespace

void Config::Register(core::Options& o) {
  o.Add("admin-user", admin_user, "name of the first admin account");
  o.Add("admin-password-file", admin_password_file,
        "file with the first admin's password; generated when absent");
  o.Add("initial-admin-password-out", initial_admin_password_out,
        "write a generated first admin password to this file instead of stderr");
  o.Add("token-ttl-seconds", token_ttl_seconds, "lifetime of an admin session token")
      ->check(RangeOf("token-ttl-seconds"));
  o.Add("login-max-concurrent", login_max_concurrent,
        "password checks (32 MiB of scrypt each) at once; more are refused at once")
      ->check(RangeOf("login-max-concurrent"));
  o.Add("login-source-failures", login_source_failures,
        "failed logins from one address (IPv6: one /64) that lock it out")
      ->check(RangeOf("login-source-failures"));
  o.Add("login-user-failures", login_user_failures,
        "failed logins for one username, from any address, that lock it out")
      ->check(RangeOf("login-user-failures"));
  o.Add("login-failure-window-seconds", login_window_seconds,
        "failures count within this sliding window")
      ->check(RangeOf("login-failure-window-seconds"));
  o.Add("login-lockout-seconds", login_lockout_seconds,
        "how long a locked-out address or username is refused")
      ->check(RangeOf("login-lockout-seconds"));
  o.Add("login-table-size", login_table_size,
        "addresses and usernames tracked each; the least recently failed make room")
      ->check(RangeOf("login-table-size"));
  o.Add("public-name", public_name, "public host name written into the initial configuration");
}

absl::Status Config::Validate() const {
  for (const Range& r : kRanges) {
    const int v = this->*r.field;
    if (v < r.min || v > r.max) {
      return core::OptionError(r.option,
                               absl::StrCat(v, " is not between ", r.min, " and ", r.max));
    }
  }
  return absl::OkStatus();
}

LoginLimits Config::login() const {
  LoginLimits l;
  l.max_concurrent = login_max_concurrent;
  l.source_failures = login_source_failures;
  l.user_failures = login_user_failures;
  l.window = absl::Seconds(login_window_seconds);
  l.lockout = absl::Seconds(login_lockout_seconds);
  l.max_entries = static_cast<size_t>(login_table_size);
  return l;
}

}  // namespace rwg::control
