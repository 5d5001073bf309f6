// Read access to the SIP devices that control stores in Redis (R-DEV), for the services that
// need their secrets: sip-edge (digest passwords), sync and tma later. Only control writes.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/core/crypto.h"
#include "services/core/redis.h"

namespace rwg::core {

// Redis keys shared with control (docs/architecture.md).
inline constexpr char kDevicesKey[] = "rwg:devices";
inline constexpr char kDevicesByMacKey[] = "rwg:devices:mac";
inline constexpr char kDevicesByIcpKey[] = "rwg:devices:icp";
inline constexpr char kConfigKey[] = "rwg:config";

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

class DeviceDirectory {
 public:
  DeviceDirectory(RedisClient& redis, const SecretBox& box) : redis_(redis), box_(box) {}

  absl::StatusOr<std::optional<DeviceSecrets>> BySetUsername(const std::string& user);
  absl::StatusOr<std::optional<DeviceSecrets>> ByIcpUsername(const std::string& icp_user);

 private:
  RedisClient& redis_;
  const SecretBox& box_;
};

}  // namespace rwg::core
