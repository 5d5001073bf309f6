// Which phones fetched their configuration, for the deployment inventory (R-TMA): a serving
// thread that answers a GET for a phone's `<MAC>.cfg` with the file (200, 206 or 304) notes
// the fetch here, in memory, never waiting on Redis; the state's background thread
// (state.h) writes what was noted once a second with one core::PhoneFetches::Record (one
// HSET on rwg:prov:fetched). While Redis cannot be reached the notes stay for the next try.
// Bounded: one note per MAC (its newest fetch), at most max_pending MACs waiting; a fetch of
// another MAC beyond that is dropped and counted.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "services/core/clock.h"
#include "services/core/phone_fetches.h"
#include "services/core/redis.h"

namespace rwg::provisioning {

class FetchRecorder {
 public:
  // MACs waiting to be written at most: far more than a second's fetches, and the notes of a
  // Redis outage of a store of that many phones.
  static constexpr size_t kMaxPending = 65536;

  // Registers rwg_provisioning_phone_fetches_total and
  // rwg_provisioning_fetch_records_dropped_total in `registry`.
  FetchRecorder(core::RedisClient& redis, core::Clock& clock, prometheus::Registry& registry,
                size_t max_pending = kMaxPending);
  FetchRecorder(const FetchRecorder&) = delete;
  FetchRecorder& operator=(const FetchRecorder&) = delete;

  // From a serving thread: `mac` (12 upper-case hex digits) was fetched now by `source` (its
  // address). No Redis here. Anything else than a MAC is ignored.
  void Fetched(const std::string& mac, const std::string& source);
  // Writes every note waiting, in one round trip. On failure the notes stay for the next
  // Flush (a fetch noted meanwhile for the same MAC, newer, wins; beyond max_pending MACs the
  // rest are dropped and counted); the first failure of a series is logged.
  absl::Status Flush();
  // The notes waiting, by MAC.
  std::vector<core::PhoneFetch> Pending() const;

 private:
  core::PhoneFetches store_;
  core::Clock& clock_;
  const size_t max_pending_;
  prometheus::Counter& fetches_;
  prometheus::Counter& dropped_;
  absl::Mutex flush_mu_;  // one Flush at a time
  bool failing_ ABSL_GUARDED_BY(flush_mu_) = false;
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(flush_mu_);
  std::unordered_map<std::string, core::PhoneFetch> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::provisioning
