#include "services/control/device_writes.h"

#include <google/protobuf/field_mask.pb.h>
#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/control/validation.h"
#include "services/core/devices.h"

namespace rwg::control {

namespace adminpb = ::rwg::admin::v1;
namespace pbu = google::protobuf::util;

namespace {

// Maps the store's conflicts for one request.
absl::Status ConflictError(const DeviceWriteResult& r) {
  std::vector<std::string> parts;
  parts.reserve(r.conflicts.size());
  for (const auto& [user, what] : r.conflicts) {
    const size_t tab = what.find('\t');
    parts.push_back(absl::StrCat(what.substr(0, tab), ": ", what.substr(tab + 1)));
  }
  return absl::AlreadyExistsError(absl::StrJoin(parts, "; "));
}

}  // namespace

const std::vector<std::string>& UpdatableDeviceFields() {
  static const std::vector<std::string> kFields = {"set_password", "icp_username", "icp_password",
                                                   "description",  "mac",          "site",
                                                   "location",     "srtp_optional"};
  return kFields;
}

absl::StatusOr<adminpb::GatewayConfig> LoadGatewayConfig(ValueStore& config, std::string* raw) {
  absl::StatusOr<std::optional<std::string>> v = config.Get();
  if (!v.ok()) return v.status();
  if (!v->has_value()) {
    if (raw != nullptr) raw->clear();
    return DefaultConfig();
  }
  if (raw != nullptr) *raw = **v;
  adminpb::GatewayConfig c;
  pbu::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!pbu::JsonStringToMessage(**v, &c, o).ok()) {
    return absl::DataLossError("the stored configuration (rwg:config) is not valid JSON");
  }
  return c;
}

void DeviceWrites::Seal(adminpb::Device& d) const {
  d.set_set_password(
      box_.Seal(d.set_password(), core::DeviceSecretContext(d.set_username(), "set_password")));
  d.set_icp_password(
      box_.Seal(d.icp_password(), core::DeviceSecretContext(d.set_username(), "icp_password")));
}

absl::Status DeviceWrites::Open(adminpb::Device& d) const {
  absl::StatusOr<std::string> sp =
      box_.Open(d.set_password(), core::DeviceSecretContext(d.set_username(), "set_password"));
  absl::StatusOr<std::string> ip =
      box_.Open(d.icp_password(), core::DeviceSecretContext(d.set_username(), "icp_password"));
  if (!sp.ok() || !ip.ok()) {
    return absl::DataLossError(
        absl::StrCat("device ", d.set_username(), ": ", (!sp.ok() ? sp : ip).status().message()));
  }
  d.set_set_password(*sp);
  d.set_icp_password(*ip);
  return absl::OkStatus();
}

absl::StatusOr<adminpb::Device> DeviceWrites::Create(adminpb::Device d, bool generate_set_password,
                                                     int64_t* revision) {
  absl::StatusOr<adminpb::GatewayConfig> cfg = LoadGatewayConfig(store_.config(), nullptr);
  if (!cfg.ok()) return cfg.status();
  const bool generate = cfg->sso_mode() || generate_set_password;
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
  adminpb::Device sealed = d;
  Seal(sealed);
  absl::StatusOr<DeviceWriteResult> w = store_.PutDevices({sealed}, WriteMode::kCreate, {true});
  if (!w.ok()) return w.status();
  if (!w->conflicts.empty()) return ConflictError(*w);
  if (revision != nullptr) *revision = w->revision;
  return d;
}

absl::StatusOr<adminpb::Device> DeviceWrites::Update(const adminpb::Device& changes,
                                                     const std::vector<std::string>& mask,
                                                     bool generate_set_password,
                                                     int64_t* revision) {
  const std::vector<std::string>& updatable = UpdatableDeviceFields();
  if (mask.empty() && !generate_set_password) {
    return absl::InvalidArgumentError(absl::StrCat("update_mask: name the fields to change (",
                                                   absl::StrJoin(updatable, ", "), ")"));
  }
  for (const std::string& p : mask) {
    if (std::find(updatable.begin(), updatable.end(), p) == updatable.end()) {
      return absl::InvalidArgumentError(absl::StrCat("update_mask: '", p, "' cannot be changed (",
                                                     absl::StrJoin(updatable, ", "), ")"));
    }
  }
  absl::StatusOr<adminpb::GatewayConfig> cfg = LoadGatewayConfig(store_.config(), nullptr);
  if (!cfg.ok()) return cfg.status();
  const bool sets_password = std::find(mask.begin(), mask.end(), "set_password") != mask.end();
  if (cfg->sso_mode() && sets_password) {
    return absl::InvalidArgumentError(
        "device.set_password: cannot be set in SSO mode; use generate_set_password");
  }
  absl::StatusOr<std::optional<adminpb::Device>> cur = store_.GetDevice(changes.set_username());
  if (!cur.ok()) return cur.status();
  if (!cur->has_value()) {
    return absl::NotFoundError(
        absl::StrCat("device.set_username: no device '", changes.set_username(), "'"));
  }
  adminpb::Device d = **cur;
  if (absl::Status opened = Open(d); !opened.ok()) return opened;
  const std::string old_set_password = d.set_password();
  google::protobuf::FieldMask fm;
  for (const std::string& p : mask) fm.add_paths(p);
  pbu::FieldMaskUtil::MergeMessageTo(changes, fm, pbu::FieldMaskUtil::MergeOptions(), &d);
  if (generate_set_password) d.set_set_password(core::RandomPassword(rng_, 16));
  std::vector<FieldError> errs = NormalizeAndValidateDevice(d, sets_password);
  if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs, "device."));
  d.set_update_time_unix(absl::ToUnixSeconds(clock_.Now()));
  adminpb::Device sealed = d;
  Seal(sealed);
  absl::StatusOr<DeviceWriteResult> w =
      store_.PutDevices({sealed}, WriteMode::kUpdate, {d.set_password() != old_set_password});
  if (!w.ok()) return w.status();
  if (!w->conflicts.empty()) return ConflictError(*w);
  if (revision != nullptr) *revision = w->revision;
  return d;
}

absl::Status DeviceWrites::Delete(const std::string& set_username) {
  absl::StatusOr<bool> deleted = store_.DeleteDevice(set_username);
  if (!deleted.ok()) return deleted.status();
  if (!*deleted) {
    return absl::NotFoundError(absl::StrCat("set_username: no device '", set_username, "'"));
  }
  return absl::OkStatus();
}

}  // namespace rwg::control
