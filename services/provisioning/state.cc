#include "services/provisioning/state.h"

#include <exception>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/keys.h"
#include "services/core/log.h"

namespace rwg::provisioning {

std::string ProvisioningBanId(const std::string& ip) { return absl::StrCat("prov:", ip); }

absl::Status SharedState::Refresh() {
  // Its failures are the recorder's to log; the hash and bans are read whatever they are.
  if (fetches_ != nullptr) (void)fetches_->Flush();
  std::vector<core::Ban> pending;
  {
    absl::MutexLock lock(&mu_);
    pending.swap(to_store_);
  }
  for (const core::Ban& b : pending) {
    if (absl::Status s = bans_.Put(b); !s.ok()) {
      core::log::Warn("cannot store a ban", {{"ban", b.id}, {"error", std::string(s.message())}});
    }
  }
  absl::StatusOr<core::RedisReply> r = redis_.Command({"GET", core::kHashKey});
  if (!r.ok()) return r.status();
  std::shared_ptr<const std::string> hash;
  if (!r->is_nil()) {
    nlohmann::json j = nlohmann::json::parse(r->str, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("key") || !j["key"].is_string()) {
      return absl::DataLossError("rwg:hash is damaged");
    }
    absl::StatusOr<std::string> key = box_.Open(j["key"].get<std::string>(), "hash");
    if (!key.ok()) return absl::DataLossError("rwg:hash does not open with this secret key");
    hash = std::make_shared<const std::string>(*std::move(key));
  }
  XmlUpstream upstream;
  absl::StatusOr<core::RedisReply> config = redis_.Command({"GET", core::kConfigKey});
  if (!config.ok()) return config.status();
  if (!config->is_nil()) {
    nlohmann::json j = nlohmann::json::parse(config->str, nullptr, false);
    if (j.is_object() && j.contains("icp") && j["icp"].is_object()) {
      const nlohmann::json& icp = j["icp"];
      if (icp.contains("host") && icp["host"].is_string()) upstream.host = icp["host"];
      if (icp.contains("xml_destination_port") &&
          icp["xml_destination_port"].is_number_unsigned()) {
        upstream.port = icp["xml_destination_port"].get<int>();
      }
    }
  }
  absl::StatusOr<std::vector<core::Ban>> list = bans_.List();
  if (!list.ok()) return list.status();
  std::unordered_set<std::string> banned;
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  // Bans made here and not yet stored stay in force, first.
  for (const core::Ban& b : to_store_) {
    if (banned.size() < max_bans_) banned.insert(b.source);
  }
  for (const core::Ban& b : *list) {
    if (banned.size() >= max_bans_) break;
    if (b.kind == "provisioning" && b.until > now) banned.insert(b.source);
  }
  hash_ = std::move(hash);
  upstream_ = std::move(upstream);
  banned_ = std::move(banned);
  return absl::OkStatus();
}

absl::Status SharedState::Start(absl::Duration period) { return refresher_.Start(period); }

void SharedState::Stop() {
  refresher_.Stop();
  if (stopped_.exchange(true) || fetches_ == nullptr) return;
  try {
    (void)fetches_->Flush();  // the last second's fetches
  } catch (const std::exception& e) {
    core::log::Warn("cannot write phone fetches", {{"error", e.what()}});
  } catch (...) {
    core::log::Warn("cannot write phone fetches", {});
  }
}

std::shared_ptr<const std::string> SharedState::Hash() const {
  absl::MutexLock lock(&mu_);
  return hash_;
}

XmlUpstream SharedState::Upstream() const {
  absl::MutexLock lock(&mu_);
  return upstream_;
}

bool SharedState::Banned(const std::string& ip) const {
  absl::MutexLock lock(&mu_);
  return banned_.count(ip) != 0;
}

void SharedState::Ban(const std::string& ip, const std::string& reason, absl::Duration length) {
  core::Ban b;
  b.id = ProvisioningBanId(ip);
  b.kind = "provisioning";
  b.source = ip;
  b.reason = reason;
  b.instance = instance_;
  b.since = clock_.Now();
  b.until = b.since + length;
  absl::MutexLock lock(&mu_);
  if (banned_.size() >= max_bans_ && banned_.count(ip) == 0) banned_.erase(banned_.begin());
  banned_.insert(ip);
  // Drained at every refresh; while Redis cannot be reached, the newest are kept.
  if (to_store_.size() >= max_bans_) to_store_.erase(to_store_.begin());
  to_store_.push_back(std::move(b));
}

size_t SharedState::BannedCount() const {
  absl::MutexLock lock(&mu_);
  return banned_.size();
}

absl::Status SharedState::last_status() const { return refresher_.last_status(); }

}  // namespace rwg::provisioning
