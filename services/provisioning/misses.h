// Misses per source (R-PROV): a source that asks for too many paths under a wrong hash, or
// for too many MAC files the store does not have, within a window is to be banned. Only that
// source: phones elsewhere are never affected. Sources are keys of core::SourceKey (an IPv4
// address, an IPv6 /64). Thread-safe; memory is bounded (sources whose misses are all older
// than the window are forgotten, at most `max_sources` are tracked, and a source holds fewer
// than `threshold` misses).
#pragma once

#include <deque>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/clock.h"

namespace rwg::provisioning {

class MissCounter {
 public:
  MissCounter(int threshold, absl::Duration window, core::Clock& clock, size_t max_sources = 100000)
      : threshold_(threshold), window_(window), clock_(clock), max_sources_(max_sources) {}

  // Counts a miss from `source`; true when this one reaches the threshold within the window
  // (the source's count starts again from zero then). With a `what`, misses are counted once
  // per distinct `what` within the window (a phone asking again for its own absent file is one
  // miss, asking for many different ones is many).
  bool Miss(const std::string& source, absl::string_view what = {});
  size_t tracked() const;

 private:
  void Sweep(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const int threshold_;
  const absl::Duration window_;
  core::Clock& clock_;
  const size_t max_sources_;
  mutable absl::Mutex mu_;
  struct Seen {
    absl::Time at;
    std::string what;
  };
  std::unordered_map<std::string, std::deque<Seen>> misses_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::provisioning
