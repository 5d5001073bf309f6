// Redis behind Sentinel (docs/operations.md, "Redis high availability").
//
// With --redis-sentinels, a service does not connect to one Redis address: a MasterLocator asks
// the sentinels which server is the master of --redis-master-name, checks that server says so
// itself (ROLE), and keeps asking once a second — at once when a client saw the master fail —
// so that the service follows a failover within seconds. Each change of master gets a new
// generation: connections made to an older one are not used again.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct redisContext;

namespace rwg::core {

class RedisTlsTunnel;

struct SentinelOptions {
  std::vector<std::string> sentinels;  // host:port of each sentinel
  std::string master_name = "rwg";
  std::string sentinel_password;        // AUTH toward the sentinels when set; never logged
  std::string redis_password;           // AUTH toward the master (to check its role)
  std::shared_ptr<RedisTlsTunnel> tls;  // sentinels and master over TLS when set
  absl::Duration connect_timeout = absl::Milliseconds(500);
  absl::Duration poll = absl::Seconds(1);
};

// A connection to `address` (host:port, [v6]:port or unix:/path) with AUTH `password` when set,
// through `tls` (when not null) for a host:port; it is then checked with a first command
// (AUTH or PING) so that a failed handshake is reported here, with its reason. Unavailable
// naming the address when it cannot be made.
absl::StatusOr<redisContext*> ConnectRedis(const std::string& address, const std::string& password,
                                           absl::Duration connect_timeout,
                                           absl::Duration command_timeout,
                                           RedisTlsTunnel* tls = nullptr);

class MasterLocator {
 public:
  struct Master {
    std::string address;  // empty while no master is known
    uint64_t generation = 0;
  };

  // Starts asking at once; `registry` (optional) gets rwg_redis_master_changes_total.
  static std::shared_ptr<MasterLocator> Start(SentinelOptions options,
                                              prometheus::Registry* registry);
  ~MasterLocator();
  MasterLocator(const MasterLocator&) = delete;
  MasterLocator& operator=(const MasterLocator&) = delete;

  Master Current() const;
  // Waits up to `timeout` for a master (of any generation) to be known.
  Master WaitForMaster(absl::Duration timeout) const;
  // A client saw the master of `generation` fail (connection lost, READONLY): ask now.
  void Suspect(uint64_t generation);
  // Waits up to `timeout` for a master of a later generation than `generation`; the current.
  Master WaitForChange(uint64_t generation, absl::Duration timeout) const;
  const SentinelOptions& options() const { return options_; }
  // "sentinel master <name>" for messages.
  std::string Describe() const;

 private:
  MasterLocator(SentinelOptions options, prometheus::Registry* registry);
  void Run();
  // One question to the sentinels and the wait after it; true when the locator stops.
  bool Step();
  // What the sentinels say the master is, checked with ROLE; empty when none could tell.
  std::string Ask(std::string* why);
  // Subscribes to +switch-master on the sentinel that answered last (best effort).
  void SubscribeToSwitches();
  // Waits up to `wait` for a reason to ask again (a switch announced, a client's suspicion);
  // true when the locator stops.
  bool WaitForNews(absl::Duration wait);

  const SentinelOptions options_;
  prometheus::Counter* changes_ = nullptr;
  mutable absl::Mutex mu_;
  Master current_ ABSL_GUARDED_BY(mu_);
  bool suspected_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  size_t first_sentinel_ = 0;           // the one that answered last (the thread's own)
  std::string last_error_;              // logged once per outage (the thread's own)
  redisContext* subscribed_ = nullptr;  // to +switch-master (the thread's own)
  std::thread thread_;
};

}  // namespace rwg::core
