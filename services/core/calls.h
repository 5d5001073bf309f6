// Calls through the SIP edge, as kept in Redis (SIP edge part 2): each active call's dialog
// state, so that `rwgctl call list|show|hangup` sees every instance's calls and a surviving
// instance can end the calls of one that died.
//
// Redis: rwg:call:<id> holds the call's JSON record (24 h expiry, rewritten at each change),
// the set rwg:calls their ids; control asks the instance holding a call to end it by publishing
// "hangup <id>" on rwg:edge:events.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "services/core/keys.h"
#include "services/core/redis.h"

namespace rwg::core {

// The records of the calls `ids`, in order (nil for a call gone since), read a few hundred at
// a time (MGET).
absl::StatusOr<std::vector<RedisReply>> ReadCallRecords(RedisClient& redis,
                                                        const std::vector<std::string>& ids);

}  // namespace rwg::core
