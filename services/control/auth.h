// Admin authentication: scrypt-hashed accounts, short-lived bearer tokens. A token is 32
// random bytes; only its SHA-256 is stored, so a copy of Redis holds no usable token.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
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
  Authenticator(AdminStore& admins, SessionStore& sessions, core::Clock& clock, core::Random& rng,
                absl::Duration token_ttl)
      : admins_(admins), sessions_(sessions), clock_(clock), rng_(rng), ttl_(token_ttl) {}

  // Creates the first admin account unless it exists. With an empty `password` a random one
  // is generated and returned in `*generated`.
  absl::Status Bootstrap(const std::string& user, const std::string& password,
                         std::string* generated);

  // UNAUTHENTICATED "wrong username or password" for an unknown user or a wrong password.
  absl::StatusOr<Token> Login(const std::string& user, const std::string& password);

  // Checks the value of the `authorization` metadata ("Bearer <token>"); returns the user.
  // A session begun before the user's password last changed is refused.
  absl::StatusOr<std::string> Check(absl::string_view authorization);
  absl::Status Logout(absl::string_view authorization);

  // OK when `password` is `user`'s current password; PERMISSION_DENIED otherwise.
  absl::Status VerifyPassword(const std::string& user, const std::string& password);
  // Changing the password revokes every session of `user` except the caller's, the one
  // `authorization` names, which stays valid until it expires.
  absl::Status ChangePassword(const std::string& user, const std::string& current,
                              const std::string& fresh, absl::string_view authorization);

 private:
  absl::StatusOr<std::string> TokenId(absl::string_view authorization);
  // What a session records of the password hash it was opened under.
  static std::string Credential(const std::string& hash);

  AdminStore& admins_;
  SessionStore& sessions_;
  core::Clock& clock_;
  core::Random& rng_;
  absl::Duration ttl_;
};

}  // namespace rwg::control
