// Admin authentication: scrypt-hashed accounts, short-lived bearer tokens. A token is 32
// random bytes; only its SHA-256 is stored, so a copy of Redis holds no usable token.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/control/login_guard.h"
#include "services/control/store.h"
#include "services/core/clock.h"
#include "services/core/random.h"

namespace rwg::control {

struct Token {
  std::string token;
  absl::Time expires_at;
};

class Authenticator {
 public:
  // Checks a password against a stored hash; core::VerifyPassword unless a test gives another.
  using Verifier = std::function<bool(const std::string& password, const std::string& hash)>;

  // Every password check (Login, VerifyPassword, ChangePassword) goes through a LoginGuard
  // with `limits`; `on_event` sees its refusals and lockouts.
  Authenticator(AdminStore& admins, SessionStore& sessions, core::Clock& clock, core::Random& rng,
                absl::Duration token_ttl, LoginLimits limits = {},
                std::function<void(LoginEvent)> on_event = nullptr, Verifier verify = nullptr);

  // Creates the first admin account unless it exists. With an empty `password` a random one
  // is generated and returned in `*generated`.
  absl::Status Bootstrap(const std::string& user, const std::string& password,
                         std::string* generated);

  // UNAUTHENTICATED "wrong username or password" for an unknown user or a wrong password;
  // RESOURCE_EXHAUSTED when `source` (LoginSourceKey; empty: not counted) or `user` is locked
  // out, or too many checks are in progress (login_guard.h).
  absl::StatusOr<Token> Login(const std::string& user, const std::string& password,
                              const std::string& source = "");

  // Checks the value of the `authorization` metadata ("Bearer <token>"); returns the user.
  // A session begun before the user's password last changed is refused.
  absl::StatusOr<std::string> Check(absl::string_view authorization);
  absl::Status Logout(absl::string_view authorization);

  // OK when `password` is `user`'s current password; PERMISSION_DENIED otherwise. Counted and
  // limited as a login is.
  absl::Status VerifyPassword(const std::string& user, const std::string& password,
                              const std::string& source = "");
  // Changing the password revokes every session of `user` except the caller's, the one
  // `authorization` names, which stays valid until it expires.
  absl::Status ChangePassword(const std::string& user, const std::string& current,
                              const std::string& fresh, absl::string_view authorization,
                              const std::string& source = "");

  const LoginGuard& guard() const { return guard_; }

 private:
  absl::StatusOr<std::string> TokenId(absl::string_view authorization);
  // What a session records of the password hash it was opened under.
  static std::string Credential(const std::string& hash);
  // Admission, a check slot, the check against `hash` (the dummy one when absent), and the
  // failure counted: true when the password is right, else the error to answer.
  absl::StatusOr<bool> CheckPassword(const std::string& user, const std::string& password,
                                     const std::optional<std::string>& hash,
                                     const std::string& source);

  AdminStore& admins_;
  SessionStore& sessions_;
  core::Clock& clock_;
  core::Random& rng_;
  absl::Duration ttl_;
  LoginGuard guard_;
  Verifier verify_;
};

}  // namespace rwg::control
