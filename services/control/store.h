// Persistence of the control service. Small interfaces so that logic can be unit-tested with
// in-memory fakes; RedisControlStore implements them all on Redis (the system of record).
//
// Redis keys (docs/architecture.md):
//   rwg:config               string  GatewayConfig as JSON
//   rwg:hash                 string  {"key": sealed, "create_time": unix}
//   rwg:devices              hash    set_username -> Device JSON, passwords sealed
//   rwg:devices:mac          hash    MAC -> set_username
//   rwg:devices:icp          hash    icp_username -> set_username
//   rwg:devices:rev          integer incremented by every device write
//   rwg:devices:changes      zset    the device change log (core/device_changes.h)
//   rwg:admins               hash    username -> scrypt hash
//   rwg:session:<sha256>     string  {"user": ..., "exp": unix, "cred": digest of the password
//                                    hash}, expires with the session
//   rwg:events               pub/sub channel: "config", "hash", "devices"
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rwg/admin/v1/admin.pb.h"
#include "services/core/redis.h"

namespace rwg::control {

struct Session {
  std::string username;
  absl::Time expires_at;
  // Digest of the admin's password hash when the session began: a session whose digest no
  // longer matches the account (the password changed since) is revoked.
  std::string credential;
};

class AdminStore {
 public:
  virtual ~AdminStore() = default;
  virtual absl::StatusOr<std::optional<std::string>> GetAdminHash(const std::string& user) = 0;
  // Creates the account unless it exists; true when created.
  virtual absl::StatusOr<bool> CreateAdmin(const std::string& user, const std::string& hash) = 0;
  virtual absl::Status SetAdminHash(const std::string& user, const std::string& hash) = 0;
};

class SessionStore {
 public:
  virtual ~SessionStore() = default;
  // `id` is a digest of the token, never the token itself.
  virtual absl::Status PutSession(const std::string& id, const Session& s, absl::Duration ttl) = 0;
  virtual absl::StatusOr<std::optional<Session>> GetSession(const std::string& id) = 0;
  virtual absl::Status DeleteSession(const std::string& id) = 0;
};

// A single value updated by compare-and-set: nothing changes unless the stored value is still
// `expected` (empty: absent).
class ValueStore {
 public:
  virtual ~ValueStore() = default;
  virtual absl::StatusOr<std::optional<std::string>> Get() = 0;
  virtual absl::StatusOr<bool> CompareAndSet(const std::string& expected,
                                             const std::string& value) = 0;
};

enum class WriteMode { kCreate, kUpdate, kUpsert };

struct DeviceWriteResult {
  // Non-empty: nothing was written. Each names the device and the problem.
  std::vector<std::pair<std::string, std::string>> conflicts;
  int created = 0;
  int updated = 0;
  int64_t revision = 0;  // of the device revision the write made (core::kDevicesRevisionKey)
};

class DeviceStore {
 public:
  virtual ~DeviceStore() = default;
  // All or nothing. `devices` hold sealed passwords. `set_password_changed[i]`: whether
  // devices[i], when it exists already, gets a different set-side password (missing: no);
  // each device written is an entry of the device change log (core/device_changes.h).
  virtual absl::StatusOr<DeviceWriteResult> PutDevices(
      const std::vector<admin::v1::Device>& devices, WriteMode mode,
      const std::vector<bool>& set_password_changed) = 0;
  virtual absl::StatusOr<std::optional<admin::v1::Device>> GetDevice(const std::string& user) = 0;
  // Sorted by set_username.
  virtual absl::StatusOr<std::vector<admin::v1::Device>> ListDevices() = 0;
  virtual absl::StatusOr<bool> DeleteDevice(const std::string& user) = 0;
  virtual absl::StatusOr<int64_t> CountDevices() = 0;
};

class RedisControlStore final : public AdminStore, public SessionStore, public DeviceStore {
 public:
  explicit RedisControlStore(core::RedisClient& redis);

  absl::StatusOr<std::optional<std::string>> GetAdminHash(const std::string& user) override;
  absl::StatusOr<bool> CreateAdmin(const std::string& user, const std::string& hash) override;
  absl::Status SetAdminHash(const std::string& user, const std::string& hash) override;

  absl::Status PutSession(const std::string& id, const Session& s, absl::Duration ttl) override;
  absl::StatusOr<std::optional<Session>> GetSession(const std::string& id) override;
  absl::Status DeleteSession(const std::string& id) override;

  absl::StatusOr<DeviceWriteResult> PutDevices(
      const std::vector<admin::v1::Device>& devices, WriteMode mode,
      const std::vector<bool>& set_password_changed) override;
  absl::StatusOr<std::optional<admin::v1::Device>> GetDevice(const std::string& user) override;
  absl::StatusOr<std::vector<admin::v1::Device>> ListDevices() override;
  absl::StatusOr<bool> DeleteDevice(const std::string& user) override;
  absl::StatusOr<int64_t> CountDevices() override;

  ValueStore& config() { return *config_; }
  ValueStore& hash() { return *hash_; }

 private:
  core::RedisClient& redis_;
  std::unique_ptr<ValueStore> config_;
  std::unique_ptr<ValueStore> hash_;
};

// Device <-> stored JSON (proto field names).
// InvalidArgument when the device cannot be written as JSON (invalid UTF-8).
absl::StatusOr<std::string> DeviceToJson(const admin::v1::Device& d);
absl::StatusOr<admin::v1::Device> DeviceFromJson(const std::string& json);

}  // namespace rwg::control
