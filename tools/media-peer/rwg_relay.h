// RelayControl for the rwg media relay: RelayService.Allocate / Delete over gRPC.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/media-peer/relay_control.h"

namespace rwg::media_peer {

struct RwgRelayOptions {
  std::string target;      // host:port of the relay's gRPC API
  std::string ca_file;     // PEM roots for TLS; empty: plaintext
  std::string token_file;  // API token sent as "authorization: Bearer <token>"; empty: none
  absl::Duration timeout = absl::Seconds(5);
};

// FAILED_PRECONDITION when the CA or token file cannot be read.
absl::StatusOr<std::unique_ptr<RelayControl>> MakeRwgRelay(const RwgRelayOptions& options);

}  // namespace rwg::media_peer
