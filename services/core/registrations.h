// Registrations in Redis, written by sip-edge instances, read by control (rwgctl registration):
//   rwg:reg:<set_username>       JSON binding, expires with the registration
//   rwg:reg:icp:<icp_username>   set_username, same expiry
//   rwg:reg:active               sorted set: set_username scored by expiry (ms); licence count
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/core/redis.h"

namespace rwg::core {

struct Binding {
  std::string set_username;
  std::string icp_username;
  std::vector<std::string> contacts;  // as the phone registered them
  std::string source;                 // ip:port the phone connects from
  std::string transport;              // tls, tcp or udp
  std::string instance;               // sip-edge instance holding the connection
  std::string connection;             // connection id within that instance
  bool reachable = true;              // false once the phone's connection is gone
  absl::Time since;
  absl::Time expires_at;
};

std::string BindingToJson(const Binding& b);
absl::StatusOr<Binding> BindingFromJson(const std::string& json);

class BindingStore {
 public:
  explicit BindingStore(RedisClient& redis) : redis_(redis) {}

  enum class Reservation { kRefused, kNew, kExisting };
  struct Reserved {
    Reservation reservation = Reservation::kRefused;
    std::optional<Binding> previous;  // the binding stored before, if any (even expired)
  };
  // Counts `set_username` against `limit` until `hold_until` unless it is counted already,
  // and returns the binding stored so far: one round trip for both.
  absl::StatusOr<Reserved> Reserve(const std::string& set_username, uint32_t limit, absl::Time now,
                                   absl::Time hold_until);

  // The Lua calls behind Reserve and Put, for clients that send them asynchronously.
  struct ScriptCall {
    const std::string* script;
    std::vector<std::string> keys;
    std::vector<std::string> args;
  };
  static ScriptCall ReserveCall(const std::string& set_username, uint32_t limit, absl::Time now,
                                absl::Time hold_until);
  static absl::StatusOr<Reserved> ParseReserved(const RedisReply& reply);
  static ScriptCall PutCall(const Binding& b, absl::Time now);
  // The Redis key of a binding.
  static std::string Key(const std::string& set_username);
  // Gives back a kNew reservation that did not become a registration.
  absl::Status Release(const std::string& set_username);
  absl::Status Put(const Binding& b);
  absl::Status Remove(const std::string& set_username, const std::string& icp_username);
  // Release and Remove without blocking: `done` gets what Redis answered, on `redis`'
  // callback thread.
  static void Release(const std::string& set_username, AsyncRedisCommands& redis,
                      std::function<void(absl::Status)> done);
  static void Remove(const std::string& set_username, const std::string& icp_username,
                     AsyncRedisCommands& redis, std::function<void(absl::Status)> done);
  // Get and SetUsernameForIcp without blocking, likewise.
  static void Get(const std::string& set_username, AsyncRedisCommands& redis,
                  std::function<void(absl::StatusOr<std::optional<Binding>>)> done);
  static void SetUsernameForIcp(
      const std::string& icp_username, AsyncRedisCommands& redis,
      std::function<void(absl::StatusOr<std::optional<std::string>>)> done);
  absl::StatusOr<std::optional<Binding>> Get(const std::string& set_username);
  absl::StatusOr<std::optional<std::string>> SetUsernameForIcp(const std::string& icp_username);
  absl::StatusOr<int64_t> CountActive(absl::Time now);
  // Every binding that has not expired at `now`, ordered by set_username.
  absl::StatusOr<std::vector<Binding>> ListActive(absl::Time now);

 private:
  // What both forms of each call send, and what their replies say.
  static std::vector<std::string> ReleaseCommand(const std::string& set_username);
  static ScriptCall RemoveCall(const std::string& set_username, const std::string& icp_username);
  static std::vector<std::string> GetCommand(const std::string& set_username);
  static absl::StatusOr<std::optional<Binding>> ParseGet(const RedisReply& reply);
  static std::vector<std::string> IcpCommand(const std::string& icp_username);
  static std::optional<std::string> ParseIcp(const RedisReply& reply);

  RedisClient& redis_;
};

}  // namespace rwg::core
