// sync consumer add|list|enable|disable|reset|delete and sync token list|approve|reject|renew|
// revoke: the sync API's OAuth consumers (the iPBX) and their tokens (docs/sync-api.md).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterSync(CommandLine& cli);

// `sync consumer add`'s request, its values checked before any call (ArgumentError naming the
// flag: an id of more than 40 characters or not printable ASCII, a source that is not an IP
// address or CIDR).
absl::StatusOr<admin::v1::AddSyncConsumerRequest> AddSyncConsumerRequestOf(
    const std::string& name, const std::string& id, const std::vector<std::string>& sources,
    const std::string& callback_url = "");

Table SyncConsumersTable(const admin::v1::ListSyncConsumersResponse& resp);
Table SyncTokensTable(const admin::v1::ListSyncTokensResponse& resp);

}  // namespace rwg::rwgctl
