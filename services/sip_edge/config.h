// The options of `sip-edge` beyond those every service shares (core/service_main.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/core/options.h"
#include "services/sip_edge/edge.h"

namespace rwg::sip_edge {

struct Config {
  Config();

  // Fields of `edge` the options set directly; the others come from the options below.
  EdgeOptions edge;
  std::string sip_cert_file;
  std::string sip_key_file;
  // MD5 first: many SIP stacks answer only the first challenge and know only MD5; those that
  // give up on any other algorithm get MD5 alone (digest-md5-only-user-agents).
  std::string algorithms = "md5,sha-256";
  std::string md5_only = "baresip";
  int config_refresh_ms = 2000;
  std::string relay_token_file;
  int ban_seconds = 300;
  int window_seconds = 2;
  int auth_window_seconds = 300;
  int auth_ban_seconds = 600;

  void Register(core::Options& options);
  // Errors name the option. The files the options name are read at start.
  absl::Status Validate() const;
  // The edge's options: digest algorithms, MD5-only user agents, protection windows.
  // Validate's errors.
  absl::StatusOr<EdgeOptions> Edge() const;
  // Whether a listener waits for the gateway configuration to choose it ("config").
  bool ListenersFromConfig() const;
};

}  // namespace rwg::sip_edge
