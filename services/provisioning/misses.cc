#include "services/provisioning/misses.h"

namespace rwg::provisioning {

bool MissCounter::Miss(const std::string& source) {
  const absl::Time now = clock_.Now();
  std::lock_guard<std::mutex> lock(mu_);
  if (misses_.size() >= max_sources_ && misses_.find(source) == misses_.end()) Sweep(now);
  if (misses_.size() >= max_sources_ && misses_.find(source) == misses_.end()) {
    misses_.erase(misses_.begin());  // still full of live sources: one of them makes room
  }
  std::deque<absl::Time>& q = misses_[source];
  while (!q.empty() && now - q.front() >= window_) q.pop_front();
  q.push_back(now);
  if (static_cast<int>(q.size()) < threshold_) return false;
  misses_.erase(source);
  return true;
}

void MissCounter::Sweep(absl::Time now) {
  for (auto it = misses_.begin(); it != misses_.end();) {
    if (it->second.empty() || now - it->second.back() >= window_) {
      it = misses_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t MissCounter::tracked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_.size();
}

}  // namespace rwg::provisioning
