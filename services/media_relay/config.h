// The options of `media-relay` beyond those every service shares (core/service_main.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/core/options.h"
#include "services/media_relay/relay.h"
#include "services/media_relay/srtp.h"

namespace rwg::media_relay {

struct Config {
  Config();

  std::string api_token_file;
  // Fields of `relay` the options set directly; the others come from the options below.
  RelayOptions relay;
  std::string advertise_grpc;
  std::string srtp_engine = "openssl";
  std::string pool_part = "1/1";
  std::string io = "uring";
  std::string worker_scheduling = "other";
  int idle_seconds = 60;
  int orphan_seconds = 3600;

  void Register(core::Options& options);
  // Errors name the option.
  absl::Status Validate() const;
  // The relay's options: the port range narrowed to this instance's pool part, the io mode,
  // the scheduling and the timeouts. Validate's errors.
  absl::StatusOr<RelayOptions> Relay() const;
  absl::StatusOr<SrtpEngine> Engine() const;
};

}  // namespace rwg::media_relay
