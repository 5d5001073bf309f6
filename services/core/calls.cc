#include "services/core/calls.h"

#include <algorithm>

#include "nlohmann/json.hpp"
#include "services/core/json.h"

namespace rwg::core {

namespace {

constexpr char kCallRecord[] = "call record";

nlohmann::json LegJson(const CallLegRecord& s) {
  return {{"call_id", s.call_id},       {"local_uri", s.local_uri},
          {"local_tag", s.local_tag},   {"remote_uri", s.remote_uri},
          {"remote_tag", s.remote_tag}, {"remote_target", s.remote_target},
          {"route", s.route},           {"cseq", s.cseq}};
}

void ReadLeg(JsonFields& record, const char* key, CallLegRecord& leg) {
  JsonFields f = record.Nested(key);
  f.Get("call_id", &leg.call_id);
  f.Get("local_uri", &leg.local_uri);
  f.Get("local_tag", &leg.local_tag);
  f.Get("remote_uri", &leg.remote_uri);
  f.Get("remote_tag", &leg.remote_tag);
  f.Get("remote_target", &leg.remote_target);
  f.Get("route", &leg.route);
  f.Get("cseq", &leg.cseq);
  record.Merge(f);
}

}  // namespace

std::string EncodeCallRecord(const CallRecord& r) {
  nlohmann::json j = {{"id", r.id},
                      {"instance", r.instance},
                      {"direction", r.direction},
                      {"device", r.device},
                      {"icp_username", r.icp_username},
                      {"number", r.number},
                      {"state", r.state},
                      {"started_unix", r.started_unix},
                      {"answered_unix", r.answered_unix},
                      {"set", LegJson(r.set)},
                      {"icp", LegJson(r.icp)}};
  if (r.relay) {
    j["relay"] = {{"id", r.relay->id}, {"instance", r.relay->instance}, {"grpc", r.relay->grpc}};
  }
  return JsonDump(j);
}

absl::StatusOr<CallRecord> DecodeCallRecord(std::string_view text) {
  std::optional<nlohmann::json> j = JsonObject(text);
  if (!j) return absl::DataLossError("call record: not a JSON object");
  CallRecord r;
  JsonFields f(*j, kCallRecord);
  f.Get("id", &r.id);
  f.Get("instance", &r.instance);
  f.Get("direction", &r.direction);
  f.Get("device", &r.device);
  f.Get("icp_username", &r.icp_username);
  f.Get("number", &r.number);
  f.Get("state", &r.state);
  f.Get("started_unix", &r.started_unix);
  f.Get("answered_unix", &r.answered_unix);
  ReadLeg(f, "set", r.set);
  ReadLeg(f, "icp", r.icp);
  bool has_relay = false;
  JsonFields relay = f.Nested("relay", &has_relay);
  if (has_relay) {
    r.relay.emplace();
    relay.Get("id", &r.relay->id);
    relay.Get("instance", &r.relay->instance);
    relay.Get("grpc", &r.relay->grpc);
    f.Merge(relay);
  }
  if (!f.status().ok()) return f.status();
  return r;
}

std::string CallRecordOwner(std::string_view text) {
  std::optional<nlohmann::json> j = JsonObject(text);
  if (!j) return "";
  auto it = j->find("instance");
  return it != j->end() && it->is_string() ? it->get<std::string>() : "";
}

absl::StatusOr<std::vector<RedisReply>> ReadCallRecords(RedisClient& redis,
                                                        const std::vector<std::string>& ids) {
  constexpr size_t kBatch = 256;
  std::vector<RedisReply> out;
  out.reserve(ids.size());
  for (size_t first = 0; first < ids.size(); first += kBatch) {
    const size_t n = std::min(kBatch, ids.size() - first);
    std::vector<std::string> mget = {"MGET"};
    for (size_t i = 0; i < n; ++i) mget.push_back(CallKey(ids[first + i]));
    absl::StatusOr<RedisReply> r = redis.Command(mget);
    if (!r.ok()) return r.status();
    if (r->elements.size() != n) {
      return absl::InternalError(absl::StrCat("redis at ", redis.address(), ": MGET of ", n,
                                              " keys answered ", r->elements.size()));
    }
    for (RedisReply& e : r->elements) out.push_back(std::move(e));
  }
  return out;
}

}  // namespace rwg::core
