// Digest authentication of phones with their set-side credentials (RFC 3261 §22, RFC 7616,
// RFC 8760): the one check behind a REGISTER (401, Authorization) and behind the emergency
// INVITE of a phone that is not registered (407, Proxy-Authorization). It works on plain
// values: the caller finds the credentials in the request and answers it, so nothing here
// needs the SIP stack.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/core/bans.h"
#include "services/core/clock.h"
#include "services/core/devices.h"
#include "services/core/random.h"
#include "services/sip_edge/digest.h"
#include "services/sip_edge/protection.h"

namespace rwg::sip_edge {

struct AuthenticatorOptions {
  std::vector<DigestAlgorithm> algorithms = {DigestAlgorithm::kMd5, DigestAlgorithm::kSha256};
  // Phones whose lower-cased User-Agent contains one of these (lower case) are challenged with
  // MD5 alone, when MD5 is among `algorithms`.
  std::vector<std::string> md5_only_user_agents;
  std::string nonce_secret;  // random when empty
  absl::Duration nonce_lifetime = absl::Minutes(5);
};

// Looks a device up by its set-side username and hands `done` nullopt for an unknown user, an
// error when the devices cannot be read. `done` may run before the lookup returns (a cached
// device) or later (read from Redis without blocking the SIP thread).
using DeviceLookup =
    std::function<void(const std::string& user, core::DeviceDirectory::DeviceCallback done)>;

struct AuthResult {
  enum class Outcome {
    kChallenge,    // no usable credentials (none, a nonce not ours or stale, an algorithm
                   // not offered): challenge the phone (again)
    kBanned,       // guessing from this source for this user is under a ban
    kUnavailable,  // the devices cannot be read
    kRefused,      // unknown user or wrong password
    kReplayed,     // the right password with a nonce count used before
    kAccepted,
  };
  Outcome outcome = Outcome::kChallenge;
  bool stale = false;  // kChallenge: the nonce was ours but too old (stale=true)
  std::string user;    // the username the credentials name (empty without credentials)
  std::optional<core::DeviceSecrets> device;  // kAccepted
  absl::Status error;                         // kUnavailable
  const char* reason = "";                    // kRefused: "unknown user" or "wrong password"
};

class Authenticator {
 public:
  Authenticator(AuthenticatorOptions options, DeviceLookup devices, Protection& protection,
                core::Clock& clock, core::Random& rng);

  // The challenges (WWW-Authenticate or Proxy-Authenticate values) for a phone whose
  // User-Agent is `user_agent`: one per algorithm it is offered, each with a fresh nonce.
  std::vector<std::string> Challenges(const std::string& realm, bool stale,
                                      absl::string_view user_agent);

  // Checks the Digest `credentials` a `method` request from `ip` carried for `realm` (nullopt:
  // it carried none) and hands `done` the result: before returning when no device lookup is
  // needed or the lookup answers at once, later otherwise. An unknown user is checked
  // against a throwaway password, so that both cost the same.
  void Check(const std::optional<DigestParams>& credentials, absl::string_view method,
             const std::string& realm, const std::string& ip, std::function<void(AuthResult)> done);

  // Counts a failed answer of `user` from `ip`; a new ban when this one crossed the threshold.
  std::optional<core::Ban> CountFailure(const std::string& ip, const std::string& user);

 private:
  // What is decided before the device is known: a result, or nullopt and the algorithm.
  std::optional<AuthResult> Precheck(const std::optional<DigestParams>& credentials,
                                     const std::string& ip, DigestAlgorithm* alg);
  // The rest, once the device lookup answered.
  AuthResult Finish(const DigestParams& credentials, DigestAlgorithm alg, absl::string_view method,
                    const std::string& realm,
                    absl::StatusOr<std::optional<core::DeviceSecrets>> dev);
  std::vector<DigestAlgorithm> AlgorithmsFor(absl::string_view user_agent) const;
  bool Offered(DigestAlgorithm a) const;

  AuthenticatorOptions options_;
  DeviceLookup devices_;
  Protection& protection_;
  core::Random& rng_;
  NonceKeeper nonces_;
};

}  // namespace rwg::sip_edge
