#include "services/provisioning/fetch_recorder.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"

namespace rwg::provisioning {

FetchRecorder::FetchRecorder(core::RedisClient& redis, core::Clock& clock,
                             prometheus::Registry& registry, size_t max_pending)
    : store_(redis),
      clock_(clock),
      max_pending_(std::max<size_t>(1, max_pending)),
      fetches_(prometheus::BuildCounter()
                   .Name("rwg_provisioning_phone_fetches_total")
                   .Help("GET requests for a phone's <MAC>.cfg answered with the file (200, 206, "
                         "304)")
                   .Register(registry)
                   .Add({})),
      dropped_(prometheus::BuildCounter()
                   .Name("rwg_provisioning_fetch_records_dropped_total")
                   .Help("Phone fetches not written to Redis: more MACs waiting than the bound "
                         "while Redis could not be reached")
                   .Register(registry)
                   .Add({})) {}

void FetchRecorder::Fetched(const std::string& mac, const std::string& source) {
  if (!core::IsPhoneFetchMac(mac)) return;  // never a field of the hash: Record would refuse
  fetches_.Increment();
  core::PhoneFetch f{mac, clock_.Now(), source};
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(mac);
    if (it != pending_.end()) {
      if (it->second.time <= f.time) it->second = std::move(f);
      return;
    }
    if (pending_.size() < max_pending_) {
      pending_.emplace(mac, std::move(f));
      return;
    }
  }
  dropped_.Increment();
}

absl::Status FetchRecorder::Flush() {
  absl::MutexLock flush_lock(&flush_mu_);
  std::unordered_map<std::string, core::PhoneFetch> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(pending_);
  }
  if (batch.empty()) return absl::OkStatus();
  std::vector<core::PhoneFetch> fetches;
  fetches.reserve(batch.size());
  for (auto& [mac, f] : batch) fetches.push_back(std::move(f));
  absl::Status s = store_.Record(fetches);
  if (s.ok()) {
    if (failing_) core::log::Info("phone fetches written again", {});
    failing_ = false;
    return s;
  }
  size_t dropped = 0;
  {
    absl::MutexLock lock(&mu_);
    for (core::PhoneFetch& f : fetches) {
      auto it = pending_.find(f.mac);
      if (it != pending_.end()) {
        if (it->second.time < f.time) it->second = std::move(f);
      } else if (pending_.size() < max_pending_) {
        std::string mac = f.mac;
        pending_.emplace(std::move(mac), std::move(f));
      } else {
        ++dropped;
      }
    }
  }
  if (dropped > 0) dropped_.Increment(static_cast<double>(dropped));
  if (!failing_) {
    core::log::Warn("cannot write phone fetches; kept for the next try",
                    {{"error", std::string(s.message())},
                     {"waiting", std::to_string(fetches.size() - dropped)}});
  }
  failing_ = true;
  return s;
}

std::vector<core::PhoneFetch> FetchRecorder::Pending() const {
  std::vector<core::PhoneFetch> out;
  absl::MutexLock lock(&mu_);
  out.reserve(pending_.size());
  for (const auto& [mac, f] : pending_) out.push_back(f);
  std::sort(out.begin(), out.end(),
            [](const core::PhoneFetch& a, const core::PhoneFetch& b) { return a.mac < b.mac; });
  return out;
}

}  // namespace rwg::provisioning
