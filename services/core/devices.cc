#include "services/core/devices.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/json.h"

namespace rwg::core {

std::string DeviceSecretContext(absl::string_view set_username, absl::string_view field) {
  return absl::StrCat("device:", set_username, ":", field);
}

absl::StatusOr<std::optional<DeviceSecrets>> DeviceDirectory::BySetUsername(
    const std::string& user) {
  if (cache_enabled_) {
    absl::MutexLock lock(&mu_);
    auto it = by_set_.find(user);
    if (it != by_set_.end()) return it->second;
  }
  absl::StatusOr<std::optional<DeviceSecrets>> d = Load(user);
  if (cache_enabled_ && d.ok() && d->has_value()) {
    absl::MutexLock lock(&mu_);
    by_set_[user] = **d;
    set_by_icp_[(*d)->icp_username] = user;
  }
  return d;
}

absl::StatusOr<std::optional<DeviceSecrets>> DeviceDirectory::Load(const std::string& user) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGET", kDevicesKey, user});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  std::optional<nlohmann::json> j = JsonObject(r->str);
  if (!j) return absl::DataLossError(absl::StrCat("device record ", user, " is not valid JSON"));
  DeviceSecrets d;
  d.set_username = user;
  std::string set_sealed, icp_sealed;
  try {
    d.icp_username = j->value("icp_username", "");
    d.srtp_optional = j->value("srtp_optional", false);
    d.location = j->value("location", "");
    set_sealed = j->value("set_password", "");
    icp_sealed = j->value("icp_password", "");
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type
    return absl::DataLossError(absl::StrCat("device record ", user, ": ", e.what()));
  }
  absl::StatusOr<std::string> sp = box_.Open(set_sealed, DeviceSecretContext(user, "set_password"));
  if (!sp.ok()) return sp.status();
  absl::StatusOr<std::string> ip = box_.Open(icp_sealed, DeviceSecretContext(user, "icp_password"));
  if (!ip.ok()) return ip.status();
  d.set_password = *std::move(sp);
  d.icp_password = *std::move(ip);
  return d;
}

absl::StatusOr<std::optional<DeviceSecrets>> DeviceDirectory::ByIcpUsername(
    const std::string& icp_user) {
  if (cache_enabled_) {
    absl::MutexLock lock(&mu_);
    auto it = set_by_icp_.find(icp_user);
    if (it != set_by_icp_.end()) {
      auto d = by_set_.find(it->second);
      if (d != by_set_.end()) return d->second;
    }
  }
  absl::StatusOr<RedisReply> r = redis_.Command({"HGET", kDevicesByIcpKey, icp_user});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  return BySetUsername(r->str);
}

absl::Status DeviceDirectory::Revalidate() {
  if (!cache_enabled_) return absl::OkStatus();
  absl::StatusOr<RedisReply> r = redis_.Command({"GET", kDevicesRevisionKey});
  if (!r.ok()) return r.status();
  absl::MutexLock lock(&mu_);
  if (r->str != revision_) {
    revision_ = r->str;
    by_set_.clear();
    set_by_icp_.clear();
  }
  return absl::OkStatus();
}

size_t DeviceDirectory::cached() const {
  absl::MutexLock lock(&mu_);
  return by_set_.size();
}

}  // namespace rwg::core
