#include "services/control/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/core/crypto.h"

namespace rwg::control {
namespace {

// Verified against when the user does not exist, so that both cases take the same time.
const std::string& DummyHash() {
  static const std::string* hash =
      new std::string(*core::HashPassword("rwg-dummy-password", core::Random::System()));
  return *hash;
}

absl::Status Unauthenticated() { return absl::UnauthenticatedError("wrong username or password"); }

}  // namespace

Authenticator::Authenticator(AdminStore& admins, SessionStore& sessions, core::Clock& clock,
                             core::Random& rng, absl::Duration token_ttl, LoginLimits limits,
                             std::function<void(LoginEvent)> on_event, Verifier verify)
    : admins_(admins),
      sessions_(sessions),
      clock_(clock),
      rng_(rng),
      ttl_(token_ttl),
      guard_(clock, limits, std::move(on_event)),
      verify_(verify ? std::move(verify) : Verifier([](const std::string& p, const std::string& h) {
        return core::VerifyPassword(p, h);
      })) {}

absl::StatusOr<bool> Authenticator::CheckPassword(const std::string& user,
                                                  const std::string& password,
                                                  const std::optional<std::string>& hash,
                                                  const std::string& source) {
  absl::Status admitted = guard_.Admit(source, user);
  if (!admitted.ok()) return admitted;
  std::optional<LoginGuard::Slot> slot;
  absl::Status acquired = guard_.Acquire(slot);
  if (!acquired.ok()) return acquired;
  // An unknown user costs the same check, and counts the same failure, as a wrong password.
  const bool right = verify_(password, hash.value_or(DummyHash())) && hash.has_value();
  if (right) {
    guard_.Succeeded(source, user);
  } else {
    guard_.Failed(source, user);
  }
  return right;
}

absl::Status Authenticator::Bootstrap(const std::string& user, const std::string& password,
                                      std::string* generated) {
  absl::StatusOr<std::optional<std::string>> existing = admins_.GetAdminHash(user);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) return absl::OkStatus();
  std::string pw = password;
  if (pw.empty()) {
    pw = core::RandomPassword(rng_, 20);
    *generated = pw;
  } else if (pw.size() < 8) {
    return absl::InvalidArgumentError("admin password must be at least 8 characters long");
  }
  absl::StatusOr<std::string> hash = core::HashPassword(pw, rng_);
  if (!hash.ok()) return hash.status();
  absl::StatusOr<bool> created = admins_.CreateAdmin(user, *hash);
  if (!created.ok()) return created.status();
  if (!*created) generated->clear();  // another replica created it first
  return absl::OkStatus();
}

absl::StatusOr<Token> Authenticator::Login(const std::string& user, const std::string& password,
                                           const std::string& source) {
  absl::StatusOr<std::optional<std::string>> hash = admins_.GetAdminHash(user);
  if (!hash.ok()) return hash.status();
  absl::StatusOr<bool> right = CheckPassword(user, password, *hash, source);
  if (!right.ok()) return right.status();
  if (!*right) return Unauthenticated();
  Token t{core::RandomHex(rng_, 32), clock_.Now() + ttl_};
  absl::Status put = sessions_.PutSession(core::Sha256Hex(t.token),
                                          {user, t.expires_at, Credential(**hash)}, ttl_);
  if (!put.ok()) return put;
  return t;
}

absl::StatusOr<std::string> Authenticator::TokenId(absl::string_view authorization) {
  if (authorization.empty()) {
    return absl::UnauthenticatedError("no token: log in first (rwgctl login)");
  }
  if (!absl::ConsumePrefix(&authorization, "Bearer ") || authorization.size() != 64) {
    return absl::UnauthenticatedError("malformed authorization: expected 'Bearer <token>'");
  }
  return core::Sha256Hex(authorization);
}

absl::StatusOr<std::string> Authenticator::Check(absl::string_view authorization) {
  absl::StatusOr<std::string> id = TokenId(authorization);
  if (!id.ok()) return id.status();
  absl::StatusOr<std::optional<Session>> s = sessions_.GetSession(*id);
  if (!s.ok()) return s.status();
  if (!s->has_value() || (*s)->expires_at <= clock_.Now()) {
    return absl::UnauthenticatedError("token expired or revoked: log in again (rwgctl login)");
  }
  absl::StatusOr<std::optional<std::string>> hash = admins_.GetAdminHash((*s)->username);
  if (!hash.ok()) return hash.status();
  if (!hash->has_value() || Credential(**hash) != (*s)->credential) {
    return absl::UnauthenticatedError(
        "token revoked: the password changed since it was issued; log in again (rwgctl login)");
  }
  return (*s)->username;
}

std::string Authenticator::Credential(const std::string& hash) {
  return core::Sha256Hex(hash).substr(0, 32);
}

absl::Status Authenticator::Logout(absl::string_view authorization) {
  absl::StatusOr<std::string> id = TokenId(authorization);
  if (!id.ok()) return id.status();
  return sessions_.DeleteSession(*id);
}

absl::Status Authenticator::VerifyPassword(const std::string& user, const std::string& password,
                                           const std::string& source) {
  absl::StatusOr<std::optional<std::string>> hash = admins_.GetAdminHash(user);
  if (!hash.ok()) return hash.status();
  absl::StatusOr<bool> right = CheckPassword(user, password, *hash, source);
  if (!right.ok()) return right.status();
  if (!*right) return absl::PermissionDeniedError("current_password: wrong password");
  return absl::OkStatus();
}

absl::Status Authenticator::ChangePassword(const std::string& user, const std::string& current,
                                           const std::string& fresh,
                                           absl::string_view authorization,
                                           const std::string& source) {
  if (fresh.size() < 8 || fresh.size() > 128) {
    return absl::InvalidArgumentError("new_password: must be 8 to 128 characters long");
  }
  absl::StatusOr<std::string> id = TokenId(authorization);
  if (!id.ok()) return id.status();
  absl::StatusOr<std::optional<Session>> caller = sessions_.GetSession(*id);
  if (!caller.ok()) return caller.status();
  absl::Status ok = VerifyPassword(user, current, source);
  if (!ok.ok()) return ok;
  absl::StatusOr<std::string> hash;
  {
    std::optional<LoginGuard::Slot> slot;  // hashing costs what a check does
    absl::Status acquired = guard_.Acquire(slot);
    if (!acquired.ok()) return acquired;
    hash = core::HashPassword(fresh, rng_);
  }
  if (!hash.ok()) return hash.status();
  // From here on every session opened under the old hash is refused by Check.
  absl::Status set = admins_.SetAdminHash(user, *hash);
  if (!set.ok()) return set;
  if (caller->has_value() && (*caller)->username == user) {
    const absl::Duration left = (*caller)->expires_at - clock_.Now();
    if (left > absl::ZeroDuration()) {
      (*caller)->credential = Credential(*hash);
      absl::Status kept = sessions_.PutSession(*id, **caller, left);
      if (!kept.ok()) return kept;
    }
  }
  return absl::OkStatus();
}

}  // namespace rwg::control
