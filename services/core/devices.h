// Read access to the SIP devices that control stores in Redis (R-DEV), for the services that
// need their secrets: sip-edge (digest passwords) and tma (the devices a CSV names). Only
// control writes.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

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
  std::string mac;  // as declared (may be empty)
  std::string site;
};

// Devices by set-side or ICP-side username. With `cache` set, devices found are kept in
// memory (unsealed); when Revalidate() sees that control changed any device, it reads the
// cached ones again. A service that calls Revalidate() every second serves a change within a
// second, without a Redis round trip per lookup. Unknown users are never cached (a guesser
// cannot fill the memory).
class DeviceDirectory {
 public:
  DeviceDirectory(RedisClient& redis, const SecretBox& box, bool cache = false)
      : redis_(redis), box_(box), cache_enabled_(cache) {}

  absl::StatusOr<std::optional<DeviceSecrets>> BySetUsername(const std::string& user);
  absl::StatusOr<std::optional<DeviceSecrets>> ByIcpUsername(const std::string& icp_user);
  // BySetUsername for many users, read from Redis (never from the cache) in round trips of
  // at most kBatch users: one answer per user, in order. A record that cannot be read (not
  // JSON, a secret that does not open) fails the whole call. Without `icp_passwords` the
  // ICP-side passwords stay sealed and the answers' icp_password empty (a caller that does not
  // need them never holds them).
  static constexpr size_t kBatch = 512;
  absl::StatusOr<std::vector<std::optional<DeviceSecrets>>> BySetUsernames(
      const std::vector<std::string>& users, bool icp_passwords = true);

  // BySetUsername without blocking: a cached device is handed to `done` before this returns;
  // otherwise the device is read through `redis` and `done` runs with what it answered (on
  // the thread that runs `redis`' callbacks).
  using DeviceCallback = std::function<void(absl::StatusOr<std::optional<DeviceSecrets>>)>;
  void BySetUsername(const std::string& user, AsyncRedisCommands& redis, DeviceCallback done);
  // The cached device of `user`, without Redis (nullopt: not cached, or no cache).
  std::optional<DeviceSecrets> Cached(const std::string& user) const;

  // When the devices' revision in Redis changed since the last call, reads the cached devices
  // again (one round trip; those removed or unreadable leave the cache).
  absl::Status Revalidate();
  size_t cached() const;

 private:
  // The read of `user`'s record and what its reply says, shared by both lookups.
  static std::vector<std::string> LoadCommand(const std::string& user);
  absl::StatusOr<std::optional<DeviceSecrets>> Parse(const std::string& user,
                                                     const RedisReply& reply,
                                                     bool icp_password = true) const;
  // Keeps a device read at cache generation `generation` (dropped when Revalidate cleared
  // the cache since: it may predate control's change).
  void Remember(const DeviceSecrets& d, uint64_t generation);
  uint64_t generation() const;

  RedisClient& redis_;
  const SecretBox& box_;
  const bool cache_enabled_;
  mutable absl::Mutex mu_;
  std::string revision_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // cache clears so far
  std::unordered_map<std::string, DeviceSecrets> by_set_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::string> set_by_icp_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::core
