// Temporary bans of abusive SIP sources, shared by every sip-edge instance and listed or lifted
// by the admin (rwgctl ban). Redis: rwg:ban:<id> JSON, expiring with the ban. Ids:
//   src:<ip>           every request from the address is dropped (request flood)
//   auth:<ip>|<user>   REGISTERs for the user from the address are refused (password guessing);
//                      other users behind the same address are not affected
#pragma once

#include <string>
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
std::string AuthBanId(const std::string& ip, const std::string& user);

class BanStore {
 public:
  explicit BanStore(RedisClient& redis) : redis_(redis) {}
  absl::Status Put(const Ban& ban);
  absl::StatusOr<std::vector<Ban>> List();
  // False when no such ban.
  absl::StatusOr<bool> Remove(const std::string& id);

 private:
  RedisClient& redis_;
};

}  // namespace rwg::core
