// The device change log: what the sync API's `GET /api/v1/changes?since=REV` answers
// (docs/sync-api.md). control's device writes (services/control/store.cc) append one entry
// per device to `rwg:devices:changes` in the script that writes the devices, scored by the
// revision (`rwg:devices:rev`) the write made, and keep the newest kDeviceChangesKept entries
// (never part of a revision: the oldest revision kept is whole).
//
// Each member is a JSON object {"rev": N, "op": "created"|"updated"|"deleted", "user":
// set_username, "pw": set-side password changed}; a write of several devices (a CSV import) is
// one revision with one entry per device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/core/redis.h"

namespace rwg::core {

struct DeviceChange {
  int64_t revision = 0;
  std::string op;  // "created" | "updated" | "deleted"
  std::string set_username;
  // True for a created device, and for an updated one whose set-side password changed.
  bool set_password_changed = false;
};

struct DeviceChangeLog {
  int64_t revision = 0;  // current rwg:devices:rev
  int64_t oldest = 0;    // oldest revision still kept, 0 if none
  std::vector<DeviceChange> changes;
  // More changes follow the last one returned: read again from its revision.
  bool more = false;
  // Not every change after `since` is kept any more (it is older than the oldest kept, or
  // `since` is ahead of the revision: Redis lost its data): the reader must read every device
  // again, then follow from `revision`.
  bool lost = false;
};

inline constexpr size_t kDeviceChangesKept = 10000;

// Changes with revision > since, oldest first (a revision's own in no particular order), at
// most `limit` (at least 1), read atomically
// with the revision. A revision's changes are never split: a page ends at the end of a
// revision, and holds more than `limit` only when one revision alone has more. DataLoss naming
// the field for a damaged entry.
absl::StatusOr<DeviceChangeLog> ReadDeviceChanges(RedisClient& redis, int64_t since, size_t limit);

}  // namespace rwg::core
