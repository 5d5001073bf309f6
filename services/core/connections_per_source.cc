#include "services/core/connections_per_source.h"

#include "absl/synchronization/mutex.h"

namespace rwg::core {

bool ConnectionsPerSource::Acquire(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(key);
  if (it == open_.end()) {
    if (open_.size() >= max_sources_ || limit_ < 1) return false;
    open_.emplace(key, 1);
    return true;
  }
  if (it->second >= limit_) return false;
  ++it->second;
  return true;
}

void ConnectionsPerSource::Release(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(key);
  if (it == open_.end()) return;
  if (--it->second <= 0) open_.erase(it);
}

int ConnectionsPerSource::open(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(key);
  return it == open_.end() ? 0 : it->second;
}

size_t ConnectionsPerSource::sources() const {
  absl::MutexLock lock(&mu_);
  return open_.size();
}

}  // namespace rwg::core
