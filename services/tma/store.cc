#include "services/tma/store.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/keys.h"
#include "services/core/log.h"

namespace rwg::tma {
namespace {

namespace pbu = google::protobuf::util;
using core::RedisReply;
using Json = nlohmann::json;

constexpr char kSealContext[] = "tma-server";

template <typename M>
absl::StatusOr<std::string> ToJson(const M& m) {
  pbu::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  std::string out;
  if (!pbu::MessageToJsonString(m, &out, o).ok()) {
    return absl::InvalidArgumentError("a value is not valid UTF-8");
  }
  return out;
}

template <typename M>
absl::StatusOr<M> FromJson(const std::string& json, const char* what) {
  M m;
  pbu::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!pbu::JsonStringToMessage(json, &m, o).ok()) {
    return absl::DataLossError(absl::StrCat("a stored ", what, " is damaged"));
  }
  return m;
}

Json PlannedJson(const PlannedFile& f) {
  return Json{{"name", f.name}, {"role", f.role},     {"sha256", f.sha256}, {"size", f.size},
              {"mac", f.mac},   {"device", f.device}, {"site", f.site}};
}

std::optional<PlannedFile> PlannedFrom(const std::string& text) {
  Json j = Json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  PlannedFile f;
  f.name = j.value("name", "");
  f.role = j.value("role", "");
  f.sha256 = j.value("sha256", "");
  f.size = j.value("size", uint64_t{0});
  f.mac = j.value("mac", "");
  f.device = j.value("device", "");
  f.site = j.value("site", "");
  if (f.name.empty()) return std::nullopt;
  return f;
}

std::string StateName(pb::DeploymentState s) { return pb::DeploymentState_Name(s); }

pb::DeploymentState StateFrom(const std::string& s) {
  pb::DeploymentState v = pb::DEPLOYMENT_STATE_UNSPECIFIED;
  if (!pb::DeploymentState_Parse(s, &v)) return pb::DEPLOYMENT_STATE_UNSPECIFIED;
  return v;
}

int64_t ToInt(const std::string& s) {
  int64_t v = 0;
  return absl::SimpleAtoi(s, &v) ? v : 0;
}

// Appends an event (KEYS: seq, log, deployment's log; ARGV: JSON, caps) and returns its seq.
constexpr char kEventScript[] = R"lua(
local s = redis.call('INCR', KEYS[1])
local m = s .. ' ' .. ARGV[1]
redis.call('ZADD', KEYS[2], s, m)
local n = redis.call('ZCARD', KEYS[2])
if n > tonumber(ARGV[2]) then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - tonumber(ARGV[2]) - 1) end
if KEYS[3] ~= KEYS[2] then
  redis.call('ZADD', KEYS[3], s, m)
  n = redis.call('ZCARD', KEYS[3])
  if n > tonumber(ARGV[3]) then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - tonumber(ARGV[3]) - 1) end
end
return s
)lua";

// Files done. KEYS: deployment, its done set, inventory, manifest, seq, log, deployment's
// log. ARGV: the two caps of the logs, then 7 per file: file, unchanged (0/1), bytes, mac,
// inventory JSON, sha256, event JSON. Returns how many were newly counted (a file already in
// the done set is not counted, nor logged, again). One command per file (the SADD that tells
// whether it is new), the rest one per batch (at most kFilesPerScript files: Lua's unpack).
constexpr size_t kFilesPerScript = 256;
constexpr char kFilesDoneScript[] = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local fresh = {}
for i = 3, #ARGV, 7 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then fresh[#fresh + 1] = i end
end
local n = #fresh
if n == 0 then return 0 end
local manifest, inventory, events = {}, {}, {}
local unchanged, bytes = 0, 0
local first = redis.call('INCRBY', KEYS[5], n) - n
for k, i in ipairs(fresh) do
  manifest[#manifest + 1] = ARGV[i]
  manifest[#manifest + 1] = ARGV[i + 5]
  if ARGV[i + 3] ~= '' then
    inventory[#inventory + 1] = ARGV[i + 3]
    inventory[#inventory + 1] = ARGV[i + 4]
  end
  if ARGV[i + 1] == '1' then unchanged = unchanged + 1 else bytes = bytes + tonumber(ARGV[i + 2]) end
  events[#events + 1] = first + k
  events[#events + 1] = (first + k) .. ' ' .. ARGV[i + 6]
end
redis.call('HSET', KEYS[4], unpack(manifest))
if #inventory > 0 then redis.call('HSET', KEYS[3], unpack(inventory)) end
redis.call('ZADD', KEYS[6], unpack(events))
redis.call('ZADD', KEYS[7], unpack(events))
redis.call('HINCRBY', KEYS[1], 'files_done', n)
if unchanged > 0 then redis.call('HINCRBY', KEYS[1], 'files_unchanged', unchanged) end
if bytes > 0 then redis.call('HINCRBY', KEYS[1], 'bytes_written', bytes) end
redis.call('HSET', KEYS[1], 'current_file', ARGV[fresh[n]])
local c = redis.call('ZCARD', KEYS[6])
if c > tonumber(ARGV[1]) then redis.call('ZREMRANGEBYRANK', KEYS[6], 0, c - tonumber(ARGV[1]) - 1) end
c = redis.call('ZCARD', KEYS[7])
if c > tonumber(ARGV[2]) then redis.call('ZREMRANGEBYRANK', KEYS[7], 0, c - tonumber(ARGV[2]) - 1) end
return n
)lua";

// KEYS: lease. ARGV: owner, ttl ms. Taken when free or already the owner's (then renewed).
constexpr char kLeaseScript[] = R"lua(
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua";

constexpr char kReleaseScript[] = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
)lua";

// KEYS: deployment, active set. ARGV: id. FAILED with its contents kept → PENDING.
constexpr char kResumeScript[] = R"lua(
if redis.call('HGET', KEYS[1], 'state') ~= 'DEPLOYMENT_STATE_FAILED' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'DEPLOYMENT_STATE_PENDING', 'error', '', 'end_ms', '0')
redis.call('SADD', KEYS[2], ARGV[1])
return 1
)lua";

}  // namespace

TmaStore::TmaStore(core::RedisClient& redis, const core::SecretBox& box, core::Clock& clock,
                   StoreLimits limits)
    : redis_(redis), box_(box), clock_(clock), limits_(limits) {}

// ---------------------------------------------------------------------------------------------
// Servers

absl::StatusOr<bool> TmaStore::AddServer(const pb::Server& s) {
  pb::Server stored = s;
  if (!s.password().empty()) {
    stored.set_password(box_.Seal(s.password(), absl::StrCat(kSealContext, ":", s.name())));
    stored.set_has_password(true);
  }
  absl::StatusOr<std::string> json = ToJson(stored);
  if (!json.ok()) return json.status();
  absl::StatusOr<RedisReply> r = redis_.Command({"HSETNX", core::kTmaServersKey, s.name(), *json});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

absl::Status TmaStore::ReplaceServer(const pb::Server& s) {
  pb::Server stored = s;
  if (!s.password().empty()) {
    stored.set_password(box_.Seal(s.password(), absl::StrCat(kSealContext, ":", s.name())));
    stored.set_has_password(true);
  }
  absl::StatusOr<std::string> json = ToJson(stored);
  if (!json.ok()) return json.status();
  return redis_.Command({"HSET", core::kTmaServersKey, s.name(), *json}).status();
}

absl::StatusOr<std::optional<pb::Server>> TmaStore::GetServer(const std::string& name,
                                                              bool with_password) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGET", core::kTmaServersKey, name});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::optional<pb::Server>();
  absl::StatusOr<pb::Server> s = FromJson<pb::Server>(r->str, "download server");
  if (!s.ok()) return s.status();
  if (with_password && !s->password().empty()) {
    absl::StatusOr<std::string> p =
        box_.Open(s->password(), absl::StrCat(kSealContext, ":", s->name()));
    if (!p.ok()) {
      return absl::DataLossError(
          absl::StrCat("download server ", name, ": its password does not open with this key"));
    }
    s->set_password(*p);
  } else {
    s->clear_password();
  }
  return std::optional<pb::Server>(*std::move(s));
}

absl::StatusOr<bool> TmaStore::DeleteServer(const std::string& name) {
  absl::StatusOr<std::vector<RedisReply>> r =
      redis_.Pipeline({{"HDEL", core::kTmaServersKey, name}, {"DEL", core::TmaManifestKey(name)}});
  if (!r.ok()) return r.status();
  return (*r)[0].integer == 1;
}

absl::StatusOr<std::vector<pb::Server>> TmaStore::ListServers() {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGETALL", core::kTmaServersKey});
  if (!r.ok()) return r.status();
  std::vector<pb::Server> out;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    absl::StatusOr<pb::Server> s = FromJson<pb::Server>(r->elements[i + 1].str, "download server");
    if (!s.ok()) return s.status();
    s->clear_password();
    out.push_back(*std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const pb::Server& a, const pb::Server& b) { return a.name() < b.name(); });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Deployments

absl::Status TmaStore::CreateDeployment(const pb::Deployment& record,
                                        const std::vector<PlannedFile>& plan,
                                        const std::vector<std::string>& contents) {
  const std::string& id = record.id();
  pb::Deployment r = record;
  r.set_files_total(static_cast<int32_t>(plan.size()));
  r.set_create_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
  absl::StatusOr<std::string> json = ToJson(r);
  if (!json.ok()) return json.status();
  std::vector<std::vector<std::string>> cmds;
  std::vector<std::string> order = {"RPUSH", core::TmaDeploymentKey(id, "order")};
  std::vector<std::string> planned = {"HSET", core::TmaDeploymentKey(id, "plan")};
  for (const PlannedFile& f : plan) {
    order.push_back(f.name);
    planned.push_back(f.name);
    planned.push_back(PlannedJson(f).dump());
  }
  // Contents in batches: one command of hundreds of MiB is not what Redis wants.
  std::vector<std::string> blob = {"HSET", core::TmaDeploymentKey(id, "content")};
  size_t blob_bytes = 0;
  for (size_t i = 0; i < plan.size() && i < contents.size(); ++i) {
    blob.push_back(plan[i].name);
    blob.push_back(contents[i]);
    blob_bytes += contents[i].size();
    if (blob_bytes > (8u << 20) || blob.size() > 2000) {
      cmds.push_back(blob);
      blob.resize(2);
      blob_bytes = 0;
    }
  }
  if (blob.size() > 2) cmds.push_back(blob);
  if (!plan.empty()) {
    cmds.push_back(order);
    cmds.push_back(planned);
  }
  // The record last: a deployment that exists has its whole plan and content.
  cmds.push_back({"HSET", core::TmaDeploymentKey(id), "record", *json, "state",
                  StateName(pb::DEPLOYMENT_STATE_PENDING), "files_done", "0", "files_unchanged",
                  "0", "bytes_written", "0", "current_file", "", "error", "", "end_ms", "0"});
  cmds.push_back({"ZADD", core::kTmaDeploymentsKey, absl::StrCat(r.create_time_unix_ms()), id});
  cmds.push_back({"SADD", core::kTmaActiveKey, id});
  for (const std::vector<std::string>& c : cmds) {
    if (absl::StatusOr<RedisReply> x = redis_.Command(c); !x.ok()) {
      // Nothing half created: what was written goes. When Redis cannot take that either, it is
      // logged: a deployment is run only from the active set (written last), so what is left
      // never runs.
      absl::StatusOr<std::vector<RedisReply>> undone = redis_.Pipeline(
          {{"DEL", core::TmaDeploymentKey(id, "content"), core::TmaDeploymentKey(id, "order"),
            core::TmaDeploymentKey(id, "plan"), core::TmaDeploymentKey(id)},
           {"SREM", core::kTmaActiveKey, id},
           {"ZREM", core::kTmaDeploymentsKey, id}});
      if (!undone.ok()) {
        core::log::Warn("a deployment's partial records are left in Redis",
                        {{"deployment", id}, {"error", std::string(undone.status().message())}});
      }
      return x.status();
    }
  }
  if (absl::Status s = ForgetOldDeployments(); !s.ok()) {
    // The new deployment stands; the oldest ended ones go at the next creation.
    core::log::Warn("old deployments not forgotten", {{"error", std::string(s.message())}});
  }
  return AddEvent(id, "deployment.created", "",
                  absl::StrCat(plan.size(), " files for ", record.phones(), " phones to server ",
                               record.server()));
}

absl::Status TmaStore::ForgetOldDeployments() {
  absl::StatusOr<RedisReply> n = redis_.Command({"ZCARD", core::kTmaDeploymentsKey});
  if (!n.ok()) return n.status();
  if (n->integer <= static_cast<long long>(limits_.max_deployments)) return absl::OkStatus();
  absl::StatusOr<RedisReply> old = redis_.Command(
      {"ZRANGE", core::kTmaDeploymentsKey, "0",
       absl::StrCat(n->integer - static_cast<long long>(limits_.max_deployments) - 1)});
  if (!old.ok()) return old.status();
  for (const RedisReply& e : old->elements) {
    // A deployment still to run is never forgotten.
    absl::StatusOr<RedisReply> active = redis_.Command({"SISMEMBER", core::kTmaActiveKey, e.str});
    if (!active.ok()) return active.status();
    if (active->integer == 1) continue;
    absl::StatusOr<std::vector<RedisReply>> gone = redis_.Pipeline(
        {{"DEL", core::TmaDeploymentKey(e.str), core::TmaDeploymentKey(e.str, "plan"),
          core::TmaDeploymentKey(e.str, "order"), core::TmaDeploymentKey(e.str, "content"),
          core::TmaDeploymentKey(e.str, "done"), core::TmaDeploymentKey(e.str, "events")},
         {"ZREM", core::kTmaDeploymentsKey, e.str}});
    if (!gone.ok()) return gone.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<pb::Deployment>> TmaStore::GetDeployment(const std::string& id) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGETALL", core::TmaDeploymentKey(id)});
  if (!r.ok()) return r.status();
  if (r->elements.empty()) return std::optional<pb::Deployment>();
  std::map<std::string, std::string> f;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    f[r->elements[i].str] = r->elements[i + 1].str;
  }
  absl::StatusOr<pb::Deployment> d = FromJson<pb::Deployment>(f["record"], "deployment");
  if (!d.ok()) return d.status();
  d->set_state(StateFrom(f["state"]));
  d->set_files_done(static_cast<int32_t>(ToInt(f["files_done"])));
  d->set_files_unchanged(static_cast<int32_t>(ToInt(f["files_unchanged"])));
  d->set_bytes_written(static_cast<uint64_t>(ToInt(f["bytes_written"])));
  d->set_current_file(f["current_file"]);
  d->set_error(f["error"]);
  d->set_end_time_unix_ms(ToInt(f["end_ms"]));
  return std::optional<pb::Deployment>(*std::move(d));
}

absl::StatusOr<std::vector<pb::Deployment>> TmaStore::ListDeployments() {
  absl::StatusOr<RedisReply> ids =
      redis_.Command({"ZREVRANGE", core::kTmaDeploymentsKey, "0", "-1"});
  if (!ids.ok()) return ids.status();
  std::vector<pb::Deployment> out;
  for (const RedisReply& e : ids->elements) {
    absl::StatusOr<std::optional<pb::Deployment>> d = GetDeployment(e.str);
    if (!d.ok()) return d.status();
    if (d->has_value()) out.push_back(**std::move(d));
  }
  return out;
}

absl::StatusOr<std::vector<PlannedFile>> TmaStore::Plan(const std::string& id) {
  absl::StatusOr<std::vector<RedisReply>> r =
      redis_.Pipeline({{"LRANGE", core::TmaDeploymentKey(id, "order"), "0", "-1"},
                       {"HGETALL", core::TmaDeploymentKey(id, "plan")}});
  if (!r.ok()) return r.status();
  std::map<std::string, PlannedFile> by_name;
  const std::vector<RedisReply>& kv = (*r)[1].elements;
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    std::optional<PlannedFile> f = PlannedFrom(kv[i + 1].str);
    if (!f) return absl::DataLossError(absl::StrCat("deployment ", id, ": its plan is damaged"));
    by_name[kv[i].str] = *std::move(f);
  }
  std::vector<PlannedFile> out;
  for (const RedisReply& n : (*r)[0].elements) {
    auto it = by_name.find(n.str);
    if (it == by_name.end()) {
      return absl::DataLossError(absl::StrCat("deployment ", id, ": its plan is damaged"));
    }
    out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<std::set<std::string>> TmaStore::DoneFiles(const std::string& id) {
  absl::StatusOr<RedisReply> r = redis_.Command({"SMEMBERS", core::TmaDeploymentKey(id, "done")});
  if (!r.ok()) return r.status();
  std::set<std::string> out;
  for (const RedisReply& e : r->elements) out.insert(e.str);
  return out;
}

absl::StatusOr<std::string> TmaStore::Content(const std::string& id, const std::string& name) {
  absl::StatusOr<RedisReply> r =
      redis_.Command({"HGET", core::TmaDeploymentKey(id, "content"), name});
  if (!r.ok()) return r.status();
  if (r->is_nil()) {
    return absl::NotFoundError(absl::StrCat("deployment ", id, ": no content for ", name));
  }
  return r->str;
}

absl::StatusOr<std::vector<std::string>> TmaStore::Contents(const std::string& id,
                                                            const std::vector<std::string>& names) {
  if (names.empty()) return std::vector<std::string>{};
  std::vector<std::string> cmd = {"HMGET", core::TmaDeploymentKey(id, "content")};
  cmd.insert(cmd.end(), names.begin(), names.end());
  absl::StatusOr<RedisReply> r = redis_.Command(cmd);
  if (!r.ok()) return r.status();
  if (r->elements.size() != names.size()) {
    return absl::InternalError(absl::StrCat("deployment ", id, ": HMGET answered ",
                                            r->elements.size(), " of ", names.size()));
  }
  std::vector<std::string> out;
  out.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    if (r->elements[i].is_nil()) {
      return absl::NotFoundError(absl::StrCat("deployment ", id, ": no content for ", names[i]));
    }
    out.push_back(std::move(r->elements[i].str));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> TmaStore::Active() {
  absl::StatusOr<RedisReply> r = redis_.Command({"SMEMBERS", core::kTmaActiveKey});
  if (!r.ok()) return r.status();
  std::vector<std::string> out;
  for (const RedisReply& e : r->elements) out.push_back(e.str);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<bool> TmaStore::TakeLease(const std::string& id, const std::string& owner,
                                         absl::Duration ttl) {
  absl::StatusOr<RedisReply> r = redis_.Eval(kLeaseScript, {core::TmaDeploymentKey(id, "lease")},
                                             {owner, absl::StrCat(absl::ToInt64Milliseconds(ttl))});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

absl::Status TmaStore::ReleaseLease(const std::string& id, const std::string& owner) {
  return redis_.Eval(kReleaseScript, {core::TmaDeploymentKey(id, "lease")}, {owner}).status();
}

absl::Status TmaStore::SetRunning(const std::string& id) {
  return redis_
      .Command(
          {"HSET", core::TmaDeploymentKey(id), "state", StateName(pb::DEPLOYMENT_STATE_RUNNING)})
      .status();
}

absl::Status TmaStore::Finish(const std::string& id, pb::DeploymentState state,
                              const std::string& error) {
  std::vector<std::vector<std::string>> cmds = {
      {"HSET", core::TmaDeploymentKey(id), "state", StateName(state), "error", error, "end_ms",
       absl::StrCat(absl::ToUnixMillis(clock_.Now())), "current_file", ""},
      {"SREM", core::kTmaActiveKey, id}};
  if (state == pb::DEPLOYMENT_STATE_COMPLETED) {
    cmds.push_back({"DEL", core::TmaDeploymentKey(id, "content")});
  }
  return redis_.Pipeline(cmds).status();
}

absl::StatusOr<bool> TmaStore::Resume(const std::string& id) {
  absl::StatusOr<RedisReply> r =
      redis_.Eval(kResumeScript, {core::TmaDeploymentKey(id), core::kTmaActiveKey}, {id});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

absl::StatusOr<std::string> TmaStore::EventJson(const std::string& deployment,
                                                const std::string& action, const std::string& file,
                                                const std::string& detail) const {
  pb::Event e;
  e.set_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
  e.set_deployment(deployment);
  e.set_action(action);
  e.set_file(file);
  e.set_detail(detail);
  return ToJson(e);
}

absl::StatusOr<bool> TmaStore::FileDone(const std::string& id, const std::string& server,
                                        const PlannedFile& f, bool unchanged) {
  absl::StatusOr<size_t> n = FilesDone(id, server, {{&f, unchanged}});
  if (!n.ok()) return n.status();
  return *n == 1;
}

absl::StatusOr<size_t> TmaStore::FilesDone(const std::string& id, const std::string& server,
                                           const std::vector<Done>& files) {
  if (files.size() > kFilesPerScript) {
    size_t counted = 0;
    for (size_t at = 0; at < files.size(); at += kFilesPerScript) {
      const auto from = files.begin() + static_cast<std::ptrdiff_t>(at);
      const auto to =
          files.begin() + static_cast<std::ptrdiff_t>(std::min(files.size(), at + kFilesPerScript));
      absl::StatusOr<size_t> n = FilesDone(id, server, std::vector<Done>(from, to));
      if (!n.ok()) return n.status();
      counted += *n;
    }
    return counted;
  }
  if (files.empty()) return 0;
  std::vector<std::string> args = {absl::StrCat(limits_.max_events),
                                   absl::StrCat(limits_.max_events_per_deployment)};
  args.reserve(2 + 7 * files.size());
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  for (const Done& d : files) {
    const PlannedFile& f = *d.file;
    std::string inventory;
    if (!f.mac.empty()) {
      inventory = Json{{"site", f.site},
                       {"device", f.device},
                       {"deployment", id},
                       {"server", server},
                       {"file", f.name},
                       {"sha256", f.sha256},
                       {"deployed_unix_ms", now_ms}}
                      .dump();
    }
    absl::StatusOr<std::string> event = EventJson(
        id, d.unchanged ? "file.unchanged" : "file.written", f.name,
        d.unchanged ? "already on the server with this content" : absl::StrCat(f.size, " bytes"));
    if (!event.ok()) return event.status();
    for (std::string& a :
         std::vector<std::string>{f.name, d.unchanged ? "1" : "0", absl::StrCat(f.size), f.mac,
                                  std::move(inventory), f.sha256, std::move(*event)}) {
      args.push_back(std::move(a));
    }
  }
  absl::StatusOr<RedisReply> r =
      redis_.Eval(kFilesDoneScript,
                  {core::TmaDeploymentKey(id), core::TmaDeploymentKey(id, "done"),
                   core::kTmaInventoryKey, core::TmaManifestKey(server), core::kTmaEventSeqKey,
                   core::kTmaEventsKey, core::TmaDeploymentKey(id, "events")},
                  args);
  if (!r.ok()) return r.status();
  return static_cast<size_t>(r->integer);
}

void TmaStore::RecordEvent(const std::string& deployment, const std::string& action,
                           const std::string& file, const std::string& detail) {
  if (absl::Status s = AddEvent(deployment, action, file, detail); !s.ok()) {
    core::log::Warn("event not recorded", {{"deployment", deployment},
                                           {"action", action},
                                           {"file", file},
                                           {"error", std::string(s.message())}});
  }
}

absl::Status TmaStore::AddEvent(const std::string& deployment, const std::string& action,
                                const std::string& file, const std::string& detail) {
  absl::StatusOr<std::string> event = EventJson(deployment, action, file, detail);
  if (!event.ok()) return event.status();
  return redis_
      .Eval(kEventScript,
            {core::kTmaEventSeqKey, core::kTmaEventsKey,
             deployment.empty() ? std::string(core::kTmaEventsKey)
                                : core::TmaDeploymentKey(deployment, "events")},
            {*event, absl::StrCat(limits_.max_events),
             absl::StrCat(limits_.max_events_per_deployment)})
      .status();
}

absl::StatusOr<std::vector<pb::Event>> TmaStore::Events(const std::string& deployment,
                                                        uint64_t after_seq, size_t limit) {
  const std::string key =
      deployment.empty() ? core::kTmaEventsKey : core::TmaDeploymentKey(deployment, "events");
  absl::StatusOr<RedisReply> r = redis_.Command({"ZRANGEBYSCORE", key, absl::StrCat("(", after_seq),
                                                 "+inf", "LIMIT", "0", absl::StrCat(limit)});
  if (!r.ok()) return r.status();
  std::vector<pb::Event> out;
  for (const RedisReply& m : r->elements) {
    const size_t sp = m.str.find(' ');
    uint64_t seq = 0;
    if (sp == std::string::npos || !absl::SimpleAtoi(m.str.substr(0, sp), &seq)) continue;
    absl::StatusOr<pb::Event> e = FromJson<pb::Event>(m.str.substr(sp + 1), "event");
    if (!e.ok()) continue;
    e->set_seq(seq);
    out.push_back(*std::move(e));
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> TmaStore::Manifest(const std::string& server) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGETALL", core::TmaManifestKey(server)});
  if (!r.ok()) return r.status();
  std::map<std::string, std::string> out;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    out[r->elements[i].str] = r->elements[i + 1].str;
  }
  return out;
}

absl::Status TmaStore::ForgetFiles(const std::string& server,
                                   const std::vector<std::string>& names) {
  if (names.empty()) return absl::OkStatus();
  std::vector<std::string> cmd = {"HDEL", core::TmaManifestKey(server)};
  cmd.insert(cmd.end(), names.begin(), names.end());
  return redis_.Command(cmd).status();
}

absl::StatusOr<std::vector<pb::InventoryEntry>> TmaStore::Inventory() {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGETALL", core::kTmaInventoryKey});
  if (!r.ok()) return r.status();
  std::vector<pb::InventoryEntry> out;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    Json j = Json::parse(r->elements[i + 1].str, nullptr, false);
    if (!j.is_object()) continue;
    pb::InventoryEntry e;
    e.set_mac(r->elements[i].str);
    e.set_site(j.value("site", ""));
    e.set_device(j.value("device", ""));
    e.set_deployment(j.value("deployment", ""));
    e.set_server(j.value("server", ""));
    e.set_file(j.value("file", ""));
    e.set_sha256(j.value("sha256", ""));
    e.set_deployed_unix_ms(j.value("deployed_unix_ms", int64_t{0}));
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const pb::InventoryEntry& a, const pb::InventoryEntry& b) {
    return a.mac() < b.mac();
  });
  return out;
}

absl::Status TmaStore::DeleteInventory(const std::vector<std::string>& macs) {
  if (macs.empty()) return absl::OkStatus();
  std::vector<std::string> cmd = {"HDEL", core::kTmaInventoryKey};
  cmd.insert(cmd.end(), macs.begin(), macs.end());
  return redis_.Command(cmd).status();
}

}  // namespace rwg::tma
