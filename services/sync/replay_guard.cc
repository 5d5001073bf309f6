#include "services/sync/replay_guard.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/crypto.h"
#include "services/core/keys.h"
#include "services/sync/oauth1.h"

namespace rwg::sync {

namespace {
// A nonce longer than this is not a nonce: refused before it reaches Redis.
constexpr size_t kMaxNonce = 128;
}  // namespace

absl::Status ReplayGuard::Check(absl::string_view consumer_key, absl::string_view token,
                                absl::string_view timestamp, absl::string_view nonce) {
  int64_t ts = 0;
  if (timestamp.empty()) return OAuthProblem("parameter_absent", "oauth_timestamp is missing");
  if (timestamp.size() > 19 || !absl::SimpleAtoi(timestamp, &ts) || ts < 0) {
    return OAuthProblem("timestamp_refused",
                        "oauth_timestamp is not a number of seconds since 1970");
  }
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  const int64_t skew = ts - now;
  if (std::llabs(skew) > absl::ToInt64Seconds(window_)) {
    return OAuthProblem(
        "timestamp_refused",
        absl::StrCat(
            "the client's clock is ", std::llabs(skew), " s ", skew > 0 ? "ahead of" : "behind",
            " rwg's (at most ", absl::ToInt64Seconds(window_),
            " s allowed): set both clocks right, e.g. with NTP; oauth_acceptable_"
            "timestamps=",
            now - absl::ToInt64Seconds(window_), "-", now + absl::ToInt64Seconds(window_)));
  }
  if (nonce.empty()) return OAuthProblem("parameter_absent", "oauth_nonce is missing");
  if (nonce.size() > kMaxNonce) {
    return OAuthProblem("parameter_rejected",
                        absl::StrCat("oauth_nonce is longer than ", kMaxNonce, " bytes"));
  }
  // The key is a digest: the client's bytes never become a key name as they are.
  const std::string key = core::SyncNonceKey(core::Sha256Hex(absl::StrCat(
      consumer_key.size(), ":", consumer_key, token.size(), ":", token, ts, ":", nonce)));
  // Kept for the whole time its timestamp is acceptable: from now until ts + window.
  const int64_t keep_ms = (ts + absl::ToInt64Seconds(window_) - now + 1) * 1000;
  absl::StatusOr<core::RedisReply> r =
      redis_.Command({"SET", key, "1", "NX", "PX", std::to_string(keep_ms)});
  if (!r.ok()) return r.status();
  if (r->is_nil()) {
    return OAuthProblem("nonce_used",
                        "this oauth_nonce was used already with this timestamp: a replayed "
                        "request, or a client that repeats its nonces");
  }
  return absl::OkStatus();
}

}  // namespace rwg::sync
