// HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760): the server side that
// challenges phones with their set-side credentials, and the client side that answers the
// iPBX's challenges with the ICP-side credentials. MD5 and SHA-256, qop=auth.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/random.h"

namespace rwg::sip_edge {

enum class DigestAlgorithm { kMd5, kSha256 };

// "MD5" or "SHA-256".
const char* AlgorithmName(DigestAlgorithm a);
std::optional<DigestAlgorithm> ParseAlgorithm(absl::string_view name);  // absent = MD5

// The parameters of a Digest Authorization or WWW-Authenticate header.
struct DigestParams {
  std::map<std::string, std::string> values;  // lower-case names, unquoted values
  std::string Get(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? std::string() : it->second;
  }
  bool Has(const std::string& name) const { return values.count(name) > 0; }
};

// Parses `Digest a=b, c="d"` (with or without the scheme); InvalidArgument when malformed.
absl::StatusOr<DigestParams> ParseDigest(absl::string_view header);
// Parses the parameter list as sofia-sip hands it over: one "name=value" per entry.
absl::StatusOr<DigestParams> ParseDigestParams(const std::vector<std::string>& params);

// H(data) in lower-case hex.
std::string DigestHash(DigestAlgorithm a, absl::string_view data);

// The `response` value. With empty `qop` the RFC 2069 form H(HA1:nonce:HA2) is used.
std::string DigestResponse(DigestAlgorithm a, absl::string_view user, absl::string_view realm,
                           absl::string_view password, absl::string_view method,
                           absl::string_view uri, absl::string_view nonce, absl::string_view nc,
                           absl::string_view cnonce, absl::string_view qop);

// Issues and checks server nonces: hex(time, random, HMAC-SHA256 over both), so no state is
// needed to recognise our own nonces; nonce counts are remembered for replay protection.
class NonceKeeper {
 public:
  // `max_tracked`: nonces whose counts are remembered at most; beyond it the oldest are
  // forgotten and any nonce issued before them is treated as stale (a new challenge), so a
  // forgotten count can never be replayed.
  NonceKeeper(std::string secret, core::Clock& clock, core::Random& rng, absl::Duration lifetime,
              size_t max_tracked = 250000);

  std::string Issue();
  enum class Verdict { kValid, kStale, kForged };
  Verdict Check(absl::string_view nonce) const;
  // True the first time (nonce, nc) is used with nc above every earlier count of that nonce.
  // Amortised constant time: counts are forgotten in the order they were first used.
  bool AcceptCount(absl::string_view nonce, absl::string_view nc);
  size_t tracked();

 private:
  std::string Mac(absl::string_view data) const;
  std::string secret_;
  core::Clock& clock_;
  core::Random& rng_;
  absl::Duration lifetime_;
  size_t max_tracked_;
  absl::Mutex mu_;
  std::unordered_map<std::string, uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // nonce -> last nc
  // (first use, nonce), oldest first
  std::deque<std::pair<absl::Time, std::string>> order_ ABSL_GUARDED_BY(mu_);
  // Nonces issued up to this are refused.
  absl::Time horizon_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Builds the Authorization header value answering `challenge` (a WWW-Authenticate or
// Proxy-Authenticate value) for `method uri`. `nc` is the count to use (1 for a fresh nonce).
absl::StatusOr<std::string> AnswerChallenge(absl::string_view challenge, absl::string_view user,
                                            absl::string_view password, absl::string_view method,
                                            absl::string_view uri, uint32_t nc, core::Random& rng);

}  // namespace rwg::sip_edge
