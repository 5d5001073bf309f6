// What ott keeps in Redis (docs/ott.md): the domain list, the accounts for admin paths, their
// lock-outs and rwg's login sessions. Every change increments rwg:ott:version, which each
// instance watches to reload (state.h).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rwg/ott/v1/ott.pb.h"
#include "services/core/clock.h"
#include "services/core/random.h"
#include "services/core/redis.h"

namespace rwg::ott {

namespace pb = ::rwg::ott::v1;

inline constexpr char kDomainsKey[] = "rwg:ott:domains";
inline constexpr char kAccountsKey[] = "rwg:ott:accounts";
inline constexpr char kVersionKey[] = "rwg:ott:version";
inline constexpr char kLastLoginKey[] = "rwg:ott:last-login";
inline constexpr size_t kMaxDomains = 256;
inline constexpr size_t kMaxAccounts = 1000;

// Checks a domain as given to Add (fqdn, service, backend, paths); InvalidArgument naming the
// field. The fqdn must already be lower case.
absl::Status ValidateDomain(const pb::Domain& d);
absl::Status ValidateAccountName(const std::string& name);
absl::Status ValidatePassword(const std::string& password);

struct LoginPolicy {
  int failures = 5;  // failed logins in a row that lock an account
  absl::Duration lockout = absl::Minutes(15);
  absl::Duration session = absl::Hours(8);
};

enum class LoginResult { kOk, kBadCredentials, kLocked, kDisabled };

class OttStore {
 public:
  OttStore(core::RedisClient& redis, core::Clock& clock, core::Random& rng)
      : redis_(redis), clock_(clock), rng_(rng) {}

  absl::StatusOr<pb::Domain> AddDomain(pb::Domain d);
  // Replaces the stored domain with `d`, which must already exist (NotFound otherwise).
  absl::StatusOr<pb::Domain> PutDomain(const pb::Domain& d);
  absl::StatusOr<std::optional<pb::Domain>> GetDomain(const std::string& fqdn);
  // False when there was no such domain.
  absl::StatusOr<bool> DeleteDomain(const std::string& fqdn);
  absl::StatusOr<std::vector<pb::Domain>> ListDomains();

  // `password` in the clear; stored hashed (scrypt, like admin passwords).
  absl::StatusOr<pb::Account> AddAccount(const std::string& name, const std::string& password,
                                         bool enabled);
  // Fields of the mask: "password" (also unlocks), "enabled", "unlock".
  absl::StatusOr<pb::Account> UpdateAccount(const std::string& name,
                                            const std::optional<std::string>& password,
                                            std::optional<bool> enabled, bool unlock);
  absl::StatusOr<bool> DeleteAccount(const std::string& name);
  // Without their password; with lock and last-login times.
  absl::StatusOr<std::vector<pb::Account>> ListAccounts();

  // Checks a login; a failure counts toward the lock-out. Unknown names take as long as known
  // ones and count nowhere (the table of counters is bounded by the accounts).
  absl::StatusOr<LoginResult> Login(const std::string& name, const std::string& password,
                                    const LoginPolicy& policy);
  // A new session for `name`; the cookie's value (64 hex digits). Redis keeps its SHA-256.
  absl::StatusOr<std::string> CreateSession(const std::string& name, absl::Duration ttl);
  // The account the cookie's session belongs to; nullopt when none (or expired).
  absl::StatusOr<std::optional<std::string>> SessionAccount(const std::string& cookie);
  absl::Status DeleteSession(const std::string& cookie);

  // rwg:ott:version (0 before any change).
  absl::StatusOr<long long> Version();
  // The account records as stored (with their password hashes), for the serving state.
  absl::StatusOr<std::vector<pb::Account>> LoadAccounts();

 private:
  absl::Status Bump();

  core::RedisClient& redis_;
  core::Clock& clock_;
  core::Random& rng_;
};

}  // namespace rwg::ott
