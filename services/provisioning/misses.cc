#include "services/provisioning/misses.h"

#include "absl/synchronization/mutex.h"

namespace rwg::provisioning {

bool MissCounter::Miss(const std::string& source, absl::string_view what) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (misses_.size() >= max_sources_ && misses_.find(source) == misses_.end()) Sweep(now);
  if (misses_.size() >= max_sources_ && misses_.find(source) == misses_.end()) {
    misses_.erase(misses_.begin());  // still full of live sources: one of them makes room
  }
  std::deque<Seen>& q = misses_[source];
  while (!q.empty() && now - q.front().at >= window_) q.pop_front();
  if (!what.empty()) {
    for (Seen& s : q) {
      if (s.what == what) return false;  // already counted within the window
    }
  }
  q.push_back(Seen{now, std::string(what)});
  if (static_cast<int>(q.size()) < threshold_) return false;
  misses_.erase(source);
  return true;
}

void MissCounter::Sweep(absl::Time now) {
  for (auto it = misses_.begin(); it != misses_.end();) {
    if (it->second.empty() || now - it->second.back().at >= window_) {
      it = misses_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t MissCounter::tracked() const {
  absl::MutexLock lock(&mu_);
  return misses_.size();
}

}  // namespace rwg::provisioning
