// config get, config set: the gateway configuration, read and changed field by field.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterConfig(CommandLine& cli);

// The flattened field names of a message type, e.g. "icp.host".
std::vector<std::string> FieldNames(const google::protobuf::Descriptor* d);

// Sets `path` (e.g. "icp.host") in `msg` from text: strings as given, numbers, booleans
// (true/yes/on/1, false/no/off/0), enums by name in any case (not the zero value), repeated
// fields from a comma-separated list. An error names the path and what it accepts.
absl::Status SetByPath(google::protobuf::Message& msg, const std::string& path,
                       const std::string& value);

// The update `config set` sends for "field=value" assignments (every field in the mask).
absl::StatusOr<admin::v1::UpdateConfigRequest> ConfigUpdate(
    const std::vector<std::string>& assignments);

}  // namespace rwg::rwgctl
