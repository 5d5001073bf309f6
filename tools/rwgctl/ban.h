// ban list|remove: temporary bans of abusive SIP sources.
#pragma once

#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterBan(CommandLine& cli);

// `ban list`: one row per ban.
Table BansTable(const admin::v1::ListBansResponse& resp);

}  // namespace rwg::rwgctl
