// Open connections per source on rwg's HTTPS listeners (provisioning, sync): one source, an
// IPv4 address or an IPv6 /64 (core::SourceKey), may hold at most `limit` connections at once,
// whatever serving thread they landed on, so that it cannot take every connection the service has.
// Thread-safe. Only sources with connections open have an entry (it goes when their count reaches
// zero), and at most `max_sources` of them are tracked: the table is bounded by the connections
// themselves.
#pragma once

#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace rwg::core {

class ConnectionsPerSource {
 public:
  ConnectionsPerSource(int limit, size_t max_sources) : limit_(limit), max_sources_(max_sources) {}

  // Takes a connection for `key`: false, and nothing taken, when the source holds `limit`
  // already (or `max_sources` other sources hold connections).
  bool Acquire(const std::string& key);
  // Gives back a connection `Acquire` took.
  void Release(const std::string& key);

  int open(const std::string& key) const;
  size_t sources() const;

 private:
  const int limit_;
  const size_t max_sources_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, int> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::core
