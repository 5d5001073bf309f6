#include "services/sip_edge/instances.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "services/core/crypto.h"
#include "services/core/json.h"

namespace rwg::sip_edge {

std::string InstanceAdvertJson(const std::string& icp_address, absl::Time now) {
  return core::JsonDump(nlohmann::json{{"icp", icp_address}, {"seen", absl::ToUnixSeconds(now)}});
}

std::map<std::string, InstanceAdvert> ParseInstanceAdverts(
    const std::vector<core::RedisReply>& hgetall) {
  std::map<std::string, InstanceAdvert> out;
  for (size_t i = 0; i + 1 < hgetall.size(); i += 2) {
    const nlohmann::json j = nlohmann::json::parse(hgetall[i + 1].str, nullptr, false);
    if (!j.is_object()) continue;
    try {
      InstanceAdvert advert{j.value("icp", ""), core::JsonNumber<int64_t>(j, "seen", 0)};
      out[hgetall[i].str] = std::move(advert);
    } catch (const nlohmann::json::exception&) {
      continue;  // a damaged advertisement: that instance is not known
    }
  }
  return out;
}

bool InstanceAlive(int64_t seen, absl::Time now) {
  return absl::ToUnixSeconds(now) - seen <= absl::ToInt64Seconds(kInstanceAliveFor);
}

namespace {

class RedisInstanceDirectory final : public InstanceDirectory {
 public:
  RedisInstanceDirectory(std::string instance, std::string icp_address, core::RedisClient& redis,
                         core::Clock& clock)
      : instance_(std::move(instance)),
        icp_address_(std::move(icp_address)),
        redis_(redis),
        clock_(clock) {}

  absl::Status Advertise() override {
    return redis_
        .Command({"HSET", core::kEdgeInstancesKey, instance_,
                  InstanceAdvertJson(icp_address_, clock_.Now())})
        .status();
  }

  absl::Status Refresh() override {
    absl::StatusOr<core::RedisReply> all = redis_.Command({"HGETALL", core::kEdgeInstancesKey});
    if (!all.ok()) return all.status();
    std::map<std::string, InstanceAdvert> adverts = ParseInstanceAdverts(all->elements);
    absl::MutexLock lock(&mu_);
    adverts_ = std::move(adverts);
    return absl::OkStatus();
  }

  std::string Address(const std::string& instance) const override {
    absl::MutexLock lock(&mu_);
    auto it = adverts_.find(instance);
    return it == adverts_.end() ? "" : it->second.icp;
  }

  bool Alive(const std::string& instance, absl::Time now) const override {
    absl::MutexLock lock(&mu_);
    auto it = adverts_.find(instance);
    return it != adverts_.end() && InstanceAlive(it->second.seen, now);
  }

 private:
  const std::string instance_;
  const std::string icp_address_;
  core::RedisClient& redis_;
  core::Clock& clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, InstanceAdvert> adverts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<InstanceDirectory> NewInstanceDirectory(std::string instance,
                                                        std::string icp_address,
                                                        core::RedisClient& redis,
                                                        core::Clock& clock) {
  return std::make_unique<RedisInstanceDirectory>(std::move(instance), std::move(icp_address),
                                                  redis, clock);
}

// ---------------------------------------------------------------------------------------------

ForwardMarks::ForwardMarks(std::string instance, std::string key, core::Clock& clock)
    : instance_(std::move(instance)), key_(std::move(key)), clock_(clock) {}

std::string ForwardMarks::RequestIdentity(absl::string_view call_id, uint32_t cseq,
                                          absl::string_view method, absl::string_view from_tag) {
  return absl::StrCat(call_id, "|", cseq, "|", method, "|", from_tag);
}

std::string ForwardMarks::Signature(absl::string_view instance, absl::string_view when,
                                    absl::string_view identity) const {
  const std::string data = absl::StrCat(instance, "|", when, "|", identity);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), 16));
}

std::string ForwardMarks::Mark(absl::string_view identity) const {
  const std::string when = absl::StrCat(absl::ToUnixSeconds(clock_.Now()));
  return absl::StrCat(kHeader, ": ", instance_, ";ts=", when,
                      ";sig=", Signature(instance_, when, identity));
}

bool ForwardMarks::Accept(absl::string_view value, absl::string_view identity) {
  if (key_.empty()) return false;
  std::vector<std::string> parts = absl::StrSplit(value, ';');
  if (parts.size() != 3 || parts[0] == instance_ || !absl::StartsWith(parts[1], "ts=") ||
      !absl::StartsWith(parts[2], "sig=")) {
    return false;
  }
  const std::string when = parts[1].substr(3);
  int64_t ts = 0;
  if (!absl::SimpleAtoi(when, &ts)) return false;
  const absl::Time at = absl::FromUnixSeconds(ts);
  const absl::Time now = clock_.Now();
  if (at < now - kWindow || at > now + kWindow) return false;
  const std::string sig = parts[2].substr(4);
  if (!core::ConstantTimeEquals(Signature(parts[0], when, identity), sig)) return false;
  // Taken once: a copy replayed within the window is refused.
  absl::MutexLock lock(&mu_);
  while (!seen_order_.empty() &&
         (seen_order_.front().first < now - kWindow || seen_order_.size() >= kSeenMax)) {
    seen_.erase(seen_order_.front().second);
    seen_order_.pop_front();
  }
  if (!seen_.insert(sig).second) return false;
  seen_order_.emplace_back(now, sig);
  return true;
}

}  // namespace rwg::sip_edge
