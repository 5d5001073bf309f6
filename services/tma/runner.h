// Runs deployments (docs/tma.md "How a deployment runs"): picks up every deployment to run
// whose lease is free, writes its files to the server with a few connections in parallel,
// skips those the server already has with the same content, and records each file as it is
// done, so a stopped or killed instance's deployment is carried on by the next one (itself
// restarted or another) without writing a file twice into the count.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/tma/store.h"
#include "services/tma/target.h"

namespace rwg::tma {

// A connection to a server (the server's password in clear).
using TargetFactory = std::function<std::unique_ptr<Target>(const pb::Server&)>;

struct RunnerOptions {
  std::string owner;  // this instance, in leases
  int parallel = 4;   // connections to the server per deployment
  absl::Duration lease = absl::Seconds(30);
  absl::Duration scan = absl::Seconds(2);  // looks for deployments to run this often
  int attempts = 3;                        // per file, for UNAVAILABLE
  absl::Duration retry_delay = absl::Seconds(1);
};

class Runner {
 public:
  Runner(TmaStore& store, TargetFactory targets, RunnerOptions options,
         prometheus::Registry& registry);
  ~Runner();
  void Start();
  // Lets the files in flight finish, leaves the deployment to be carried on, releases leases.
  void Stop();
  // A deployment was created or resumed: look now rather than at the next scan.
  void Wake();

  // Runs one deployment to its end (or until Stop); false when another instance holds it.
  // Exposed for tests; Start's thread calls it.
  absl::StatusOr<bool> RunOne(const std::string& id);

  // A count of the runs this instance ended (completed or failed), for watches: a watch
  // learns of the end at once rather than at its next look.
  uint64_t Ends();
  // Waits until the count is no longer `seen`, at most `timeout`; the count then.
  uint64_t AwaitEnd(uint64_t seen, absl::Duration timeout);

 private:
  void Loop();
  void Ended();

  TmaStore& store_;
  TargetFactory targets_;
  RunnerOptions options_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  absl::Mutex ends_mu_;
  uint64_t ends_ ABSL_GUARDED_BY(ends_mu_) = 0;

  prometheus::Family<prometheus::Counter>& deployments_;
  prometheus::Family<prometheus::Counter>& files_;
  prometheus::Counter& bytes_;
  prometheus::Histogram& duration_;
};

}  // namespace rwg::tma
