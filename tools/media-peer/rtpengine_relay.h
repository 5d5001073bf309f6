// RelayControl for rtpengine, driven over its ng control protocol (bencoded dictionaries over
// UDP): the phone's SDP goes in an `offer`, the iPBX's in an `answer`, and rtpengine's
// rewritten SDPs say where each end sends and which SDES key rtpengine uses toward it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/media-peer/relay_control.h"

namespace rwg::media_peer {

struct RtpengineOptions {
  std::string ng;  // host:port of rtpengine's --listen-ng
  absl::Duration timeout = absl::Seconds(5);
  // Added to the "flags" list of every offer and answer (e.g. "strict-source").
  std::vector<std::string> extra_flags;
};

absl::StatusOr<std::unique_ptr<RelayControl>> MakeRtpengineRelay(const RtpengineOptions& options);

}  // namespace rwg::media_peer
