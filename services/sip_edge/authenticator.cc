#include "services/sip_edge/authenticator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/crypto.h"

namespace rwg::sip_edge {

Authenticator::Authenticator(AuthenticatorOptions options, DeviceLookup devices,
                             Protection& protection, core::Clock& clock, core::Random& rng)
    : options_(std::move(options)),
      devices_(std::move(devices)),
      protection_(protection),
      rng_(rng),
      nonces_(options_.nonce_secret.empty() ? rng.Bytes(32) : options_.nonce_secret, clock, rng,
              options_.nonce_lifetime) {}

bool Authenticator::Offered(DigestAlgorithm a) const {
  return std::find(options_.algorithms.begin(), options_.algorithms.end(), a) !=
         options_.algorithms.end();
}

// All configured algorithms, or MD5 alone for a phone whose SIP stack gives up when a
// challenge names another.
std::vector<DigestAlgorithm> Authenticator::AlgorithmsFor(absl::string_view user_agent) const {
  if (Offered(DigestAlgorithm::kMd5) && !user_agent.empty()) {
    const std::string agent = absl::AsciiStrToLower(user_agent);
    for (const std::string& ua : options_.md5_only_user_agents) {
      if (!ua.empty() && absl::StrContains(agent, ua)) return {DigestAlgorithm::kMd5};
    }
  }
  return options_.algorithms;
}

std::vector<std::string> Authenticator::Challenges(const std::string& realm, bool stale,
                                                   absl::string_view user_agent) {
  std::vector<std::string> out;
  for (DigestAlgorithm a : AlgorithmsFor(user_agent)) {
    out.push_back(absl::StrCat("Digest realm=\"", realm, "\", nonce=\"", nonces_.Issue(),
                               "\", algorithm=", AlgorithmName(a), ", qop=\"auth\"",
                               stale ? ", stale=true" : ""));
    if (out.size() == 2) break;  // a phone reads at most two challenges
  }
  return out;
}

std::optional<AuthResult> Authenticator::Precheck(const std::optional<DigestParams>& credentials,
                                                  const std::string& ip, DigestAlgorithm* alg) {
  AuthResult r;
  if (!credentials) return r;
  r.user = credentials->Get("username");
  if (protection_.AuthBanned(ip, r.user)) {
    r.outcome = AuthResult::Outcome::kBanned;
    return r;
  }
  switch (nonces_.Check(credentials->Get("nonce"))) {
    case NonceKeeper::Verdict::kForged:
      return r;
    case NonceKeeper::Verdict::kStale:
      r.stale = true;
      return r;
    case NonceKeeper::Verdict::kValid:
      break;
  }
  std::optional<DigestAlgorithm> a = ParseAlgorithm(credentials->Get("algorithm"));
  if (!a || !Offered(*a)) return r;
  *alg = *a;
  return std::nullopt;
}

void Authenticator::Check(const std::optional<DigestParams>& credentials, absl::string_view method,
                          const std::string& realm, const std::string& ip,
                          std::function<void(AuthResult)> done) {
  DigestAlgorithm alg = DigestAlgorithm::kMd5;
  if (std::optional<AuthResult> r = Precheck(credentials, ip, &alg)) return done(*std::move(r));
  devices_(credentials->Get("username"),
           [this, credentials = *credentials, alg, method = std::string(method), realm,
            done = std::move(done)](absl::StatusOr<std::optional<core::DeviceSecrets>> dev) {
             done(Finish(credentials, alg, method, realm, std::move(dev)));
           });
}

AuthResult Authenticator::Finish(const DigestParams& credentials, DigestAlgorithm alg,
                                 absl::string_view method, const std::string& realm,
                                 absl::StatusOr<std::optional<core::DeviceSecrets>> dev) {
  AuthResult r;
  r.user = credentials.Get("username");
  if (!dev.ok()) {
    r.outcome = AuthResult::Outcome::kUnavailable;
    r.error = dev.status();
    return r;
  }
  const std::string nonce = credentials.Get("nonce");
  const std::string qop = credentials.Get("qop");
  const std::string nc = credentials.Get("nc");
  const std::string password = dev->has_value() ? (*dev)->set_password : core::RandomHex(rng_, 16);
  const std::string expected =
      DigestResponse(alg, r.user, realm, password, method, credentials.Get("uri"), nonce, nc,
                     credentials.Get("cnonce"), qop);
  if (!dev->has_value() || !core::ConstantTimeEquals(expected, credentials.Get("response"))) {
    r.outcome = AuthResult::Outcome::kRefused;
    r.reason = dev->has_value() ? "wrong password" : "unknown user";
    return r;
  }
  if (!nonces_.AcceptCount(nonce, qop.empty() ? "" : nc)) {
    r.outcome = AuthResult::Outcome::kReplayed;
    return r;
  }
  r.outcome = AuthResult::Outcome::kAccepted;
  r.device = **std::move(dev);
  return r;
}

std::optional<core::Ban> Authenticator::CountFailure(const std::string& ip,
                                                     const std::string& user) {
  return protection_.CountAuthFailure(ip, user);
}

}  // namespace rwg::sip_edge
