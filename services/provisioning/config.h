// The options of `provisioning` beyond those every service shares (core/service_main.h).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "services/core/options.h"
#include "services/provisioning/server.h"

namespace rwg::provisioning {

struct Config {
  Config();

  // Fields of `server` the options set directly; the durations come from the options below.
  ServerOptions server;
  std::string instance = "provisioning-0";
  std::string api_token_file;
  int ban_window_seconds = 60;
  int ban_seconds = 600;
  int idle_seconds = 30;
  int header_seconds = 10;
  int max_file_mb = 1024;
  int xml_timeout_ms = 5000;

  void Register(core::Options& options);
  // Errors name the option.
  absl::Status Validate() const;
  // The HTTPS server's options, durations included.
  ServerOptions Server() const;
  uint64_t max_file_bytes() const { return static_cast<uint64_t>(max_file_mb) << 20; }
};

}  // namespace rwg::provisioning
