// Hash misses per source address (R-PROV): a source that asks for too many paths under a
// wrong hash within a window is to be banned. Only that source: phones elsewhere that know
// the hash are never affected. Thread-safe; memory is bounded (sources whose misses are all
// older than the window are forgotten, and at most `max_sources` are tracked).
#pragma once

#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/time/time.h"
#include "services/core/clock.h"

namespace rwg::provisioning {

class MissCounter {
 public:
  MissCounter(int threshold, absl::Duration window, core::Clock& clock, size_t max_sources = 100000)
      : threshold_(threshold), window_(window), clock_(clock), max_sources_(max_sources) {}

  // Counts a miss from `source`; true when this one reaches the threshold within the window
  // (the source's count starts again from zero then).
  bool Miss(const std::string& source);
  size_t tracked() const;

 private:
  void Sweep(absl::Time now);
  const int threshold_;
  const absl::Duration window_;
  core::Clock& clock_;
  const size_t max_sources_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::deque<absl::Time>> misses_;
};

}  // namespace rwg::provisioning
