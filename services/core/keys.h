// Every Redis key and pub/sub channel rwg uses, in one place: the services name them from
// here, never as literals of their own (docs/architecture.md §3 describes each value). Lua
// scripts receive their keys as KEYS[] from these names; only a script's PUBLISH names a
// channel itself (control's store.cc, on kEventsChannel).
#pragma once

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rwg::core {

// Written by control.
inline constexpr char kConfigKey[] = "rwg:config";  // the gateway configuration
inline constexpr char kHashKey[] = "rwg:hash";      // the provisioning hash key, sealed
inline constexpr char kDevicesKey[] = "rwg:devices";
inline constexpr char kDevicesByMacKey[] = "rwg:devices:mac";
inline constexpr char kDevicesByIcpKey[] = "rwg:devices:icp";
// Incremented by every device write: readers that cache devices compare it.
inline constexpr char kDevicesRevisionKey[] = "rwg:devices:rev";
// Set-side username -> the revision of the device's last write (the sync API gives it out);
// written and deleted with the device, in the same script.
inline constexpr char kDeviceRevisionsKey[] = "rwg:devices:revs";
inline constexpr char kEmergencyKey[] = "rwg:emergency";
inline constexpr char kEmergencyRevisionKey[] = "rwg:emergency:rev";
inline constexpr char kAdminsKey[] = "rwg:admins";
inline std::string AdminSessionKey(absl::string_view token_digest) {
  return absl::StrCat("rwg:session:", token_digest);
}
inline constexpr char kEventsChannel[] = "rwg:events";  // "config", "hash", "devices"

// Written by sip-edge.
inline std::string BindingKey(absl::string_view set_username) {
  return absl::StrCat("rwg:reg:", set_username);
}
inline std::string IcpBindingKey(absl::string_view icp_username) {
  return absl::StrCat("rwg:reg:icp:", icp_username);
}
inline constexpr char kActiveBindingsKey[] = "rwg:reg:active";  // licences held
inline constexpr char kBanPrefix[] = "rwg:ban:";
inline constexpr char kCallsKey[] = "rwg:calls";
inline std::string CallKey(absl::string_view id) { return absl::StrCat("rwg:call:", id); }
inline constexpr char kEdgeInstancesKey[] = "rwg:edge:instances";
inline constexpr char kEdgeEventsChannel[] = "rwg:edge:events";

// Written by media-relay.
inline constexpr char kRelayInstancesKey[] = "rwg:relay:instances";
inline std::string RelaySessionKey(absl::string_view session_id) {
  return absl::StrCat("rwg:relay:session:", session_id);
}
inline std::string RelaySessionIndexKey(absl::string_view instance) {
  return absl::StrCat("rwg:relay:sessions:", instance);
}
inline constexpr char kRelayEventsChannel[] = "rwg:relay:events";

// Written by provisioning: the last fetch of each phone's <MAC>.cfg
// (services/core/phone_fetches.h), read by the deployment inventory (R-TMA).
inline constexpr char kPhoneFetchesKey[] = "rwg:prov:fetched";

// Written by control (consumers; approving, rejecting, renewing, revoking tokens) and sync
// (creating and exchanging tokens): services/core/sync_store.h.
inline constexpr char kSyncConsumersKey[] = "rwg:sync:consumers";
inline constexpr char kSyncConsumersByIdKey[] = "rwg:sync:consumers:id";
inline std::string SyncTokenKey(absl::string_view token) {
  return absl::StrCat("rwg:sync:token:", token);
}
inline constexpr char kSyncTokensKey[] = "rwg:sync:tokens";
// Device changes for the sync API (services/core/device_changes.h), appended by control's
// device writes.
inline constexpr char kDeviceChangesKey[] = "rwg:devices:changes";

// Written by sync: a consumer's change-callback delivery (services/core/sync_store.h,
// services/sync/callbacks.h) and the short lock one instance holds while it delivers.
inline std::string SyncCallbackKey(absl::string_view consumer) {
  return absl::StrCat("rwg:sync:callback:", consumer);
}
inline std::string SyncCallbackLockKey(absl::string_view consumer) {
  return absl::StrCat("rwg:sync:callback-lock:", consumer);
}
inline std::string SyncNonceKey(absl::string_view digest) {
  return absl::StrCat("rwg:sync:nonce:", digest);
}

// Written by tma (services/tma/store.h): download servers, deployments (their record, plan,
// files' content until done, the files done, the lease of the instance running one), the
// events log, the inventory and what tma last wrote on each server.
inline constexpr char kTmaServersKey[] = "rwg:tma:servers";
inline constexpr char kTmaDeploymentsKey[] = "rwg:tma:deployments";    // zset id by time
inline constexpr char kTmaActiveKey[] = "rwg:tma:deployments:active";  // set of ids to run
inline constexpr char kTmaEventsKey[] = "rwg:tma:events";              // zset by seq
inline constexpr char kTmaEventSeqKey[] = "rwg:tma:events:seq";
inline constexpr char kTmaInventoryKey[] = "rwg:tma:inventory";  // hash MAC -> JSON
inline std::string TmaDeploymentKey(absl::string_view id, absl::string_view part = "") {
  return part.empty() ? absl::StrCat("rwg:tma:dep:", id)
                      : absl::StrCat("rwg:tma:dep:", id, ":", part);
}
inline std::string TmaManifestKey(absl::string_view server) {
  return absl::StrCat("rwg:tma:server:", server, ":files");
}

}  // namespace rwg::core
