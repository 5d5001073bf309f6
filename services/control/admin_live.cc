// rwg.admin.v1.AdminService: what the running gateway holds, read from the records the SIP
// edges keep in Redis: registrations, bans (and lifting one), emergency routes, calls (and
// hanging one up).
#include <google/protobuf/util/field_mask_util.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/control/admin_service.h"
#include "services/control/validation.h"
#include "services/core/calls.h"
#include "services/core/json.h"
#include "services/core/log.h"
#include "services/core/status.h"

namespace rwg::control {

// ---------------------------------------------------------------------------------------------
// Registrations

namespace {
void ToProto(const core::Binding& b, adminpb::Registration* r) {
  r->set_set_username(b.set_username);
  r->set_icp_username(b.icp_username);
  for (const std::string& c : b.contacts) r->add_contacts(c);
  r->set_source(b.source);
  r->set_transport(b.transport);
  r->set_instance(b.instance);
  r->set_since_unix(absl::ToUnixSeconds(b.since));
  r->set_expires_at_unix(absl::ToUnixSeconds(b.expires_at));
  r->set_reachable(b.reachable);
}
}  // namespace

grpc::Status AdminServiceImpl::ListRegistrations(grpc::ServerContext* ctx,
                                                 const adminpb::ListRegistrationsRequest* req,
                                                 adminpb::ListRegistrationsResponse* resp) {
  return Run("ListRegistrations", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<core::Binding>> all = registrations_.ListActive(clock_.Now());
    if (!all.ok()) return all.status();
    const std::string needle = absl::AsciiStrToLower(req->filter());
    for (const core::Binding& b : *all) {
      if (!needle.empty() && !absl::StrContains(absl::AsciiStrToLower(b.set_username), needle) &&
          !absl::StrContains(absl::AsciiStrToLower(b.icp_username), needle) &&
          !absl::StrContains(absl::AsciiStrToLower(b.source), needle) &&
          !absl::StrContains(absl::AsciiStrToLower(b.instance), needle)) {
        continue;
      }
      ToProto(b, resp->add_registrations());
    }
    std::string raw;
    absl::StatusOr<adminpb::GatewayConfig> cfg = LoadConfig(&raw);
    if (!cfg.ok()) return cfg.status();
    resp->set_licences(cfg->licences().teleworker());
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::GetRegistration(grpc::ServerContext* ctx,
                                               const adminpb::GetRegistrationRequest* req,
                                               adminpb::Registration* resp) {
  return Run("GetRegistration", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::optional<core::Binding>> b = registrations_.Get(req->set_username());
    if (!b.ok()) return b.status();
    if (!b->has_value() || (*b)->expires_at <= clock_.Now()) {
      return absl::NotFoundError(
          absl::StrCat("set_username: '", req->set_username(), "' is not registered"));
    }
    ToProto(**b, resp);
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// Bans

grpc::Status AdminServiceImpl::ListBans(grpc::ServerContext* ctx, const adminpb::ListBansRequest*,
                                        adminpb::ListBansResponse* resp) {
  return Run("ListBans", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<core::Ban>> all = bans_.List();
    if (!all.ok()) return all.status();
    for (const core::Ban& b : *all) {
      adminpb::BanInfo* out = resp->add_bans();
      out->set_id(b.id);
      out->set_kind(b.kind);
      out->set_source(b.source);
      out->set_user(b.user);
      out->set_reason(b.reason);
      out->set_instance(b.instance);
      out->set_since_unix(absl::ToUnixSeconds(b.since));
      out->set_until_unix(absl::ToUnixSeconds(b.until));
    }
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::DeleteBan(grpc::ServerContext* ctx,
                                         const adminpb::DeleteBanRequest* req,
                                         adminpb::DeleteBanResponse*) {
  return Run("DeleteBan", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::StatusOr<bool> removed = bans_.Remove(req->id());
    if (!removed.ok()) return removed.status();
    if (!*removed) return absl::NotFoundError(absl::StrCat("id: no ban '", req->id(), "'"));
    core::log::Info("ban lifted", {{"user", user}, {"id", req->id()}});
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// Emergency numbers

namespace {

core::EmergencyRoute FromProto(const adminpb::EmergencyRoute& p) {
  return {p.location(), p.number(), p.dial(), p.description()};
}

void ToProto(const core::EmergencyRoute& r, adminpb::EmergencyRoute* p) {
  p->set_location(r.location);
  p->set_number(r.number);
  p->set_dial(r.dial);
  p->set_description(r.description);
}

}  // namespace

grpc::Status AdminServiceImpl::SetEmergencyRoute(grpc::ServerContext* ctx,
                                                 const adminpb::SetEmergencyRouteRequest* req,
                                                 adminpb::EmergencyRoute* resp) {
  return Run("SetEmergencyRoute", ctx, false, [&](const std::string& user) -> absl::Status {
    core::EmergencyRoute r = FromProto(req->route());
    std::vector<FieldError> errs;
    for (const auto& [field, value] :
         {std::pair{"location", &r.location}, std::pair{"description", &r.description}}) {
      if (!IsValidUtf8(*value)) errs.push_back({field, "is not valid UTF-8"});
    }
    if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs));
    for (auto& [field, message] : core::NormalizeEmergencyRoute(r)) {
      errs.push_back({field, message});
    }
    if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs));
    if (absl::Status s = emergency_.Put(r); !s.ok()) return s;
    core::log::Info(
        "emergency route set",
        {{"user", user}, {"location", r.location}, {"number", r.number}, {"dial", r.dial}});
    ToProto(r, resp);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListEmergencyRoutes(grpc::ServerContext* ctx,
                                                   const adminpb::ListEmergencyRoutesRequest* req,
                                                   adminpb::ListEmergencyRoutesResponse* resp) {
  return Run("ListEmergencyRoutes", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<core::EmergencyTable> all = emergency_.List();
    if (!all.ok()) return all.status();
    const std::string location(absl::StripAsciiWhitespace(req->location()));
    for (const core::EmergencyRoute& r : all->routes) {
      if (location.empty() || r.location == location) ToProto(r, resp->add_routes());
    }
    for (const core::DamagedEmergencyRoute& d : all->damaged) {
      if (!location.empty() && d.location != location) continue;
      adminpb::DamagedEmergencyRoute* out = resp->add_damaged();
      out->set_location(core::ValidUtf8(d.location));
      out->set_number(core::ValidUtf8(d.number));
      out->set_error(core::ValidUtf8(d.error));
    }
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::DeleteEmergencyRoute(grpc::ServerContext* ctx,
                                                    const adminpb::DeleteEmergencyRouteRequest* req,
                                                    adminpb::DeleteEmergencyRouteResponse*) {
  return Run("DeleteEmergencyRoute", ctx, false, [&](const std::string& user) -> absl::Status {
    const std::string location(absl::StripAsciiWhitespace(req->location()));
    const std::string number(absl::StripAsciiWhitespace(req->number()));
    absl::StatusOr<bool> removed = emergency_.Remove(location, number);
    if (!removed.ok()) return removed.status();
    if (!*removed) {
      return absl::NotFoundError(absl::StrCat("no emergency route for number '", number,
                                              "' at location '", location, "'"));
    }
    core::log::Info("emergency route deleted",
                    {{"user", user}, {"location", location}, {"number", number}});
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ResolveEmergency(grpc::ServerContext* ctx,
                                                const adminpb::ResolveEmergencyRequest* req,
                                                adminpb::ResolveEmergencyResponse* resp) {
  return Run("ResolveEmergency", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<core::EmergencyTable> all = emergency_.List();
    if (!all.ok()) return all.status();
    // A location without a route of its own (an empty one too) falls back to "*".
    std::optional<core::EmergencyRoute> r = core::ResolveEmergency(
        all->routes, req->location(), absl::StripAsciiWhitespace(req->number()));
    resp->set_found(r.has_value());
    if (r) ToProto(*r, resp->mutable_route());
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// Calls (records the sip-edge instances keep in Redis, services/core/calls.h)

namespace {

void ToProto(const core::CallLegRecord& r, adminpb::CallLeg* leg) {
  leg->set_call_id(r.call_id);
  leg->set_remote_target(r.remote_target);
}

}  // namespace

absl::StatusOr<adminpb::Call> CallFromJson(std::string_view json, const std::string& id) {
  absl::StatusOr<core::CallRecord> r = core::DecodeCallRecord(json);
  if (!r.ok()) {
    return absl::DataLossError(
        absl::StrCat("call ", id, ": damaged record: ", r.status().message()));
  }
  adminpb::Call c;
  c.set_id(r->id.empty() ? id : r->id);
  c.set_instance(r->instance);
  c.set_direction(r->direction);
  c.set_device(r->device);
  c.set_icp_username(r->icp_username);
  c.set_number(r->number);
  c.set_state(r->state);
  c.set_started_unix(r->started_unix);
  c.set_answered_unix(r->answered_unix);
  if (r->relay) {
    c.set_relay_session(r->relay->id);
    c.set_relay_instance(r->relay->instance);
  }
  ToProto(r->set, c.mutable_set());
  ToProto(r->icp, c.mutable_icp());
  return c;
}

absl::StatusOr<std::optional<adminpb::Call>> AdminServiceImpl::LoadCall(const std::string& id) {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"GET", core::CallKey(id)});
  if (!r.ok()) return r.status();
  return CallFromRecord(*r, id);
}

absl::StatusOr<std::optional<adminpb::Call>> AdminServiceImpl::CallFromRecord(
    const core::RedisReply& r, const std::string& id) {
  if (r.is_nil()) return std::nullopt;
  absl::StatusOr<adminpb::Call> c = CallFromJson(r.str, id);
  if (!c.ok()) return c.status();
  return std::optional<adminpb::Call>(*std::move(c));
}

grpc::Status AdminServiceImpl::ListCalls(grpc::ServerContext* ctx,
                                         const adminpb::ListCallsRequest* req,
                                         adminpb::ListCallsResponse* resp) {
  return Run("ListCalls", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<core::RedisReply> members = redis_.Command({"SMEMBERS", core::kCallsKey});
    if (!members.ok()) return members.status();
    std::vector<std::string> ids;
    for (const core::RedisReply& e : members->elements) ids.push_back(e.str);
    absl::StatusOr<std::vector<core::RedisReply>> records = core::ReadCallRecords(redis_, ids);
    if (!records.ok()) return records.status();
    std::vector<adminpb::Call> calls;
    const std::string needle = absl::AsciiStrToLower(req->filter());
    for (size_t i = 0; i < ids.size(); ++i) {
      absl::StatusOr<std::optional<adminpb::Call>> c = CallFromRecord((*records)[i], ids[i]);
      if (!c.ok()) {  // one damaged record does not hide the other calls
        core::log::Warn("damaged call record skipped",
                        {{"call", ids[i]}, {"error", std::string(c.status().message())}});
        continue;
      }
      if (!c->has_value()) continue;  // ended since
      const adminpb::Call& call = **c;
      if (!needle.empty() && !absl::StrContains(absl::AsciiStrToLower(call.device()), needle) &&
          !absl::StrContains(absl::AsciiStrToLower(call.number()), needle) &&
          !absl::StrContains(absl::AsciiStrToLower(call.instance()), needle)) {
        continue;
      }
      calls.push_back(call);
    }
    std::sort(calls.begin(), calls.end(), [](const adminpb::Call& a, const adminpb::Call& b) {
      return std::make_tuple(a.started_unix(), a.id()) < std::make_tuple(b.started_unix(), b.id());
    });
    for (adminpb::Call& c : calls) *resp->add_calls() = std::move(c);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::GetCall(grpc::ServerContext* ctx, const adminpb::GetCallRequest* req,
                                       adminpb::Call* resp) {
  return Run("GetCall", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::optional<adminpb::Call>> c = LoadCall(req->id());
    if (!c.ok()) return c.status();
    if (!c->has_value()) return absl::NotFoundError(absl::StrCat("id: no call '", req->id(), "'"));
    *resp = **c;
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::HangupCall(grpc::ServerContext* ctx,
                                          const adminpb::HangupCallRequest* req,
                                          adminpb::HangupCallResponse*) {
  return Run("HangupCall", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::StatusOr<std::optional<adminpb::Call>> c = LoadCall(req->id());
    if (!c.ok()) return c.status();
    if (!c->has_value()) return absl::NotFoundError(absl::StrCat("id: no call '", req->id(), "'"));
    absl::StatusOr<core::RedisReply> r =
        redis_.Command({"PUBLISH", core::kEdgeEventsChannel, absl::StrCat("hangup ", req->id())});
    if (!r.ok()) return r.status();
    if (r->integer == 0) {
      return absl::UnavailableError(
          absl::StrCat("no sip-edge instance is listening; call ", req->id(), " stays"));
    }
    core::log::Info("call hangup asked",
                    {{"user", user}, {"call", req->id()}, {"instance", (*c)->instance()}});
    return absl::OkStatus();
  });
}

}  // namespace rwg::control
