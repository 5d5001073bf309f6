// The options of `sync` beyond those every service shares (core/service_main.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "services/core/options.h"
#include "services/sync/api.h"
#include "services/sync/callbacks.h"
#include "services/sync/http_server.h"

namespace rwg::sync {

struct Config {
  HttpServerOptions server;
  int request_timeout_seconds = 15;
  int idle_timeout_seconds = 60;
  int window_seconds = 600;
  int max_wait_seconds = 60;
  int max_waiters = 256;
  std::string realm = "rwg";
  std::string callback_ca_file;
  int callback_timeout_seconds = 5;

  void Register(core::Options& options);
  // Errors name the option.
  absl::Status Validate() const;
  HttpServerOptions Server() const;
  SyncApiOptions Api() const;
  HttpsPosterOptions Callbacks() const;
};

}  // namespace rwg::sync
