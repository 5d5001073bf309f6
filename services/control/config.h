// The options of `control` beyond those every service shares (core/service_main.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "services/control/login_guard.h"
#include "services/core/options.h"

namespace rwg::control {

struct Config {
  std::string admin_user = "admin";
  std::string admin_password_file;
  std::string initial_admin_password_out;
  int token_ttl_seconds = 3600;
  int login_max_concurrent = LoginLimits().max_concurrent;
  int login_source_failures = LoginLimits().source_failures;
  int login_user_failures = LoginLimits().user_failures;
  int login_window_seconds = 300;
  int login_lockout_seconds = 300;
  int login_table_size = 10000;
  std::string public_name;

  void Register(core::Options& options);
  // Errors name the option.
  absl::Status Validate() const;
  LoginLimits login() const;
};

}  // namespace rwg::control
