#include "services/core/device_changes.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/json.h"
#include "services/core/keys.h"

namespace rwg::core {
namespace {

// KEYS: revision, changes. ARGV: since, limit.
// Returns {revision, oldest, members (with scores, oldest first), more (0|1)}.
constexpr char kReadChanges[] = R"lua(
local rev = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local oldest = 0
if #first == 2 then oldest = tonumber(first[2]) end
local limit = tonumber(ARGV[2])
local items = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES',
                         'LIMIT', 0, limit + 1)
local more = 0
if #items > limit * 2 then
  more = 1
  local next_rev = items[limit * 2 + 2]
  local keep = limit
  while keep > 0 and items[keep * 2] == next_rev do keep = keep - 1 end
  if keep == 0 then
    -- One revision alone holds more than `limit`: all of it.
    items = redis.call('ZRANGEBYSCORE', KEYS[2], next_rev, next_rev, 'WITHSCORES')
    more = redis.call('ZCOUNT', KEYS[2], '(' .. next_rev, '+inf') > 0 and 1 or 0
  else
    local cut = {}
    for i = 1, keep * 2 do cut[i] = items[i] end
    items = cut
  end
end
return {rev, oldest, items, more}
)lua";

absl::StatusOr<DeviceChange> DecodeChange(const std::string& member, const std::string& score) {
  std::optional<nlohmann::json> j = JsonObject(member);
  if (!j) return absl::DataLossError("device change: not a JSON object");
  DeviceChange c;
  JsonFields f(*j, "device change");
  f.Get("rev", &c.revision);
  f.Get("op", &c.op);
  f.Get("user", &c.set_username);
  f.Get("pw", &c.set_password_changed);
  if (!f.status().ok()) return f.status();
  int64_t scored = 0;
  if (!absl::SimpleAtoi(score, &scored) || scored != c.revision) {
    return absl::DataLossError(
        absl::StrCat("device change: rev: ", c.revision, " is not its score ", score));
  }
  if (c.op != "created" && c.op != "updated" && c.op != "deleted") {
    return absl::DataLossError(absl::StrCat("device change: op: unknown '", c.op, "'"));
  }
  return c;
}

}  // namespace

absl::StatusOr<DeviceChangeLog> ReadDeviceChanges(RedisClient& redis, int64_t since, size_t limit) {
  limit = std::max<size_t>(limit, 1);
  absl::StatusOr<RedisReply> r = redis.Eval(kReadChanges, {kDevicesRevisionKey, kDeviceChangesKey},
                                            {std::to_string(since), std::to_string(limit)});
  if (!r.ok()) return r.status();
  if (r->type != RedisReply::Type::kArray || r->elements.size() != 4) {
    return absl::InternalError("unexpected reply from the device changes script");
  }
  DeviceChangeLog log;
  log.revision = r->elements[0].integer;
  log.oldest = r->elements[1].integer;
  log.more = r->elements[3].integer == 1;
  const std::vector<RedisReply>& items = r->elements[2].elements;
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    absl::StatusOr<DeviceChange> c = DecodeChange(items[i].str, items[i + 1].str);
    if (!c.ok()) return c.status();
    log.changes.push_back(*std::move(c));
  }
  if (since > log.revision) {
    log.lost = true;
  } else if (since < log.revision) {
    // Every revision after `since` must still be kept, from since + 1 on.
    log.lost = log.oldest == 0 || log.oldest > since + 1;
  }
  return log;
}

}  // namespace rwg::core
