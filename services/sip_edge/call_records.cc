// The calls' records (see calls.h): each call's record in Redis (services/core/calls.h), kept
// as its dialogs change so that another instance can end the call if this one is lost; ending
// such an orphan call from its record; the active calls for `rwgctl call list`.
#include <sofia-sip/nta.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "services/core/json.h"
#include "services/core/log.h"
#include "services/sip_edge/call_state.h"
#include "services/sip_edge/calls.h"

namespace rwg::sip_edge {

namespace {

nlohmann::json SideJson(const Calls::Side& s) {
  return {{"call_id", s.call_id},       {"local_uri", s.local_uri},
          {"local_tag", s.local_tag},   {"remote_uri", s.remote_uri},
          {"remote_tag", s.remote_tag}, {"remote_target", s.remote_target},
          {"route", s.route},           {"cseq", s.cseq}};
}

const char* StateName(Calls::Call::State state) {
  switch (state) {
    case Calls::Call::State::kSetup:
      return "setup";
    case Calls::Call::State::kEarly:
      return "early";
    case Calls::Call::State::kConfirmed:
      return "confirmed";
    case Calls::Call::State::kEnded:
      break;
  }
  return "ending";
}

}  // namespace

void Calls::Save(Call& c) {
  if (c.subscription) return;  // not a call
  nlohmann::json j = {
      {"id", c.id},
      {"instance", host_.Instance()},
      {"direction", c.from_phone ? "outbound" : "inbound"},
      {"device", c.device.set_username},
      {"icp_username", c.device.icp_username},
      {"number", c.number},
      {"state", StateName(c.state)},
      {"started_unix", absl::ToUnixSeconds(c.started)},
      {"answered_unix", c.answered == absl::Time() ? 0 : absl::ToUnixSeconds(c.answered)},
      {"set", SideJson(c.set)},
      {"icp", SideJson(c.icp)}};
  if (c.media) {
    j["relay"] = {{"id", c.media->id}, {"instance", c.media->instance}, {"grpc", c.media->grpc}};
  }
  host_.SaveCall(c.id, core::JsonDump(j), !c.recorded);
  c.recorded = true;
}

void Calls::EndOrphan(const nlohmann::json& j) {
  try {
    EndOrphanCall(j);
  } catch (const nlohmann::json::exception& e) {
    // A damaged record: nothing can be sent for it; it goes.
    const std::string id =
        j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : "";
    core::log::Warn("damaged call record dropped", {{"call", id}, {"error", e.what()}});
    if (!id.empty()) host_.DropCall(id);
  }
}

void Calls::EndOrphanCall(const nlohmann::json& j) {
  Call c;
  c.id = j.value("id", "");
  c.bye_reason = "Q.850;cause=41;text=\"gateway instance lost\"";
  auto load = [](const nlohmann::json& s, Side& side) {
    if (!s.is_object()) return;
    side.call_id = s.value("call_id", "");
    side.local_uri = s.value("local_uri", "");
    side.local_tag = s.value("local_tag", "");
    side.remote_uri = s.value("remote_uri", "");
    side.remote_tag = s.value("remote_tag", "");
    side.remote_target = s.value("remote_target", "");
    side.cseq = core::JsonNumber<uint32_t>(s, "cseq", 0) +
                10;  // past anything the dead instance may have sent
    if (s.contains("route") && s["route"].is_array()) {
      for (const auto& r : s["route"]) {
        if (r.is_string()) side.route.push_back(r.get<std::string>());
      }
    }
  };
  load(j.value("icp", nlohmann::json()), c.icp);
  load(j.value("set", nlohmann::json()), c.set);
  c.set.set = true;
  int sent = 0;
  if (!c.icp.remote_tag.empty() && !c.icp.remote_target.empty()) {
    SendRequest(c, c.icp, "BYE", ++c.icp.cseq);
    ++sent;
  }
  // The phone's connection died with the instance; if the phone has connected here since,
  // it gets its BYE too.
  std::optional<CallPhone> phone = host_.PhoneForIcpUser(j.value("icp_username", ""));
  if (phone && !c.set.remote_tag.empty() && !c.set.remote_target.empty()) {
    c.set.tport = phone->tport;
    c.set.route_url = phone->route;
    SendRequest(c, c.set, "BYE", ++c.set.cseq);
    c.set.tport = nullptr;
    ++sent;
  }
  if (j.contains("relay") && j["relay"].is_object()) {
    RelaySession r;
    r.id = j["relay"].value("id", "");
    r.instance = j["relay"].value("instance", "");
    r.grpc = j["relay"].value("grpc", "");
    if (!r.id.empty() && !r.grpc.empty()) relays_.Delete(r);
  }
  host_.DropCall(c.id);
  core::log::Warn(
      "call of a lost instance ended",
      {{"call", c.id}, {"instance", j.value("instance", "")}, {"byes", std::to_string(sent)}});
}

nlohmann::json Calls::List() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [id, c] : calls_) {
    if (c->subscription) continue;
    out.push_back({{"id", id},
                   {"direction", c->from_phone ? "outbound" : "inbound"},
                   {"device", c->device.set_username},
                   {"number", c->number},
                   {"state", StateName(c->state)},
                   {"started_unix", absl::ToUnixSeconds(c->started)},
                   {"relay_session", c->media ? c->media->id : ""},
                   {"relay_instance", c->media ? c->media->instance : ""}});
  }
  return out;
}

}  // namespace rwg::sip_edge
