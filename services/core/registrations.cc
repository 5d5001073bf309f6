#include "services/core/registrations.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "services/core/json.h"
#include "services/core/keys.h"
#include "services/core/log.h"

namespace rwg::core {
namespace {

// KEYS: active, binding. ARGV: set user, now ms, hold until ms, limit.
const std::string kReserve = R"lua(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local prev = redis.call('GET', KEYS[2]) or ''
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {2, prev} end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {0, prev} end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return {1, prev}
)lua";

// KEYS: binding, icp index, active. ARGV: json, set user, ttl ms, expires ms.
const std::string kPut = R"lua(
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
return 1
)lua";

// KEYS: binding, icp index, active. ARGV: set user.
const std::string kRemove = R"lua(
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
)lua";

}  // namespace

std::string BindingToJson(const Binding& b) {
  nlohmann::json j = {{"set_username", b.set_username},
                      {"icp_username", b.icp_username},
                      {"contacts", b.contacts},
                      {"source", b.source},
                      {"transport", b.transport},
                      {"instance", b.instance},
                      {"connection", b.connection},
                      {"reachable", b.reachable},
                      {"since", absl::ToUnixSeconds(b.since)},
                      {"expires_at", absl::ToUnixSeconds(b.expires_at)}};
  return JsonDump(j);
}

absl::StatusOr<Binding> BindingFromJson(const std::string& json) {
  std::optional<nlohmann::json> j = JsonObject(json);
  if (!j) return absl::DataLossError("damaged binding record");
  Binding b;
  try {
    b.set_username = j->value("set_username", "");
    b.icp_username = j->value("icp_username", "");
    if (j->contains("contacts") && (*j)["contacts"].is_array()) {
      for (const auto& c : (*j)["contacts"]) {
        if (c.is_string()) b.contacts.push_back(c.get<std::string>());
      }
    }
    b.source = j->value("source", "");
    b.transport = j->value("transport", "");
    b.instance = j->value("instance", "");
    b.connection = j->value("connection", "");
    b.reachable = j->value("reachable", true);
    b.since = absl::FromUnixSeconds(JsonNumber<int64_t>(*j, "since", 0));
    b.expires_at = absl::FromUnixSeconds(JsonNumber<int64_t>(*j, "expires_at", 0));
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type
    return absl::DataLossError(absl::StrCat("damaged binding record: ", e.what()));
  }
  return b;
}

BindingStore::ScriptCall BindingStore::ReserveCall(const std::string& user, uint32_t limit,
                                                   absl::Time now, absl::Time hold_until) {
  return {&kReserve,
          {kActiveBindingsKey, BindingKey(user)},
          {user, std::to_string(absl::ToUnixMillis(now)),
           std::to_string(absl::ToUnixMillis(hold_until)), std::to_string(limit)}};
}

absl::StatusOr<BindingStore::Reserved> BindingStore::ParseReserved(const RedisReply& r) {
  if (r.elements.size() != 2) return absl::InternalError("unexpected reservation reply");
  Reserved out;
  switch (r.elements[0].integer) {
    case 0:
      out.reservation = Reservation::kRefused;
      break;
    case 1:
      out.reservation = Reservation::kNew;
      break;
    default:
      out.reservation = Reservation::kExisting;
  }
  if (!r.elements[1].str.empty()) {
    absl::StatusOr<Binding> b = BindingFromJson(r.elements[1].str);
    if (b.ok()) out.previous = *std::move(b);
  }
  return out;
}

absl::StatusOr<BindingStore::Reserved> BindingStore::Reserve(const std::string& user,
                                                             uint32_t limit, absl::Time now,
                                                             absl::Time hold_until) {
  ScriptCall c = ReserveCall(user, limit, now, hold_until);
  absl::StatusOr<RedisReply> r = redis_.Eval(*c.script, c.keys, c.args);
  if (!r.ok()) return r.status();
  return ParseReserved(*r);
}

std::string BindingStore::Key(const std::string& user) { return BindingKey(user); }

std::vector<std::string> BindingStore::ReleaseCommand(const std::string& user) {
  return {"ZREM", kActiveBindingsKey, user};
}

absl::Status BindingStore::Release(const std::string& user) {
  return redis_.Command(ReleaseCommand(user)).status();
}

void BindingStore::Release(const std::string& user, AsyncRedisCommands& redis,
                           std::function<void(absl::Status)> done) {
  redis.Command(
      ReleaseCommand(user),
      [done = std::move(done)](const absl::StatusOr<RedisReply>& r) { done(r.status()); });
}

BindingStore::ScriptCall BindingStore::PutCall(const Binding& b, absl::Time now) {
  // The record outlives the binding a little so that a late refresh still finds it.
  const int64_t ttl_ms =
      std::max<int64_t>(1000, absl::ToInt64Milliseconds(b.expires_at - now) + 5000);
  return {&kPut,
          {BindingKey(b.set_username), IcpBindingKey(b.icp_username), kActiveBindingsKey},
          {BindingToJson(b), b.set_username, std::to_string(ttl_ms),
           std::to_string(absl::ToUnixMillis(b.expires_at))}};
}

absl::Status BindingStore::Put(const Binding& b) {
  ScriptCall c = PutCall(b, absl::Now());
  return redis_.Eval(*c.script, c.keys, c.args).status();
}

BindingStore::ScriptCall BindingStore::RemoveCall(const std::string& user,
                                                  const std::string& icp_user) {
  return {&kRemove, {BindingKey(user), IcpBindingKey(icp_user), kActiveBindingsKey}, {user}};
}

absl::Status BindingStore::Remove(const std::string& user, const std::string& icp_user) {
  ScriptCall c = RemoveCall(user, icp_user);
  return redis_.Eval(*c.script, c.keys, c.args).status();
}

void BindingStore::Remove(const std::string& user, const std::string& icp_user,
                          AsyncRedisCommands& redis, std::function<void(absl::Status)> done) {
  ScriptCall c = RemoveCall(user, icp_user);
  redis.Eval(*c.script, c.keys, c.args,
             [done = std::move(done)](const absl::StatusOr<RedisReply>& r) { done(r.status()); });
}

std::vector<std::string> BindingStore::GetCommand(const std::string& user) {
  return {"GET", BindingKey(user)};
}

absl::StatusOr<std::optional<Binding>> BindingStore::ParseGet(const RedisReply& r) {
  if (r.is_nil()) return std::nullopt;
  absl::StatusOr<Binding> b = BindingFromJson(r.str);
  if (!b.ok()) return b.status();
  return *b;
}

absl::StatusOr<std::optional<Binding>> BindingStore::Get(const std::string& user) {
  absl::StatusOr<RedisReply> r = redis_.Command(GetCommand(user));
  if (!r.ok()) return r.status();
  return ParseGet(*r);
}

void BindingStore::Get(const std::string& user, AsyncRedisCommands& redis,
                       std::function<void(absl::StatusOr<std::optional<Binding>>)> done) {
  redis.Command(GetCommand(user), [done = std::move(done)](const absl::StatusOr<RedisReply>& r) {
    if (!r.ok()) return done(r.status());
    done(ParseGet(*r));
  });
}

std::vector<std::string> BindingStore::IcpCommand(const std::string& icp_user) {
  return {"GET", IcpBindingKey(icp_user)};
}

std::optional<std::string> BindingStore::ParseIcp(const RedisReply& r) {
  if (r.is_nil()) return std::nullopt;
  return r.str;
}

absl::StatusOr<std::optional<std::string>> BindingStore::SetUsernameForIcp(
    const std::string& icp_user) {
  absl::StatusOr<RedisReply> r = redis_.Command(IcpCommand(icp_user));
  if (!r.ok()) return r.status();
  return ParseIcp(*r);
}

void BindingStore::SetUsernameForIcp(
    const std::string& icp_user, AsyncRedisCommands& redis,
    std::function<void(absl::StatusOr<std::optional<std::string>>)> done) {
  redis.Command(IcpCommand(icp_user),
                [done = std::move(done)](const absl::StatusOr<RedisReply>& r) {
                  if (!r.ok()) return done(r.status());
                  done(ParseIcp(*r));
                });
}

absl::StatusOr<int64_t> BindingStore::CountActive(absl::Time now) {
  absl::StatusOr<RedisReply> r = redis_.Command(
      {"ZCOUNT", kActiveBindingsKey, std::to_string(absl::ToUnixMillis(now) + 1), "+inf"});
  if (!r.ok()) return r.status();
  return r->integer;
}

absl::StatusOr<std::vector<Binding>> BindingStore::ListActive(absl::Time now) {
  absl::StatusOr<RedisReply> users = redis_.Command(
      {"ZRANGEBYSCORE", kActiveBindingsKey, std::to_string(absl::ToUnixMillis(now) + 1), "+inf"});
  if (!users.ok()) return users.status();
  std::vector<Binding> out;
  if (users->elements.empty()) return out;
  std::vector<std::string> mget = {"MGET"};
  for (const RedisReply& u : users->elements) mget.push_back(BindingKey(u.str));
  absl::StatusOr<RedisReply> records = redis_.Command(mget);
  if (!records.ok()) return records.status();
  for (const RedisReply& r : records->elements) {
    if (r.is_nil()) continue;  // reserved for a registration in progress
    absl::StatusOr<Binding> b = BindingFromJson(r.str);
    if (!b.ok()) {
      log::Warn("damaged binding record skipped", {{"error", std::string(b.status().message())}});
      continue;
    }
    if (b->expires_at > now) out.push_back(*std::move(b));
  }
  std::sort(out.begin(), out.end(),
            [](const Binding& a, const Binding& b) { return a.set_username < b.set_username; });
  return out;
}

}  // namespace rwg::core
