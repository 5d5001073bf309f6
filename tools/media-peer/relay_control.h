// How rwg-media-peer sets up and tears down one relayed stream, whatever the relay: the rwg
// media relay (gRPC RelayService) or rtpengine (ng protocol over UDP).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "services/media_relay/srtp.h"
#include "tools/media-peer/net.h"

namespace rwg::media_peer {

// One end of a stream as the relay must know it: where it receives, and the key it
// encrypts with (kNone for plain RTP).
struct EndpointPlan {
  SocketAddress rtp;
  SocketAddress rtcp;
  media_relay::SrtpKey key;
};

struct StreamPlan {
  int index = 0;
  std::string call_id;
  EndpointPlan phone;  // the set leg's remote end
  EndpointPlan ipbx;   // the ICP leg's remote end
};

// The relay's side of one leg: where that end sends RTP and RTCP, and the key the relay
// encrypts with toward that end (kNone for plain RTP).
struct RelayLeg {
  SocketAddress rtp;
  SocketAddress rtcp;
  media_relay::SrtpKey key;
};

struct Allocation {
  std::string id;  // the relay's session id (rwg), or the call id (rtpengine)
  RelayLeg set;
  RelayLeg icp;
};

class RelayControl {
 public:
  virtual ~RelayControl() = default;
  // Checks that the relay answers before any stream is set up.
  virtual absl::Status Probe() = 0;
  // Error messages start with the operation that failed, e.g. "Allocate: UNAVAILABLE: ...".
  virtual absl::StatusOr<Allocation> Allocate(const StreamPlan& plan) = 0;
  virtual absl::Status Release(const StreamPlan& plan, const Allocation& allocation) = 0;
  // What the relay said about its sessions when they were released (counters), for the
  // report; null when it says nothing useful.
  virtual nlohmann::json ReleaseSummary() const { return nullptr; }
};

}  // namespace rwg::media_peer
