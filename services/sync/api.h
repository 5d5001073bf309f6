// The sync API's requests (docs/sync-api.md): the three OAuth 1.0a legs (request token,
// access token, renew) and the signed device calls (list, devices_mbg.csv, changes with a long
// poll). Every request is checked in the same order: its OAuth parameters, the consumer
// (known, enabled, calling from an allowed address), the token for this endpoint, the
// signature, then its freshness (timestamp and nonce). A refusal is 401 with an oauth_problem;
// Redis not answering is 503, and nothing is half written.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/random.h"
#include "services/core/redis.h"
#include "services/core/sync_store.h"
#include "services/sync/http_server.h"
#include "services/sync/replay_guard.h"

namespace rwg::sync {

struct SyncApiOptions {
  std::string realm = "rwg";
  // How far a request's oauth_timestamp may be from rwg's clock, either way.
  absl::Duration window = absl::Seconds(600);
  // A changes request waits at most this long for a change (its wait= is capped to it).
  absl::Duration max_wait = absl::Seconds(60);
  // Long polls waiting at once, in all; more are answered 503.
  int max_waiters = 256;
  // Temporary tokens a consumer may have waiting for approval at once.
  int max_pending_tokens = 16;
  // How often waiting long polls look for a change.
  absl::Duration poll_interval = absl::Milliseconds(200);
};

class SyncApi final : public HttpHandler {
 public:
  SyncApi(SyncApiOptions options, core::RedisClient& redis, const core::SecretBox& box,
          core::Clock& clock, core::Random& rng, prometheus::Registry& registry);
  ~SyncApi() override;

  // Starts the thread that answers long polls.
  void Start();
  // Answers every waiting long poll with what it has, and stops that thread. Call before the
  // HttpServer that delivered them goes.
  void Stop();

  void Handle(HttpRequest request, Respond respond) override;

  // The soonest expiry of an active access token, per consumer, as the
  // rwg_sync_token_expiry_days gauge (refreshed by the caller, e.g. once a minute).
  void RefreshTokenExpiry();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwg::sync
