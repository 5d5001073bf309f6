// relay list|allocate|update|show|delete|drain: the sessions of one media-relay instance
// (--server points at its API, --token-file holds its token).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "rwg/relay/v1/relay.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterRelay(CommandLine& cli);

// The flags of one leg ("set" or "icp"): --<leg>-suite, --<leg>-remote, --<leg>-key and, for
// update, --<leg>-new-key.
struct RelayLegFlags {
  std::string suite, remote, key;
  bool new_key = false;

  void Add(CLI::App* cmd, const std::string& leg, bool update);
  // Whether any of the leg's flags was given a value.
  bool Given() const { return !suite.empty() || !remote.empty() || !key.empty() || new_key; }
  // The leg of an allocation; a remote that is not host:port or a key that is not base64 is
  // refused (ArgumentError, naming the flag).
  absl::StatusOr<relay::v1::LegRequest> Request(const std::string& leg) const;
  // The same as a change to an existing session.
  absl::StatusOr<relay::v1::LegUpdate> Update(const std::string& leg) const;
};

// `relay list`: one row per session.
Table SessionsTable(const relay::v1::ListResponse& resp);

}  // namespace rwg::rwgctl
