// The calls' records (see calls.h): each call's record in Redis (services/core/calls.h), kept
// as its dialogs change so that another instance can end the call if this one is lost; ending
// such an orphan call from its record; the active calls for `rwgctl call list`.
#include <sofia-sip/nta.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "services/core/calls.h"
#include "services/core/log.h"
#include "services/sip_edge/call_state.h"
#include "services/sip_edge/calls.h"

namespace rwg::sip_edge {

namespace {

core::CallLegRecord LegRecord(const Calls::Side& s) {
  return {.call_id = s.call_id,
          .local_uri = s.local_uri,
          .local_tag = s.local_tag,
          .remote_uri = s.remote_uri,
          .remote_tag = s.remote_tag,
          .remote_target = s.remote_target,
          .route = s.route,
          .cseq = s.cseq};
}

// The dialog of a leg of a dead instance's call: CSeq past anything that instance may have
// sent.
void LoadLeg(const core::CallLegRecord& r, Calls::Side& side) {
  side.call_id = r.call_id;
  side.local_uri = r.local_uri;
  side.local_tag = r.local_tag;
  side.remote_uri = r.remote_uri;
  side.remote_tag = r.remote_tag;
  side.remote_target = r.remote_target;
  side.route = r.route;
  side.cseq = r.cseq + 10;
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
  core::CallRecord r;
  r.id = c.id;
  r.instance = host_.Instance();
  r.direction = c.from_phone ? "outbound" : "inbound";
  r.device = c.device.set_username;
  r.icp_username = c.device.icp_username;
  r.number = c.number;
  r.state = StateName(c.state);
  r.started_unix = absl::ToUnixSeconds(c.started);
  r.answered_unix = c.answered == absl::Time() ? 0 : absl::ToUnixSeconds(c.answered);
  r.set = LegRecord(c.set);
  r.icp = LegRecord(c.icp);
  if (c.media) {
    r.relay = core::CallRelayRecord{
        .id = c.media->id, .instance = c.media->instance, .grpc = c.media->grpc};
  }
  host_.SaveCall(c.id, core::EncodeCallRecord(r), !c.recorded);
  c.recorded = true;
}

void Calls::EndOrphan(const core::CallRecord& record) {
  Call c;
  c.id = record.id;
  c.bye_reason = "Q.850;cause=41;text=\"gateway instance lost\"";
  LoadLeg(record.icp, c.icp);
  LoadLeg(record.set, c.set);
  c.set.set = true;
  int sent = 0;
  if (!c.icp.remote_tag.empty() && !c.icp.remote_target.empty()) {
    SendRequest(c, c.icp, "BYE", ++c.icp.cseq);
    ++sent;
  }
  // The phone's connection died with the instance; if the phone has connected here since,
  // it gets its BYE too.
  std::optional<CallPhone> phone = host_.PhoneForIcpUser(record.icp_username);
  if (phone && !c.set.remote_tag.empty() && !c.set.remote_target.empty()) {
    c.set.tport = phone->tport;
    c.set.route_url = phone->route;
    SendRequest(c, c.set, "BYE", ++c.set.cseq);
    c.set.tport = nullptr;
    ++sent;
  }
  if (record.relay && !record.relay->id.empty() && !record.relay->grpc.empty()) {
    RelaySession r;
    r.id = record.relay->id;
    r.instance = record.relay->instance;
    r.grpc = record.relay->grpc;
    relays_.Delete(r);
  }
  host_.DropCall(c.id);
  core::log::Warn("call of a lost instance ended",
                  {{"call", c.id}, {"instance", record.instance}, {"byes", std::to_string(sent)}});
}

nlohmann::json Calls::List() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [id, c] : calls_) {
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
