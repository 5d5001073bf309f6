// The freshness rules of a signed sync request (RFC 5849 §3.3): its oauth_timestamp within a
// window of rwg's clock (the iPBX's and rwg's clocks must agree: a refusal says by how much
// they differ), and its oauth_nonce never seen before with that consumer, token and timestamp
// within the window. Nonces are kept in Redis, so that a captured request replayed to another
// instance of the service is refused too; each expires with the window.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/redis.h"

namespace rwg::sync {

class ReplayGuard {
 public:
  // `window`: how far a timestamp may be from now, either way (600 s by default).
  ReplayGuard(core::RedisClient& redis, core::Clock& clock,
              absl::Duration window = absl::Seconds(600))
      : redis_(redis), clock_(clock), window_(window) {}

  // OK the first time a fresh request is seen. timestamp_refused (not a number, or outside the
  // window), nonce_used (seen already), parameter_absent/parameter_rejected (missing or
  // over-long nonce); Unavailable when Redis does not answer (the request is not served).
  absl::Status Check(absl::string_view consumer_key, absl::string_view token,
                     absl::string_view timestamp, absl::string_view nonce);

 private:
  core::RedisClient& redis_;
  core::Clock& clock_;
  absl::Duration window_;
};

}  // namespace rwg::sync
