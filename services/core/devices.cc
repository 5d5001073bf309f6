#include "services/core/devices.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/json.h"

namespace rwg::core {

std::string DeviceSecretContext(absl::string_view set_username, absl::string_view field) {
  return absl::StrCat("device:", set_username, ":", field);
}

namespace {

// A secret that does not open, with the device and field it belongs to.
absl::Status NameDevice(const std::string& user, const char* field, const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat("device record ", user, ", ", field, ": ", s.message()));
}

}  // namespace

std::optional<DeviceSecrets> DeviceDirectory::Cached(const std::string& user) const {
  if (!cache_enabled_) return std::nullopt;
  absl::MutexLock lock(&mu_);
  auto it = by_set_.find(user);
  if (it == by_set_.end()) return std::nullopt;
  return it->second;
}

uint64_t DeviceDirectory::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

void DeviceDirectory::Remember(const DeviceSecrets& d, uint64_t generation) {
  if (!cache_enabled_) return;
  absl::MutexLock lock(&mu_);
  if (generation != generation_) return;
  by_set_[d.set_username] = d;
  set_by_icp_[d.icp_username] = d.set_username;
}

absl::StatusOr<std::optional<DeviceSecrets>> DeviceDirectory::BySetUsername(
    const std::string& user) {
  if (std::optional<DeviceSecrets> c = Cached(user)) return c;
  const uint64_t gen = generation();
  absl::StatusOr<RedisReply> r = redis_.Command(LoadCommand(user));
  if (!r.ok()) return r.status();
  absl::StatusOr<std::optional<DeviceSecrets>> d = Parse(user, *r);
  if (d.ok() && d->has_value()) Remember(**d, gen);
  return d;
}

void DeviceDirectory::BySetUsername(const std::string& user, AsyncRedisCommands& redis,
                                    DeviceCallback done) {
  if (std::optional<DeviceSecrets> c = Cached(user)) return done(std::move(c));
  const uint64_t gen = generation();
  redis.Command(LoadCommand(user),
                [this, user, gen, done = std::move(done)](const absl::StatusOr<RedisReply>& r) {
                  if (!r.ok()) return done(r.status());
                  absl::StatusOr<std::optional<DeviceSecrets>> d = Parse(user, *r);
                  if (d.ok() && d->has_value()) Remember(**d, gen);
                  done(std::move(d));
                });
}

std::vector<std::string> DeviceDirectory::LoadCommand(const std::string& user) {
  return {"HGET", kDevicesKey, user};
}

absl::StatusOr<std::optional<DeviceSecrets>> DeviceDirectory::Parse(const std::string& user,
                                                                    const RedisReply& r,
                                                                    bool icp_password) const {
  if (r.is_nil()) return std::nullopt;
  std::optional<nlohmann::json> j = JsonObject(r.str);
  if (!j) return absl::DataLossError(absl::StrCat("device record ", user, " is not valid JSON"));
  DeviceSecrets d;
  d.set_username = user;
  std::string set_sealed, icp_sealed;
  try {
    d.icp_username = j->value("icp_username", "");
    d.srtp_optional = j->value("srtp_optional", false);
    d.location = j->value("location", "");
    d.mac = j->value("mac", "");
    d.site = j->value("site", "");
    set_sealed = j->value("set_password", "");
    icp_sealed = j->value("icp_password", "");
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type
    return absl::DataLossError(absl::StrCat("device record ", user, ": ", e.what()));
  }
  absl::StatusOr<std::string> sp = box_.Open(set_sealed, DeviceSecretContext(user, "set_password"));
  if (!sp.ok()) return NameDevice(user, "set_password", sp.status());
  d.set_password = *std::move(sp);
  if (!icp_password) return d;
  absl::StatusOr<std::string> ip = box_.Open(icp_sealed, DeviceSecretContext(user, "icp_password"));
  if (!ip.ok()) return NameDevice(user, "icp_password", ip.status());
  d.icp_password = *std::move(ip);
  return d;
}

absl::StatusOr<std::vector<std::optional<DeviceSecrets>>> DeviceDirectory::BySetUsernames(
    const std::vector<std::string>& users, bool icp_passwords) {
  std::vector<std::optional<DeviceSecrets>> out;
  out.reserve(users.size());
  for (size_t first = 0; first < users.size(); first += kBatch) {
    const size_t n = std::min(kBatch, users.size() - first);
    std::vector<std::string> hmget = {"HMGET", kDevicesKey};
    hmget.insert(hmget.end(), users.begin() + static_cast<ptrdiff_t>(first),
                 users.begin() + static_cast<ptrdiff_t>(first + n));
    absl::StatusOr<RedisReply> r = redis_.Command(hmget);
    if (!r.ok()) return r.status();
    if (r->type != RedisReply::Type::kArray || r->elements.size() != n) {
      return absl::InternalError("unexpected reply to HMGET of the devices");
    }
    for (size_t i = 0; i < n; ++i) {
      absl::StatusOr<std::optional<DeviceSecrets>> d =
          Parse(users[first + i], r->elements[i], icp_passwords);
      if (!d.ok()) return d.status();
      out.push_back(*std::move(d));
    }
  }
  return out;
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
  std::vector<std::string> users;
  {
    absl::MutexLock lock(&mu_);
    if (r->str == revision_) return absl::OkStatus();
    // Lookups under way from now on are not cached: they may have read the old devices.
    revision_ = r->str;
    ++generation_;
    users.reserve(by_set_.size());
    for (const auto& [user, d] : by_set_) users.push_back(user);
  }
  // The devices cached are read again at once (one round trip), so that the lookups of the
  // phones in use go on without Redis; those control removed or damaged drop out.
  std::unordered_map<std::string, DeviceSecrets> fresh;
  if (!users.empty()) {
    std::vector<std::string> hmget = {"HMGET", kDevicesKey};
    hmget.insert(hmget.end(), users.begin(), users.end());
    absl::StatusOr<RedisReply> all = redis_.Command(hmget);
    for (size_t i = 0; all.ok() && i < all->elements.size() && i < users.size(); ++i) {
      absl::StatusOr<std::optional<DeviceSecrets>> d = Parse(users[i], all->elements[i]);
      if (d.ok() && d->has_value()) fresh.emplace(users[i], **std::move(d));
    }
  }
  absl::MutexLock lock(&mu_);
  if (r->str != revision_) return absl::OkStatus();  // a newer revision was seen meanwhile
  by_set_ = std::move(fresh);
  set_by_icp_.clear();
  for (const auto& [user, d] : by_set_) set_by_icp_[d.icp_username] = user;
  return absl::OkStatus();
}

size_t DeviceDirectory::cached() const {
  absl::MutexLock lock(&mu_);
  return by_set_.size();
}

}  // namespace rwg::core
