// Creating, changing and deleting one SIP device, with the rules every writer follows: input
// normalised and validated (errors name the field), the set-side password generated when
// asked or in SSO mode, secrets sealed at rest, conflicts (MAC, ICP-side username) refused
// naming the other device, nothing written on any error, and the device change log told
// whether the set-side password changed. The admin API (admin_devices.cc) and the sync API
// (services/sync, for the iPBX declaring its devices) both write through it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rwg/admin/v1/admin.pb.h"
#include "services/control/store.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/random.h"

namespace rwg::control {

// The device fields a writer may change after creation.
const std::vector<std::string>& UpdatableDeviceFields();

// The stored configuration, or the default one when none is stored yet. `raw` (may be null)
// receives the stored text, empty when none (for compare-and-set).
absl::StatusOr<admin::v1::GatewayConfig> LoadGatewayConfig(ValueStore& config, std::string* raw);

class DeviceWrites {
 public:
  DeviceWrites(RedisControlStore& store, const core::SecretBox& box, core::Clock& clock,
               core::Random& rng)
      : store_(store), box_(box), clock_(clock), rng_(rng) {}

  // The new device, in clear (passwords included). InvalidArgument naming the field
  // ("device.mac: ..."), AlreadyExists for a conflict. `revision`, when given, gets the device
  // revision of the write.
  absl::StatusOr<admin::v1::Device> Create(admin::v1::Device d, bool generate_set_password,
                                           int64_t* revision = nullptr);
  // `changes.set_username` selects the device; the fields named in `mask` (of
  // UpdatableDeviceFields) take `changes`' values. NotFound when there is no such device.
  absl::StatusOr<admin::v1::Device> Update(const admin::v1::Device& changes,
                                           const std::vector<std::string>& mask,
                                           bool generate_set_password, int64_t* revision = nullptr);
  // NotFound when there is no such device.
  absl::Status Delete(const std::string& set_username);

  // The device's sealed secrets sealed / opened in place.
  void Seal(admin::v1::Device& d) const;
  absl::Status Open(admin::v1::Device& d) const;

 private:
  RedisControlStore& store_;
  const core::SecretBox& box_;
  core::Clock& clock_;
  core::Random& rng_;
};

}  // namespace rwg::control
