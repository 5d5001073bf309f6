// Temporary bans of abusive SIP sources, shared by every sip-edge instance and listed or lifted
// by the admin (rwgctl ban). Redis: rwg:ban:<id> JSON, expiring with the ban. Ids:
//   src:<ip>           every request from the address is dropped (request flood)
//   auth:<ip>|<user>   REGISTERs for the user from the address are refused (password guessing);
//                      other users behind the same address are not affected. <user> is
//                      BanUserKey(digest username): bounded, whatever a phone sends
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/core/redis.h"

namespace rwg::core {

struct Ban {
  std::string id;
  std::string kind;    // "source" or "auth"
  std::string source;  // ip
  std::string user;    // auth bans only
  std::string reason;
  std::string instance;
  absl::Time since;
  absl::Time until;
};

std::string SourceBanId(const std::string& ip);
// `user` is the digest username as received; the id holds BanUserKey(user).
std::string AuthBanId(const std::string& ip, const std::string& user);

// What a digest username is known by in bans and their counters: the name itself when it is
// at most kBanUserPlainMax printable ASCII characters other than '#' and '\\'; otherwise its
// first kBanUserPlainMax bytes (printable ASCII kept, other bytes as \xNN) then '#' and 16 hex
// digits of the SHA-256 of the whole name. At most 4 * 32 + 17 bytes of ASCII, and two names
// share a key only if their SHA-256 share 64 bits.
inline constexpr size_t kBanUserPlainMax = 32;
std::string BanUserKey(const std::string& user);

// A ban record as BanStore writes it (JSON; `since`/`until` in Unix seconds) and reads it back.
// BanFromJson leaves `id` empty: a listed ban's id is its key's, what removing it deletes. A
// damaged record (not a JSON object, a field of the wrong type, a number out of range) is a
// DataLoss error, never an exception.
std::string BanToJson(const Ban& ban);
absl::StatusOr<Ban> BanFromJson(std::string_view json);

class BanStore {
 public:
  explicit BanStore(RedisClient& redis) : redis_(redis) {}
  absl::Status Put(const Ban& ban);
  // Put without blocking: `done` gets what Redis answered, on `redis`' callback thread.
  static void Put(const Ban& ban, AsyncRedisCommands& redis,
                  std::function<void(absl::Status)> done);
  absl::StatusOr<std::vector<Ban>> List();
  // False when no such ban.
  absl::StatusOr<bool> Remove(const std::string& id);

 private:
  // The command behind both forms of Put.
  static std::vector<std::string> PutCommand(const Ban& ban);

  RedisClient& redis_;
};

}  // namespace rwg::core
