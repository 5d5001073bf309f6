// rwg.admin.v1.AdminService: SIP devices (create, read, update, delete, list, CSV import and
// export), their secrets sealed at rest with the at-rest key.
#include <google/protobuf/util/field_mask_util.h>

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
#include "services/control/admin_service.h"
#include "services/control/device_csv.h"
#include "services/control/validation.h"
#include "services/core/devices.h"
#include "services/core/log.h"
#include "services/core/status.h"

namespace rwg::control {
namespace {

namespace pbu = google::protobuf::util;

std::string SealContext(const std::string& user, const char* field) {
  return core::DeviceSecretContext(user, field);
}

// Maps the store's conflicts for one request.
absl::Status ConflictError(const DeviceWriteResult& r) {
  std::vector<std::string> parts;
  for (const auto& [user, what] : r.conflicts) {
    size_t tab = what.find('\t');
    parts.push_back(absl::StrCat(what.substr(0, tab), ": ", what.substr(tab + 1)));
  }
  return absl::AlreadyExistsError(absl::StrJoin(parts, "; "));
}

}  // namespace

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
    absl::StatusOr<DeviceWriteResult> w = store_.PutDevices({d}, WriteMode::kCreate, {true});
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
    const std::string old_set_password = d.set_password();
    pbu::FieldMaskUtil::MergeMessageTo(req->device(), req->update_mask(),
                                       pbu::FieldMaskUtil::MergeOptions(), &d);
    if (req->generate_set_password()) d.set_set_password(core::RandomPassword(rng_, 16));
    std::vector<FieldError> errs = NormalizeAndValidateDevice(d, sets_password);
    if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs, "device."));
    d.set_update_time_unix(absl::ToUnixSeconds(clock_.Now()));
    adminpb::Device clear = d;
    absl::Status sealed = SealDevice(d);
    if (!sealed.ok()) return sealed;
    absl::StatusOr<DeviceWriteResult> w =
        store_.PutDevices({d}, WriteMode::kUpdate, {clear.set_password() != old_set_password});
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
    const std::string needle = absl::AsciiStrToLower(req->filter());
    int total = 0;
    for (adminpb::Device& d : *all) {
      if (!req->site().empty() && d.site() != req->site()) continue;
      if (!needle.empty()) {
        bool hit = false;
        for (const std::string* f : {&d.set_username(), &d.icp_username(), &d.description(),
                                     &d.mac(), &d.site(), &d.location()}) {
          hit |= absl::StrContains(absl::AsciiStrToLower(*f), needle);
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
    std::vector<std::string> clear_set_passwords;
    sealed.reserve(rows->size());
    for (CsvDevice& r : *rows) {
      adminpb::Device& d = r.device;
      if (cfg->sso_mode()) d.set_set_password(core::RandomPassword(rng_, 16));
      clear_set_passwords.push_back(d.set_password());
      d.set_create_time_unix(now);
      d.set_update_time_unix(now);
      row_of[d.set_username()] = r.row;
      absl::Status s = SealDevice(d);
      if (!s.ok()) return s;
      sealed.push_back(std::move(d));
    }
    // Whether each device that exists already gets another set-side password (for the
    // device change log); a new device's is new anyway.
    std::vector<bool> password_changed(sealed.size(), true);
    if (req->replace_existing()) {
      // Keep the creation time of devices that exist already.
      absl::StatusOr<std::vector<adminpb::Device>> existing = store_.ListDevices();
      if (!existing.ok()) return existing.status();
      std::map<std::string, adminpb::Device*> found;
      for (adminpb::Device& e : *existing) found[e.set_username()] = &e;
      for (size_t i = 0; i < sealed.size(); ++i) {
        adminpb::Device& d = sealed[i];
        auto it = found.find(d.set_username());
        if (it == found.end()) continue;
        adminpb::Device& e = *it->second;
        d.set_create_time_unix(e.create_time_unix());
        absl::Status opened = OpenDevice(e, true);
        if (!opened.ok()) return opened;
        password_changed[i] = e.set_password() != clear_set_passwords[i];
      }
    }
    absl::StatusOr<DeviceWriteResult> w =
        store_.PutDevices(sealed, req->replace_existing() ? WriteMode::kUpsert : WriteMode::kCreate,
                          password_changed);
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

}  // namespace rwg::control
