// emergency set|list|delete|resolve: special numbers routed by the phone's location.
#pragma once

#include <vector>

#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterEmergency(CommandLine& cli);

// One row per route.
Table RoutesTable(const std::vector<const admin::v1::EmergencyRoute*>& routes);

}  // namespace rwg::rwgctl
