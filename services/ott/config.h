// The options of `ott` beyond those every service shares (core/service_main.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "services/core/options.h"
#include "services/ott/proxy.h"
#include "services/ott/state.h"

namespace rwg::ott {

struct Config {
  std::string listen = "0.0.0.0:8443";
  std::string cert_dir;
  int threads = 2;
  int max_connections = 20000;
  int max_connections_per_source = 64;
  int requests_per_source = 50;
  int ban_refusals = 30;
  int backend_connect_timeout_seconds = 5;
  int backend_timeout_seconds = 30;
  int header_timeout_seconds = 10;
  int idle_timeout_seconds = 60;
  int session_minutes = 480;
  int login_failures = 5;
  int lockout_minutes = 15;
  int max_request_body_mib = 64;
  bool access_log = true;

  void Register(core::Options& options);
  // Errors name the option.
  absl::Status Validate() const;
  ProxyOptions Proxy() const;
  StateOptions State() const;
};

}  // namespace rwg::ott
