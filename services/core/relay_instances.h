// The media relay instances' heartbeats (R-MEDIA), as kept in Redis: the hash
// rwg:relay:instances maps each instance's name to its heartbeat, a JSON object media-relay
// rewrites every second (EncodeRelayHeartbeat); sip-edge reads them to pick the instance of a
// new session (DecodeRelayHeartbeat). The one codec of that record.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rwg::core {

// One instance's heartbeat. JSON fields: "grpc", "media", "ports_free", "ports_used",
// "sessions", "draining", "seen" (Unix seconds). A missing field is its default; unknown
// fields are ignored.
struct RelayHeartbeat {
  std::string grpc;   // its API address (host:port; port 0 while it starts)
  std::string media;  // the address its media ports are on
  int64_t ports_free = 0;
  int64_t ports_used = 0;
  int64_t sessions = 0;
  bool draining = false;  // takes no new session
  int64_t seen_unix = 0;  // when it was written
  bool operator==(const RelayHeartbeat&) const = default;
};

// `h` as its JSON record (strings not UTF-8 get U+FFFD, JsonDump).
std::string EncodeRelayHeartbeat(const RelayHeartbeat& h);

// The heartbeat `text` (never throws). DataLoss when it is not a JSON object or a field has
// the wrong type or range; the message names the field ("relay heartbeat: seen: out of
// range"). A number with a fraction is cut to an integer.
absl::StatusOr<RelayHeartbeat> DecodeRelayHeartbeat(std::string_view text);

}  // namespace rwg::core
