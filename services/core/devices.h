// Read access to the SIP devices that control stores in Redis (R-DEV), for the services that
// need their secrets: sip-edge (digest passwords; the planned sync and tma services too). Only
// control writes.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/core/crypto.h"
#include "services/core/keys.h"
#include "services/core/redis.h"

namespace rwg::core {

// The additional authenticated data that binds a sealed device secret to its record.
std::string DeviceSecretContext(absl::string_view set_username, absl::string_view field);

struct DeviceSecrets {
  std::string set_username;
  std::string set_password;
  std::string icp_username;
  std::string icp_password;
  bool srtp_optional = false;
  std::string location;
};

// Devices by set-side or ICP-side username. With `cache` set, devices found are kept in
// memory (unsealed) until Revalidate() sees that control changed any device; a service that
// calls Revalidate() every second serves a change within a second, without a Redis round trip
// per lookup. Unknown users are never cached (a guesser cannot fill the memory).
class DeviceDirectory {
 public:
  DeviceDirectory(RedisClient& redis, const SecretBox& box, bool cache = false)
      : redis_(redis), box_(box), cache_enabled_(cache) {}

  absl::StatusOr<std::optional<DeviceSecrets>> BySetUsername(const std::string& user);
  absl::StatusOr<std::optional<DeviceSecrets>> ByIcpUsername(const std::string& icp_user);

  // Drops the cache when the devices' revision in Redis changed since the last call.
  absl::Status Revalidate();
  size_t cached() const;

 private:
  absl::StatusOr<std::optional<DeviceSecrets>> Load(const std::string& user);

  RedisClient& redis_;
  const SecretBox& box_;
  const bool cache_enabled_;
  mutable absl::Mutex mu_;
  std::string revision_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, DeviceSecrets> by_set_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::string> set_by_icp_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::core
