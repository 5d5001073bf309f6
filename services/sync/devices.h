// The SIP devices as the sync API gives them out: read from Redis in one step with the
// devices' revision, their set-side passwords opened, and written out as the device list
// (JSON, paged), as devices_mbg.csv (Login,NA,Password) and inside a changes answer.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "rwg/admin/v1/admin.pb.h"
#include "services/core/crypto.h"
#include "services/core/device_changes.h"
#include "services/core/redis.h"

namespace rwg::sync {

// A device as the API gives it out: set_password in clear, icp_password cleared (never given
// out), and the revision of its last write (0: last written before rwg kept revisions per
// device).
struct SyncDevice {
  admin::v1::Device device;
  int64_t revision = 0;
};

struct DeviceSnapshot {
  int64_t revision = 0;
  // By set-side username.
  std::map<std::string, SyncDevice> devices;
  // Records that could not be read (damaged, or a password that does not open): left out and
  // logged, never fatal to the whole list.
  int damaged = 0;
};

class DeviceReader {
 public:
  DeviceReader(core::RedisClient& redis, const core::SecretBox& box) : redis_(redis), box_(box) {}
  // Every device and the revision they are at (one Redis script: consistent).
  absl::StatusOr<DeviceSnapshot> Read();
  // The devices named (those still there), for a changes answer.
  absl::StatusOr<std::map<std::string, SyncDevice>> ReadSome(
      const std::vector<std::string>& set_usernames);

 private:
  // The device of a stored record, password opened; an error names what is wrong.
  absl::StatusOr<admin::v1::Device> Open(const std::string& user, const std::string& json) const;

  core::RedisClient& redis_;
  const core::SecretBox& box_;
};

// One device as JSON: id (the set-side username), set_username, set_password, icp_username,
// description, mac, site, location, updated (unix seconds), revision.
std::string DeviceJson(const SyncDevice& d);
// {"revision": N, "devices": [...], "next_page_token": "..."}: at most `page_size` devices
// after the set-side username `after` ("" from the start), in username order.
std::string DevicesJson(const DeviceSnapshot& s, const std::string& after, size_t page_size);
// devices_mbg.csv: "Login,NA,Password" then one row per device (set-side username, ICP-side
// username, set-side password), RFC 4180 quoting, CRLF, every cell formula-safe.
std::string MbgCsv(const DeviceSnapshot& s);
// {"revision": N, "changes": [{"revision", "op", "set_username", "set_password_changed",
// "device"}], "more": bool}; "device" is the device as it is now, when it still exists.
absl::StatusOr<std::string> ChangesJson(const core::DeviceChangeLog& log, DeviceReader& reader);

}  // namespace rwg::sync
