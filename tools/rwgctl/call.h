// call list|show|hangup: calls through the SIP edge, on every instance.
#pragma once

#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterCall(CommandLine& cli);

// `call list`: one row per call.
Table CallsTable(const admin::v1::ListCallsResponse& resp);

// `call show`: one call in full.
FieldRows CallFields(const admin::v1::Call& c);

}  // namespace rwg::rwgctl
