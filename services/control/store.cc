#include "services/control/store.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "services/core/device_changes.h"
#include "services/core/devices.h"
#include "services/core/json.h"
#include "services/core/keys.h"

namespace rwg::control {
namespace {

using core::RedisReply;
namespace adminpb = ::rwg::admin::v1;

constexpr const char* kDevices = core::kDevicesKey;
constexpr const char* kDevicesByMac = core::kDevicesByMacKey;
constexpr const char* kDevicesByIcp = core::kDevicesByIcpKey;

// KEYS: key. ARGV: expected ('' = absent), value, event.
constexpr char kCompareAndSet[] = R"lua(
local cur = redis.call('GET', KEYS[1])
if (ARGV[1] == '' and not cur) or (cur and cur == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('PUBLISH', 'rwg:events', ARGV[3])
  return 1
end
return 0
)lua";

// Appends the device change log's entry for each device written (device_changes.h), then
// keeps the newest `kept` entries, never part of a revision.
constexpr char kLogChangesLua[] = R"lua(
local function log_changes(key, rev, changes, kept)
  for _, c in ipairs(changes) do
    redis.call('ZADD', key, rev, cjson.encode({rev = rev, op = c[1], user = c[2], pw = c[3]}))
  end
  local excess = redis.call('ZCARD', key) - kept
  if excess > 0 then
    local last = redis.call('ZRANGE', key, excess - 1, excess - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYSCORE', key, '-inf', last[2])
  end
end
)lua";

// KEYS: devices, by-mac, by-icp, revision, changes, revisions. ARGV: mode, changes kept, then
// (user, mac, icp, json, set-side password changed '1'|'0') per device. Checks everything
// first; writes only when nothing conflicts. Returns {'ok', created, updated, revision}.
constexpr char kPutDevicesBody[] = R"lua(
local mode = ARGV[1]
local n = (#ARGV - 2) / 5
local errs = {}
for i = 0, n - 1 do
  local u, mac, icp = ARGV[3 + i * 5], ARGV[4 + i * 5], ARGV[5 + i * 5]
  local exists = redis.call('HEXISTS', KEYS[1], u) == 1
  if mode == 'create' and exists then
    table.insert(errs, u .. '\tset_username\tdevice already exists')
  elseif mode == 'update' and not exists then
    table.insert(errs, u .. '\tset_username\tno such device')
  end
  if mac ~= '' then
    local o = redis.call('HGET', KEYS[2], mac)
    if o and o ~= u then table.insert(errs, u .. '\tmac\t' .. mac .. ' belongs to device ' .. o) end
  end
  local o = redis.call('HGET', KEYS[3], icp)
  if o and o ~= u then
    table.insert(errs, u .. '\ticp_username\t' .. icp .. ' belongs to device ' .. o)
  end
end
if #errs > 0 then
  table.insert(errs, 1, 'conflict')
  return errs
end
local created, updated = 0, 0
local changes = {}
local rev = redis.call('INCR', KEYS[4])
for i = 0, n - 1 do
  local u, mac, icp, json = ARGV[3 + i * 5], ARGV[4 + i * 5], ARGV[5 + i * 5], ARGV[6 + i * 5]
  local old = redis.call('HGET', KEYS[1], u)
  if old then
    updated = updated + 1
    table.insert(changes, {'updated', u, ARGV[7 + i * 5] == '1'})
    local o = cjson.decode(old)
    if o.mac and o.mac ~= mac and redis.call('HGET', KEYS[2], o.mac) == u then
      redis.call('HDEL', KEYS[2], o.mac)
    end
    if o.icp_username and o.icp_username ~= icp and redis.call('HGET', KEYS[3], o.icp_username) == u then
      redis.call('HDEL', KEYS[3], o.icp_username)
    end
  else
    created = created + 1
    table.insert(changes, {'created', u, true})
  end
  redis.call('HSET', KEYS[1], u, json)
  if mac ~= '' then redis.call('HSET', KEYS[2], mac, u) end
  redis.call('HSET', KEYS[3], icp, u)
  redis.call('HSET', KEYS[6], u, rev)
end
log_changes(KEYS[5], rev, changes, tonumber(ARGV[2]))
redis.call('PUBLISH', 'rwg:events', 'devices')
return {'ok', created, updated, rev}
)lua";

// KEYS: devices, by-mac, by-icp, revision, changes, revisions. ARGV: user, changes kept.
constexpr char kDeleteDeviceBody[] = R"lua(
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local o = cjson.decode(old)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
if o.mac and redis.call('HGET', KEYS[2], o.mac) == ARGV[1] then redis.call('HDEL', KEYS[2], o.mac) end
if o.icp_username and redis.call('HGET', KEYS[3], o.icp_username) == ARGV[1] then
  redis.call('HDEL', KEYS[3], o.icp_username)
end
log_changes(KEYS[5], redis.call('INCR', KEYS[4]), {{'deleted', ARGV[1], false}},
            tonumber(ARGV[2]))
redis.call('PUBLISH', 'rwg:events', 'devices')
return 1
)lua";

const std::string& PutDevicesScript() {
  static const auto* script = new std::string(absl::StrCat(kLogChangesLua, kPutDevicesBody));
  return *script;
}
const std::string& DeleteDeviceScript() {
  static const auto* script = new std::string(absl::StrCat(kLogChangesLua, kDeleteDeviceBody));
  return *script;
}

class RedisValue final : public ValueStore {
 public:
  RedisValue(core::RedisClient& redis, std::string key, std::string event)
      : redis_(redis), key_(std::move(key)), event_(std::move(event)) {}

  absl::StatusOr<std::optional<std::string>> Get() override {
    absl::StatusOr<RedisReply> r = redis_.Command({"GET", key_});
    if (!r.ok()) return r.status();
    if (r->is_nil()) return std::nullopt;
    return r->str;
  }

  absl::StatusOr<bool> CompareAndSet(const std::string& expected,
                                     const std::string& value) override {
    absl::StatusOr<RedisReply> r = redis_.Eval(kCompareAndSet, {key_}, {expected, value, event_});
    if (!r.ok()) return r.status();
    return r->integer == 1;
  }

 private:
  core::RedisClient& redis_;
  std::string key_;
  std::string event_;
};

}  // namespace

absl::StatusOr<std::string> DeviceToJson(const adminpb::Device& d) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string out;
  auto s = google::protobuf::util::MessageToJsonString(d, &out, opts);
  if (!s.ok()) {
    // Validation refuses what JSON cannot hold (invalid UTF-8); never store an empty record.
    return absl::InvalidArgumentError(
        absl::StrCat("device ", d.set_username(), ": cannot be stored: ", s.ToString()));
  }
  return out;
}

absl::StatusOr<adminpb::Device> DeviceFromJson(const std::string& json) {
  adminpb::Device d;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &d, opts).ok()) {
    return absl::DataLossError("a stored device record is not valid JSON");
  }
  return d;
}

RedisControlStore::RedisControlStore(core::RedisClient& redis)
    : redis_(redis),
      config_(std::make_unique<RedisValue>(redis, core::kConfigKey, "config")),
      hash_(std::make_unique<RedisValue>(redis, core::kHashKey, "hash")) {}

absl::StatusOr<std::optional<std::string>> RedisControlStore::GetAdminHash(
    const std::string& user) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGET", core::kAdminsKey, user});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  return r->str;
}

absl::StatusOr<bool> RedisControlStore::CreateAdmin(const std::string& user,
                                                    const std::string& hash) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HSETNX", core::kAdminsKey, user, hash});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

absl::Status RedisControlStore::SetAdminHash(const std::string& user, const std::string& hash) {
  return redis_.Command({"HSET", core::kAdminsKey, user, hash}).status();
}

absl::Status RedisControlStore::PutSession(const std::string& id, const Session& s,
                                           absl::Duration ttl) {
  nlohmann::json j = {
      {"user", s.username}, {"exp", absl::ToUnixSeconds(s.expires_at)}, {"cred", s.credential}};
  int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl));
  return redis_
      .Command({"SET", core::AdminSessionKey(id), core::JsonDump(j), "PX", std::to_string(ms)})
      .status();
}

absl::StatusOr<std::optional<Session>> RedisControlStore::GetSession(const std::string& id) {
  absl::StatusOr<RedisReply> r = redis_.Command({"GET", core::AdminSessionKey(id)});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(r->str, nullptr, false);
  if (j.is_discarded() || !j.contains("user") || !j.contains("exp") || !j["user"].is_string() ||
      !j["exp"].is_number_integer()) {
    return std::nullopt;  // a damaged session is no session
  }
  std::string cred;
  if (j.contains("cred") && j["cred"].is_string()) cred = j["cred"].get<std::string>();
  return Session{j["user"].get<std::string>(), absl::FromUnixSeconds(j["exp"].get<int64_t>()),
                 std::move(cred)};
}

absl::Status RedisControlStore::DeleteSession(const std::string& id) {
  return redis_.Command({"DEL", core::AdminSessionKey(id)}).status();
}

absl::StatusOr<DeviceWriteResult> RedisControlStore::PutDevices(
    const std::vector<adminpb::Device>& devices, WriteMode mode,
    const std::vector<bool>& set_password_changed) {
  std::vector<std::string> args;
  args.reserve(2 + devices.size() * 5);
  args.push_back(mode == WriteMode::kCreate   ? "create"
                 : mode == WriteMode::kUpdate ? "update"
                                              : "upsert");
  args.push_back(std::to_string(core::kDeviceChangesKept));
  for (size_t i = 0; i < devices.size(); ++i) {
    const adminpb::Device& d = devices[i];
    args.push_back(d.set_username());
    args.push_back(d.mac());
    args.push_back(d.icp_username());
    absl::StatusOr<std::string> json = DeviceToJson(d);
    if (!json.ok()) return json.status();
    args.push_back(std::move(*json));
    args.push_back(i < set_password_changed.size() && set_password_changed[i] ? "1" : "0");
  }
  absl::StatusOr<RedisReply> r =
      redis_.Eval(PutDevicesScript(),
                  {kDevices, kDevicesByMac, kDevicesByIcp, core::kDevicesRevisionKey,
                   core::kDeviceChangesKey, core::kDeviceRevisionsKey},
                  args);
  if (!r.ok()) return r.status();
  DeviceWriteResult out;
  if (r->type != RedisReply::Type::kArray || r->elements.empty()) {
    return absl::InternalError("unexpected reply from the device script");
  }
  if (r->elements[0].str == "conflict") {
    for (size_t i = 1; i < r->elements.size(); ++i) {
      const std::string& e = r->elements[i].str;
      size_t tab = e.find('\t');
      out.conflicts.emplace_back(e.substr(0, tab), e.substr(tab + 1));
    }
    return out;
  }
  if (r->elements.size() == 4) {
    out.created = static_cast<int>(r->elements[1].integer);
    out.updated = static_cast<int>(r->elements[2].integer);
    out.revision = r->elements[3].integer;
  }
  return out;
}

absl::StatusOr<std::optional<adminpb::Device>> RedisControlStore::GetDevice(
    const std::string& user) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGET", kDevices, user});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  absl::StatusOr<adminpb::Device> d = DeviceFromJson(r->str);
  if (!d.ok()) return d.status();
  return *d;
}

absl::StatusOr<std::vector<adminpb::Device>> RedisControlStore::ListDevices() {
  absl::StatusOr<RedisReply> r = redis_.Command({"HVALS", kDevices});
  if (!r.ok()) return r.status();
  std::vector<adminpb::Device> out;
  out.reserve(r->elements.size());
  for (const RedisReply& e : r->elements) {
    absl::StatusOr<adminpb::Device> d = DeviceFromJson(e.str);
    if (!d.ok()) return d.status();
    out.push_back(std::move(*d));
  }
  std::sort(out.begin(), out.end(), [](const adminpb::Device& a, const adminpb::Device& b) {
    return a.set_username() < b.set_username();
  });
  return out;
}

absl::StatusOr<bool> RedisControlStore::DeleteDevice(const std::string& user) {
  absl::StatusOr<RedisReply> r =
      redis_.Eval(DeleteDeviceScript(),
                  {kDevices, kDevicesByMac, kDevicesByIcp, core::kDevicesRevisionKey,
                   core::kDeviceChangesKey, core::kDeviceRevisionsKey},
                  {user, std::to_string(core::kDeviceChangesKept)});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

absl::StatusOr<int64_t> RedisControlStore::CountDevices() {
  absl::StatusOr<RedisReply> r = redis_.Command({"HLEN", kDevices});
  if (!r.ok()) return r.status();
  return r->integer;
}

}  // namespace rwg::control
