// Change callbacks (docs/sync-api.md, "Change callbacks"): for each enabled consumer with a
// callback URL, rwg POSTs a signed notice to the iPBX for every set-side password change in
// the device change log (services/core/device_changes.h) after what it delivered last.
//
// A notice is `application/x-www-form-urlencoded` `op=...&set_username=...&revision=N`,
// signed with OAuth 1.0a HMAC-SHA1 by the consumer's key and secret alone (two-legged: no
// oauth_token, an empty token secret), so the iPBX checks it with the credentials it already
// holds. A 2xx answer delivers it; anything else (another status, a refused certificate, no
// answer within the timeout) is a failure, retried after 1 s doubling to 5 min, the error kept
// in the consumer's delivery status (core::SyncCallbackStatus: `rwgctl sync consumer list`)
// and counted. Delivery is at least once: a revision is delivered when all of its notices are,
// so a failure in the middle of a revision sends its earlier notices again.
//
// Several sync instances share the work: a round for a consumer runs under a short Redis lock
// (SET NX PX), so no notice is sent twice at once.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/device_changes.h"
#include "services/core/random.h"
#include "services/core/redis.h"
#include "services/core/sync_store.h"

namespace rwg::sync {

// One notice, ready to send.
struct CallbackRequest {
  core::HttpsUrl url;
  std::string authorization;  // the Authorization header: OAuth ...
  std::string body;           // application/x-www-form-urlencoded
};

// Sends a notice: the HTTP status of the answer, or why there is none (Unavailable naming
// the step: resolve, connect, TLS handshake, write, read, timed out).
class CallbackPoster {
 public:
  virtual ~CallbackPoster() = default;
  virtual absl::StatusOr<int> Post(const CallbackRequest& request) = 0;
};

struct HttpsPosterOptions {
  // PEM certificates of the CAs a callback server's certificate must chain to; empty: the
  // system's store.
  std::string ca_file;
  // The whole exchange (resolve, connect, handshake, request, answer) within this.
  absl::Duration timeout = absl::Seconds(5);
};

// HTTPS over Boost.Beast: TLS 1.2 or later, the peer's certificate verified against the CAs
// and the URL's host (name or address), SNI for names. InvalidArgument when ca_file is
// unusable.
absl::StatusOr<std::unique_ptr<CallbackPoster>> NewHttpsPoster(const HttpsPosterOptions& options);

// How long to wait after `failures` consecutive failures (1 or more): 1 s, doubling, at most
// 5 min.
absl::Duration CallbackBackoff(int failures);

// The notice of `change`, signed for `consumer` at `now` with `nonce`.
CallbackRequest SignedNotice(const core::SyncConsumer& consumer, const core::HttpsUrl& url,
                             const core::DeviceChange& change, absl::Time now,
                             const std::string& nonce);

struct CallbackOptions {
  // How often the thread looks for changes to deliver.
  absl::Duration poll = absl::Milliseconds(500);
  // The per-consumer lock's life: a round stops sending once half of it has passed.
  absl::Duration lock = absl::Seconds(30);
  // Changes read from the log at once.
  size_t page = 100;
};

class CallbackDeliverer {
 public:
  CallbackDeliverer(CallbackOptions options, core::RedisClient& redis, const core::SecretBox& box,
                    core::Clock& clock, core::Random& rng, CallbackPoster& poster,
                    prometheus::Registry& registry);
  ~CallbackDeliverer();

  // Starts the thread that runs a round every `poll`; Stop ends it (after the notice in
  // flight, if any).
  void Start();
  void Stop();

  // One round over every consumer: what the thread does (for tests).
  void RunOnce();

 private:
  void DeliverTo(const core::SyncConsumer& c);
  void Count(const std::string& consumer, bool delivered);
  void SetFailures(const std::string& consumer, int failures);

  const CallbackOptions options_;
  core::RedisClient& redis_;
  core::SyncStore store_;
  core::Clock& clock_;
  core::Random& rng_;
  CallbackPoster& poster_;
  prometheus::Family<prometheus::Counter>& total_;
  prometheus::Family<prometheus::Gauge>& failures_;

  absl::Mutex metrics_mu_;
  std::map<std::pair<std::string, bool>, prometheus::Counter*> counters_
      ABSL_GUARDED_BY(metrics_mu_);
  std::map<std::string, prometheus::Gauge*> gauges_ ABSL_GUARDED_BY(metrics_mu_);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace rwg::sync
