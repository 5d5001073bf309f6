#include "services/control/admin_service.h"

#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/control/device_csv.h"
#include "services/control/rpc_guard.h"
#include "services/control/validation.h"
#include "services/core/calls.h"
#include "services/core/devices.h"
#include "services/core/json.h"
#include "services/core/log.h"
#include "services/core/status.h"

namespace rwg::control {
namespace {

namespace pbu = google::protobuf::util;

constexpr char kHashWarning[] =
    "every phone deployed with the previous key loses its configuration path: redeploy the "
    "phones (or their redirection) with the new download path";

// InvalidArgument when the configuration cannot be written as JSON (validation refuses
// invalid UTF-8 first; never store an empty configuration).
absl::StatusOr<std::string> ConfigToJson(const adminpb::GatewayConfig& c) {
  pbu::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  std::string out;
  auto s = pbu::MessageToJsonString(c, &out, o);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config: cannot be stored: ", s.ToString()));
  }
  return out;
}

std::string SealContext(const std::string& user, const char* field) {
  return core::DeviceSecretContext(user, field);
}

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(s); }

// Maps the store's conflicts for one request.
absl::Status ConflictError(const DeviceWriteResult& r) {
  std::vector<std::string> parts;
  for (const auto& [user, what] : r.conflicts) {
    size_t tab = what.find('\t');
    parts.push_back(absl::StrCat(what.substr(0, tab), ": ", what.substr(tab + 1)));
  }
  return absl::AlreadyExistsError(absl::StrJoin(parts, "; "));
}

bool IsHex32(absl::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

LoginMetrics::LoginMetrics(prometheus::Registry& registry)
    : refusals_(prometheus::BuildCounter()
                    .Name("rwg_control_login_refusals_total")
                    .Help("Password checks refused without checking, by reason")
                    .Register(registry)),
      lockouts_(prometheus::BuildCounter()
                    .Name("rwg_control_login_lockouts_total")
                    .Help("Sources and user names locked out after repeated failed logins")
                    .Register(registry)),
      busy_(refusals_.Add({{"reason", "busy"}})),
      source_locked_(refusals_.Add({{"reason", "source_locked"}})),
      user_locked_(refusals_.Add({{"reason", "user_locked"}})),
      source_lockouts_(lockouts_.Add({{"scope", "source"}})),
      user_lockouts_(lockouts_.Add({{"scope", "user"}})) {}

void LoginMetrics::Count(LoginEvent e) {
  switch (e) {
    case LoginEvent::kBusy:
      busy_.Increment();
      break;
    case LoginEvent::kSourceLocked:
      source_locked_.Increment();
      break;
    case LoginEvent::kUserLocked:
      user_locked_.Increment();
      break;
    case LoginEvent::kSourceLockout:
      source_lockouts_.Increment();
      break;
    case LoginEvent::kUserLockout:
      user_lockouts_.Increment();
      break;
  }
}

AdminServiceImpl::AdminServiceImpl(RedisControlStore& store, core::RedisClient& redis,
                                   Authenticator& auth, core::SecretBox& box, core::Clock& clock,
                                   core::Random& rng, prometheus::Registry& registry)
    : store_(store),
      registrations_(redis),
      bans_(redis),
      emergency_(redis),
      redis_(redis),
      auth_(auth),
      box_(box),
      clock_(clock),
      rng_(rng),
      rpcs_(prometheus::BuildCounter()
                .Name("rwg_control_rpcs_total")
                .Help("Admin API calls by method and gRPC status code")
                .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("rwg_control_rpc_duration_seconds")
                   .Help("Admin API call duration by method")
                   .Register(registry)),
      login_failures_(prometheus::BuildCounter()
                          .Name("rwg_control_login_failures_total")
                          .Help("Failed admin logins")
                          .Register(registry)
                          .Add({})),
      exceptions_(prometheus::BuildCounter()
                      .Name("rwg_control_rpc_exceptions_total")
                      .Help("Admin API calls whose handler threw (answered INTERNAL), by method")
                      .Register(registry)) {}

grpc::Status AdminServiceImpl::Run(const char* method, grpc::ServerContext* ctx, bool public_rpc,
                                   const std::function<absl::Status(std::string&)>& fn) {
  absl::Time start = absl::Now();
  std::string user;
  auto count_throw = [&] { exceptions_.Add({{"method", method}}).Increment(); };
  absl::Status st = RunCatching(
      method,
      [&]() -> absl::Status {
        if (!public_rpc) {
          auto md = ctx->client_metadata().find("authorization");
          absl::string_view header;
          if (md != ctx->client_metadata().end()) {
            header = absl::string_view(md->second.data(), md->second.size());
          }
          absl::StatusOr<std::string> who = auth_.Check(header);
          if (!who.ok()) return who.status();
          user = *who;
        }
        return fn(user);
      },
      count_throw);
  // Counting and logging must not throw out of the handler either.
  absl::Status logged = RunCatching(
      method,
      [&]() -> absl::Status {
        const std::string code = absl::StatusCodeToString(st.code());
        rpcs_.Add({{"method", method}, {"code", code}}).Increment();
        latency_
            .Add({{"method", method}},
                 prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5})
            .Observe(absl::ToDoubleSeconds(absl::Now() - start));
        if (!st.ok()) {
          core::log::Info("rpc failed", {{"method", method},
                                         {"user", user},
                                         {"peer", ctx->peer()},
                                         {"code", code},
                                         {"error", std::string(st.message())}});
        } else if (!absl::StartsWith(method, "Get") && !absl::StartsWith(method, "List") &&
                   !absl::StartsWith(method, "Export")) {
          core::log::Info("rpc", {{"method", method}, {"user", user}, {"peer", ctx->peer()}});
        }
        return absl::OkStatus();
      },
      count_throw);
  if (!logged.ok()) return core::ToGrpcStatus(logged);
  return core::ToGrpcStatus(st);
}

// ---------------------------------------------------------------------------------------------
// Sessions

grpc::Status AdminServiceImpl::Login(grpc::ServerContext* ctx, const adminpb::LoginRequest* req,
                                     adminpb::LoginResponse* resp) {
  return Run("Login", ctx, true, [&](std::string& user) {
    user = req->username();
    absl::StatusOr<Token> t =
        auth_.Login(req->username(), req->password(), LoginSourceKey(ctx->peer()));
    if (!t.ok()) {
      if (absl::IsUnauthenticated(t.status())) login_failures_.Increment();
      return t.status();
    }
    resp->set_token(t->token);
    resp->set_expires_at_unix(absl::ToUnixSeconds(t->expires_at));
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::Logout(grpc::ServerContext* ctx, const adminpb::LogoutRequest*,
                                      adminpb::LogoutResponse*) {
  return Run("Logout", ctx, false, [&](const std::string&) {
    auto md = ctx->client_metadata().find("authorization");
    return auth_.Logout(absl::string_view(md->second.data(), md->second.size()));
  });
}

grpc::Status AdminServiceImpl::ChangePassword(grpc::ServerContext* ctx,
                                              const adminpb::ChangePasswordRequest* req,
                                              adminpb::ChangePasswordResponse*) {
  return Run("ChangePassword", ctx, false, [&](const std::string& user) {
    auto md = ctx->client_metadata().find("authorization");
    return auth_.ChangePassword(user, req->current_password(), req->new_password(),
                                absl::string_view(md->second.data(), md->second.size()),
                                LoginSourceKey(ctx->peer()));
  });
}

// ---------------------------------------------------------------------------------------------
// Configuration

absl::Status AdminServiceImpl::EnsureConfig(const std::string& public_name) {
  adminpb::GatewayConfig c = DefaultConfig();
  if (!public_name.empty()) c.set_public_name(public_name);
  std::vector<FieldError> errs = ValidateConfig(c);
  if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs));
  absl::StatusOr<std::string> json = ConfigToJson(c);
  if (!json.ok()) return json.status();
  absl::StatusOr<bool> set = store_.config().CompareAndSet("", *json);
  if (!set.ok()) return set.status();
  if (*set) core::log::Info("initial configuration written", {{"public_name", c.public_name()}});
  return absl::OkStatus();
}

absl::StatusOr<adminpb::GatewayConfig> AdminServiceImpl::LoadConfig(std::string* raw) {
  absl::StatusOr<std::optional<std::string>> v = store_.config().Get();
  if (!v.ok()) return v.status();
  if (!v->has_value()) {
    raw->clear();
    return DefaultConfig();
  }
  *raw = **v;
  adminpb::GatewayConfig c;
  pbu::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!pbu::JsonStringToMessage(*raw, &c, o).ok()) {
    return absl::DataLossError("the stored configuration (rwg:config) is not valid JSON");
  }
  return c;
}

grpc::Status AdminServiceImpl::GetConfig(grpc::ServerContext* ctx, const adminpb::GetConfigRequest*,
                                         adminpb::GatewayConfig* resp) {
  return Run("GetConfig", ctx, false, [&](const std::string&) {
    std::string raw;
    absl::StatusOr<adminpb::GatewayConfig> c = LoadConfig(&raw);
    if (!c.ok()) return c.status();
    *resp = *c;
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::UpdateConfig(grpc::ServerContext* ctx,
                                            const adminpb::UpdateConfigRequest* req,
                                            adminpb::UpdateConfigResponse* resp) {
  return Run("UpdateConfig", ctx, false, [&](const std::string& user) -> absl::Status {
    for (const std::string& path : req->update_mask().paths()) {
      if (!pbu::FieldMaskUtil::GetFieldDescriptors(adminpb::GatewayConfig::descriptor(), path,
                                                   nullptr)) {
        return absl::InvalidArgumentError(
            absl::StrCat("update_mask: '", path, "' is not a configuration field"));
      }
    }
    // Compare-and-set loop: concurrent admins never overwrite each other's fields.
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::string raw;
      absl::StatusOr<adminpb::GatewayConfig> before = LoadConfig(&raw);
      if (!before.ok()) return before.status();
      adminpb::GatewayConfig after = *before;
      if (req->update_mask().paths().empty()) {
        after = req->config();
      } else {
        pbu::FieldMaskUtil::MergeOptions mo;
        mo.set_replace_repeated_fields(true);
        mo.set_replace_message_fields(false);
        pbu::FieldMaskUtil::MergeMessageTo(req->config(), req->update_mask(), mo, &after);
      }
      std::vector<FieldError> errs = ValidateConfig(after);
      if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs));
      absl::StatusOr<std::string> json = ConfigToJson(after);
      if (!json.ok()) return json.status();
      absl::StatusOr<bool> set = store_.config().CompareAndSet(raw, *json);
      if (!set.ok()) return set.status();
      if (!*set) continue;
      *resp->mutable_config() = after;
      for (std::string& r : RestartRequired(*before, after)) resp->add_restart_required(r);
      core::log::Info("configuration changed",
                      {{"user", user},
                       {"fields", absl::StrJoin(req->update_mask().paths(), ",")},
                       {"restart_required", absl::StrJoin(resp->restart_required(), ",")}});
      return absl::OkStatus();
    }
    return absl::AbortedError("configuration changed concurrently 5 times; try again");
  });
}

// ---------------------------------------------------------------------------------------------
// Devices

absl::Status AdminServiceImpl::SealDevice(adminpb::Device& d) const {
  d.set_set_password(box_.Seal(d.set_password(), SealContext(d.set_username(), "set_password")));
  d.set_icp_password(box_.Seal(d.icp_password(), SealContext(d.set_username(), "icp_password")));
  return absl::OkStatus();
}

absl::Status AdminServiceImpl::OpenDevice(adminpb::Device& d, bool show_secrets) const {
  if (!show_secrets) {
    d.clear_set_password();
    d.clear_icp_password();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> sp =
      box_.Open(d.set_password(), SealContext(d.set_username(), "set_password"));
  absl::StatusOr<std::string> ip =
      box_.Open(d.icp_password(), SealContext(d.set_username(), "icp_password"));
  if (!sp.ok() || !ip.ok()) {
    return absl::DataLossError(
        absl::StrCat("device ", d.set_username(), ": ", (!sp.ok() ? sp : ip).status().message()));
  }
  d.set_set_password(*sp);
  d.set_icp_password(*ip);
  return absl::OkStatus();
}

grpc::Status AdminServiceImpl::CreateDevice(grpc::ServerContext* ctx,
                                            const adminpb::CreateDeviceRequest* req,
                                            adminpb::Device* resp) {
  return Run("CreateDevice", ctx, false, [&](const std::string& user) -> absl::Status {
    std::string raw;
    absl::StatusOr<adminpb::GatewayConfig> cfg = LoadConfig(&raw);
    if (!cfg.ok()) return cfg.status();
    adminpb::Device d = req->device();
    const bool generate = cfg->sso_mode() || req->generate_set_password();
    if (cfg->sso_mode() && !d.set_password().empty()) {
      return absl::InvalidArgumentError(
          "device.set_password: must be empty in SSO mode (rwg generates it)");
    }
    if (generate) d.set_set_password(core::RandomPassword(rng_, 16));
    std::vector<FieldError> errs = NormalizeAndValidateDevice(d, !generate);
    if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs, "device."));
    const int64_t now = absl::ToUnixSeconds(clock_.Now());
    d.set_create_time_unix(now);
    d.set_update_time_unix(now);
    adminpb::Device clear = d;
    absl::Status sealed = SealDevice(d);
    if (!sealed.ok()) return sealed;
    absl::StatusOr<DeviceWriteResult> w = store_.PutDevices({d}, WriteMode::kCreate);
    if (!w.ok()) return w.status();
    if (!w->conflicts.empty()) return ConflictError(*w);
    core::log::Info("device created", {{"user", user}, {"device", clear.set_username()}});
    *resp = clear;
    if (!generate) resp->clear_set_password();  // the admin typed it; echo only generated ones
    resp->clear_icp_password();
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::GetDevice(grpc::ServerContext* ctx,
                                         const adminpb::GetDeviceRequest* req,
                                         adminpb::Device* resp) {
  return Run("GetDevice", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::optional<adminpb::Device>> d = store_.GetDevice(req->set_username());
    if (!d.ok()) return d.status();
    if (!d->has_value()) {
      return absl::NotFoundError(
          absl::StrCat("set_username: no device '", req->set_username(), "'"));
    }
    *resp = **d;
    return OpenDevice(*resp, req->show_secrets());
  });
}

grpc::Status AdminServiceImpl::UpdateDevice(grpc::ServerContext* ctx,
                                            const adminpb::UpdateDeviceRequest* req,
                                            adminpb::Device* resp) {
  return Run("UpdateDevice", ctx, false, [&](const std::string& user) -> absl::Status {
    static const std::set<std::string> kUpdatable = {"set_password", "icp_username", "icp_password",
                                                     "description",  "mac",          "site",
                                                     "location",     "srtp_optional"};
    if (req->update_mask().paths().empty() && !req->generate_set_password()) {
      return absl::InvalidArgumentError(absl::StrCat("update_mask: name the fields to change (",
                                                     absl::StrJoin(kUpdatable, ", "), ")"));
    }
    for (const std::string& p : req->update_mask().paths()) {
      if (!kUpdatable.count(p)) {
        return absl::InvalidArgumentError(absl::StrCat("update_mask: '", p, "' cannot be changed (",
                                                       absl::StrJoin(kUpdatable, ", "), ")"));
      }
    }
    std::string raw;
    absl::StatusOr<adminpb::GatewayConfig> cfg = LoadConfig(&raw);
    if (!cfg.ok()) return cfg.status();
    const bool sets_password = absl::c_linear_search(req->update_mask().paths(), "set_password");
    if (cfg->sso_mode() && sets_password) {
      return absl::InvalidArgumentError(
          "device.set_password: cannot be set in SSO mode; use generate_set_password");
    }
    absl::StatusOr<std::optional<adminpb::Device>> cur =
        store_.GetDevice(req->device().set_username());
    if (!cur.ok()) return cur.status();
    if (!cur->has_value()) {
      return absl::NotFoundError(
          absl::StrCat("device.set_username: no device '", req->device().set_username(), "'"));
    }
    adminpb::Device d = **cur;
    absl::Status opened = OpenDevice(d, true);
    if (!opened.ok()) return opened;
    pbu::FieldMaskUtil::MergeMessageTo(req->device(), req->update_mask(),
                                       pbu::FieldMaskUtil::MergeOptions(), &d);
    if (req->generate_set_password()) d.set_set_password(core::RandomPassword(rng_, 16));
    std::vector<FieldError> errs = NormalizeAndValidateDevice(d, sets_password);
    if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs, "device."));
    d.set_update_time_unix(absl::ToUnixSeconds(clock_.Now()));
    adminpb::Device clear = d;
    absl::Status sealed = SealDevice(d);
    if (!sealed.ok()) return sealed;
    absl::StatusOr<DeviceWriteResult> w = store_.PutDevices({d}, WriteMode::kUpdate);
    if (!w.ok()) return w.status();
    if (!w->conflicts.empty()) return ConflictError(*w);
    core::log::Info("device updated", {{"user", user},
                                       {"device", clear.set_username()},
                                       {"fields", absl::StrJoin(req->update_mask().paths(), ",")}});
    *resp = clear;
    if (!req->generate_set_password()) resp->clear_set_password();
    resp->clear_icp_password();
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::DeleteDevice(grpc::ServerContext* ctx,
                                            const adminpb::DeleteDeviceRequest* req,
                                            adminpb::DeleteDeviceResponse*) {
  return Run("DeleteDevice", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::StatusOr<bool> deleted = store_.DeleteDevice(req->set_username());
    if (!deleted.ok()) return deleted.status();
    if (!*deleted) {
      return absl::NotFoundError(
          absl::StrCat("set_username: no device '", req->set_username(), "'"));
    }
    core::log::Info("device deleted", {{"user", user}, {"device", req->set_username()}});
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListDevices(grpc::ServerContext* ctx,
                                           const adminpb::ListDevicesRequest* req,
                                           adminpb::ListDevicesResponse* resp) {
  return Run("ListDevices", ctx, false, [&](const std::string&) -> absl::Status {
    if (req->page_size() < 0 || req->page_size() > 1000) {
      return absl::InvalidArgumentError("page_size: must be 0 (default 100) to 1000");
    }
    const int page_size = req->page_size() == 0 ? 100 : req->page_size();
    absl::StatusOr<std::vector<adminpb::Device>> all = store_.ListDevices();
    if (!all.ok()) return all.status();
    const std::string needle = Lower(req->filter());
    int total = 0;
    for (adminpb::Device& d : *all) {
      if (!req->site().empty() && d.site() != req->site()) continue;
      if (!needle.empty()) {
        bool hit = false;
        for (const std::string* f : {&d.set_username(), &d.icp_username(), &d.description(),
                                     &d.mac(), &d.site(), &d.location()}) {
          hit |= absl::StrContains(Lower(*f), needle);
        }
        if (!hit) continue;
      }
      ++total;
      if (!req->page_token().empty() && d.set_username() <= req->page_token()) continue;
      if (resp->devices_size() == page_size) {
        if (resp->next_page_token().empty()) {
          resp->set_next_page_token(resp->devices(page_size - 1).set_username());
        }
        continue;
      }
      absl::Status opened = OpenDevice(d, req->show_secrets());
      if (!opened.ok()) return opened;
      *resp->add_devices() = std::move(d);
    }
    resp->set_total_size(total);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ImportDevices(grpc::ServerContext* ctx,
                                             const adminpb::ImportDevicesRequest* req,
                                             adminpb::ImportDevicesResponse* resp) {
  return Run("ImportDevices", ctx, false, [&](const std::string& user) -> absl::Status {
    std::string raw;
    absl::StatusOr<adminpb::GatewayConfig> cfg = LoadConfig(&raw);
    if (!cfg.ok()) return cfg.status();
    absl::StatusOr<std::vector<CsvDevice>> rows = ParseDeviceCsv(req->csv(), !cfg->sso_mode());
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return absl::InvalidArgumentError("the file holds no device rows");
    const int64_t now = absl::ToUnixSeconds(clock_.Now());
    std::map<std::string, int> row_of;
    std::vector<adminpb::Device> sealed;
    sealed.reserve(rows->size());
    for (CsvDevice& r : *rows) {
      adminpb::Device& d = r.device;
      if (cfg->sso_mode()) d.set_set_password(core::RandomPassword(rng_, 16));
      d.set_create_time_unix(now);
      d.set_update_time_unix(now);
      row_of[d.set_username()] = r.row;
      absl::Status s = SealDevice(d);
      if (!s.ok()) return s;
      sealed.push_back(std::move(d));
    }
    if (req->replace_existing()) {
      // Keep the creation time of devices that exist already.
      absl::StatusOr<std::vector<adminpb::Device>> existing = store_.ListDevices();
      if (!existing.ok()) return existing.status();
      std::map<std::string, int64_t> created;
      for (const adminpb::Device& e : *existing) created[e.set_username()] = e.create_time_unix();
      for (adminpb::Device& d : sealed) {
        auto it = created.find(d.set_username());
        if (it != created.end()) d.set_create_time_unix(it->second);
      }
    }
    absl::StatusOr<DeviceWriteResult> w = store_.PutDevices(
        sealed, req->replace_existing() ? WriteMode::kUpsert : WriteMode::kCreate);
    if (!w.ok()) return w.status();
    if (!w->conflicts.empty()) {
      std::vector<std::string> parts;
      for (const auto& [dev, what] : w->conflicts) {
        size_t tab = what.find('\t');
        parts.push_back(absl::StrCat("row ", row_of[dev], ", column ", what.substr(0, tab), ": ",
                                     what.substr(tab + 1)));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "nothing imported: ", absl::StrJoin(parts, "; "),
          req->replace_existing() ? "" : " (use replace_existing to update existing devices)"));
    }
    resp->set_created(w->created);
    resp->set_updated(w->updated);
    core::log::Info("devices imported", {{"user", user},
                                         {"created", std::to_string(w->created)},
                                         {"updated", std::to_string(w->updated)}});
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ExportDevices(grpc::ServerContext* ctx,
                                             const adminpb::ExportDevicesRequest*,
                                             adminpb::ExportDevicesResponse* resp) {
  return Run("ExportDevices", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::StatusOr<std::vector<adminpb::Device>> all = store_.ListDevices();
    if (!all.ok()) return all.status();
    for (adminpb::Device& d : *all) {
      absl::Status s = OpenDevice(d, true);
      if (!s.ok()) return s;
    }
    resp->set_csv(WriteDeviceCsv(*all));
    resp->set_count(static_cast<int>(all->size()));
    core::log::Info("devices exported", {{"user", user}, {"count", std::to_string(all->size())}});
    return absl::OkStatus();
  });
}

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
    const std::string needle = Lower(req->filter());
    for (const core::Binding& b : *all) {
      if (!needle.empty() && !absl::StrContains(Lower(b.set_username), needle) &&
          !absl::StrContains(Lower(b.icp_username), needle) &&
          !absl::StrContains(Lower(b.source), needle) &&
          !absl::StrContains(Lower(b.instance), needle)) {
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

adminpb::Call CallFromObject(const nlohmann::json& j, const std::string& id) {
  adminpb::Call c;
  c.set_id(j.value("id", id));
  c.set_instance(j.value("instance", ""));
  c.set_direction(j.value("direction", ""));
  c.set_device(j.value("device", ""));
  c.set_icp_username(j.value("icp_username", ""));
  c.set_number(j.value("number", ""));
  c.set_state(j.value("state", ""));
  c.set_started_unix(core::JsonNumber<int64_t>(j, "started_unix", 0));
  c.set_answered_unix(core::JsonNumber<int64_t>(j, "answered_unix", 0));
  if (j.contains("relay") && j["relay"].is_object()) {
    c.set_relay_session(j["relay"].value("id", ""));
    c.set_relay_instance(j["relay"].value("instance", ""));
  }
  for (const char* side : {"set", "icp"}) {
    if (!j.contains(side) || !j[side].is_object()) continue;
    adminpb::CallLeg* leg = std::string(side) == "set" ? c.mutable_set() : c.mutable_icp();
    leg->set_call_id(j[side].value("call_id", ""));
    leg->set_remote_target(j[side].value("remote_target", ""));
  }
  return c;
}

}  // namespace

absl::StatusOr<adminpb::Call> CallFromJson(std::string_view json, const std::string& id) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) return absl::DataLossError(absl::StrCat("call ", id, ": damaged record"));
  try {
    return CallFromObject(j, id);
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("call ", id, ": damaged record: ", e.what()));
  }
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
    const std::string needle = Lower(req->filter());
    for (size_t i = 0; i < ids.size(); ++i) {
      absl::StatusOr<std::optional<adminpb::Call>> c = CallFromRecord((*records)[i], ids[i]);
      if (!c.ok()) {  // one damaged record does not hide the other calls
        core::log::Warn("damaged call record skipped",
                        {{"call", ids[i]}, {"error", std::string(c.status().message())}});
        continue;
      }
      if (!c->has_value()) continue;  // ended since
      const adminpb::Call& call = **c;
      if (!needle.empty() && !absl::StrContains(Lower(call.device()), needle) &&
          !absl::StrContains(Lower(call.number()), needle) &&
          !absl::StrContains(Lower(call.instance()), needle)) {
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

// ---------------------------------------------------------------------------------------------
// Hash key

absl::StatusOr<adminpb::HashKey> AdminServiceImpl::LoadHash() {
  absl::StatusOr<std::optional<std::string>> v = store_.hash().Get();
  if (!v.ok()) return v.status();
  if (!v->has_value()) {
    return absl::NotFoundError(
        "no hash key yet: generate one (rwgctl hash generate) or import "
        "the MiVoice 5000's (rwgctl hash import)");
  }
  nlohmann::json j = nlohmann::json::parse(**v, nullptr, false);
  if (!j.is_object() || !j.contains("key") || !j["key"].is_string() || !j.contains("create_time") ||
      !j["create_time"].is_number_integer()) {
    return absl::DataLossError("the stored hash key (rwg:hash) is damaged");
  }
  absl::StatusOr<std::string> key = box_.Open(j["key"].get<std::string>(), "hash");
  if (!key.ok()) return key.status();
  std::string raw;
  absl::StatusOr<adminpb::GatewayConfig> cfg = LoadConfig(&raw);
  if (!cfg.ok()) return cfg.status();
  adminpb::HashKey h;
  h.set_key(*key);
  h.set_download_path(absl::StrCat("https://", cfg->public_name(), ":",
                                   cfg->icp().xml_listen_port(), "/", *key, "/ftp_67xxi"));
  h.set_create_time_unix(j["create_time"].get<int64_t>());
  return h;
}

absl::StatusOr<adminpb::HashKey> AdminServiceImpl::StoreHash(const std::string& key,
                                                             bool must_be_new, const char* action,
                                                             const std::string& user) {
  absl::StatusOr<std::optional<std::string>> cur = store_.hash().Get();
  if (!cur.ok()) return cur.status();
  if (must_be_new && cur->has_value()) {
    return absl::AlreadyExistsError(
        "a hash key exists already; regenerating it breaks every deployed phone (rwgctl hash "
        "regenerate)");
  }
  nlohmann::json j = {{"key", box_.Seal(key, "hash")},
                      {"create_time", absl::ToUnixSeconds(clock_.Now())}};
  absl::StatusOr<bool> set = store_.hash().CompareAndSet(cur->value_or(""), core::JsonDump(j));
  if (!set.ok()) return set.status();
  if (!*set) return absl::AbortedError("the hash key changed concurrently; look and try again");
  core::log::Warn("hash key changed", {{"user", user}, {"action", action}});
  return LoadHash();
}

grpc::Status AdminServiceImpl::GetHashKey(grpc::ServerContext* ctx,
                                          const adminpb::GetHashKeyRequest*,
                                          adminpb::HashKey* resp) {
  return Run("GetHashKey", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<adminpb::HashKey> h = LoadHash();
    if (!h.ok()) return h.status();
    *resp = *h;
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::GenerateHashKey(grpc::ServerContext* ctx,
                                               const adminpb::GenerateHashKeyRequest*,
                                               adminpb::HashKey* resp) {
  return Run("GenerateHashKey", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::StatusOr<adminpb::HashKey> h =
        StoreHash(core::RandomHex(rng_, 16), true, "generate", user);
    if (!h.ok()) return h.status();
    *resp = *h;
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RegenerateHashKey(grpc::ServerContext* ctx,
                                                 const adminpb::RegenerateHashKeyRequest* req,
                                                 adminpb::HashKey* resp) {
  return Run("RegenerateHashKey", ctx, false, [&](const std::string& user) -> absl::Status {
    if (!req->confirm()) {
      return absl::FailedPreconditionError(
          absl::StrCat("confirm: must be set to regenerate the hash key: ", kHashWarning));
    }
    absl::Status pw =
        auth_.VerifyPassword(user, req->current_password(), LoginSourceKey(ctx->peer()));
    if (!pw.ok()) return pw;
    absl::StatusOr<adminpb::HashKey> h =
        StoreHash(core::RandomHex(rng_, 16), false, "regenerate", user);
    if (!h.ok()) return h.status();
    *resp = *h;
    resp->set_warning(kHashWarning);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ImportHashKey(grpc::ServerContext* ctx,
                                             const adminpb::ImportHashKeyRequest* req,
                                             adminpb::HashKey* resp) {
  return Run("ImportHashKey", ctx, false, [&](const std::string& user) -> absl::Status {
    std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(req->key()));
    if (!IsHex32(key)) {
      return absl::InvalidArgumentError("key: must be 32 hex digits (128 bits)");
    }
    absl::StatusOr<std::optional<std::string>> cur = store_.hash().Get();
    if (!cur.ok()) return cur.status();
    const bool replaces = cur->has_value();
    if (replaces) {
      if (!req->confirm()) {
        return absl::FailedPreconditionError(
            absl::StrCat("confirm: must be set to replace the existing hash key: ", kHashWarning));
      }
      absl::Status pw =
          auth_.VerifyPassword(user, req->current_password(), LoginSourceKey(ctx->peer()));
      if (!pw.ok()) return pw;
    }
    absl::StatusOr<adminpb::HashKey> h = StoreHash(key, false, "import", user);
    if (!h.ok()) return h.status();
    *resp = *h;
    if (replaces) resp->set_warning(kHashWarning);
    return absl::OkStatus();
  });
}

}  // namespace rwg::control
