// What every provisioning request consults, kept fresh from Redis by one background thread:
// the current hash key (R-HASH, written by control; a regenerated key replaces the old one
// within a second, no restart) and the bans of sources that missed the hash too often
// (rwg:ban:prov:<source>, listed and lifted with `rwgctl ban`; a source is an IPv4 address or
// an IPv6 /64, core::SourceKey). The same thread writes what requests leave for Redis: the
// bans made here, and the phones' fetches of their <MAC>.cfg (fetch_recorder.h).
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/bans.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/devices.h"
#include "services/core/redis.h"
#include "services/core/refresher.h"
#include "services/provisioning/fetch_recorder.h"

namespace rwg::provisioning {

std::string ProvisioningBanId(const std::string& ip);

// Where XML features are proxied to: the iPBX's XML destination port (R-CFG icp.host,
// icp.xml_destination_port); host empty when none is configured.
struct XmlUpstream {
  std::string host;
  int port = 4443;
};

class SharedState {
 public:
  // Sources banned at once in memory (the same bound as the SIP edge's): a new ban beyond it
  // pushes out another one, which stays in Redis and comes back at a refresh if there is room.
  static constexpr size_t kMaxBans = 200000;

  // `fetches`, when given, is flushed at every refresh and once more at Stop; it must outlive
  // the state.
  SharedState(core::RedisClient& redis, const core::SecretBox& box, core::Clock& clock,
              std::string instance, size_t max_bans = kMaxBans, FetchRecorder* fetches = nullptr)
      : redis_(redis),
        bans_(redis),
        box_(box),
        clock_(clock),
        instance_(std::move(instance)),
        max_bans_(std::max<size_t>(1, max_bans)),
        fetches_(fetches) {}
  ~SharedState() { Stop(); }

  // Reads once (an error when Redis cannot be reached), then every `period`.
  absl::Status Start(absl::Duration period);
  // Stops the thread; then writes the fetches noted since its last refresh.
  void Stop();

  // Where the serving threads note phones' fetches; null when they are not recorded.
  FetchRecorder* fetches() const { return fetches_; }

  // The current key; null when none has been generated yet.
  std::shared_ptr<const std::string> Hash() const;
  XmlUpstream Upstream() const;
  bool Banned(const std::string& ip) const;
  // Sources banned in memory now (at most the bound given at construction).
  size_t BannedCount() const;
  // Bans `ip` at once here and, within a period, for every instance and `rwgctl ban list`.
  void Ban(const std::string& ip, const std::string& reason, absl::Duration length);
  // OK when the last refresh worked.
  absl::Status last_status() const;

 private:
  absl::Status Refresh();
  core::RedisClient& redis_;
  core::BanStore bans_;
  const core::SecretBox& box_;
  core::Clock& clock_;
  const std::string instance_;
  const size_t max_bans_;
  FetchRecorder* const fetches_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::string> hash_ ABSL_GUARDED_BY(mu_);
  XmlUpstream upstream_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<std::string> banned_ ABSL_GUARDED_BY(mu_);
  std::vector<core::Ban> to_store_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stopped_{false};
  core::Refresher refresher_{"the hash key and bans", [this] { return Refresh(); }};
};

}  // namespace rwg::provisioning
