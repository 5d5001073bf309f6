#include "services/control/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "services/core/crypto.h"

namespace rwg::control {
namespace {

using ::testing::HasSubstr;

class FakeAdmins : public AdminStore {
 public:
  absl::StatusOr<std::optional<std::string>> GetAdminHash(const std::string& u) override {
    if (down) return absl::UnavailableError("redis down");
    auto it = m.find(u);
    if (it == m.end()) return std::nullopt;
    return it->second;
  }
  absl::StatusOr<bool> CreateAdmin(const std::string& u, const std::string& h) override {
    return m.emplace(u, h).second;
  }
  absl::Status SetAdminHash(const std::string& u, const std::string& h) override {
    m[u] = h;
    return absl::OkStatus();
  }
  std::map<std::string, std::string> m;
  bool down = false;
};

class FakeSessions : public SessionStore {
 public:
  absl::Status PutSession(const std::string& id, const Session& s, absl::Duration) override {
    m[id] = s;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<Session>> GetSession(const std::string& id) override {
    auto it = m.find(id);
    if (it == m.end()) return std::nullopt;
    return it->second;
  }
  absl::Status DeleteSession(const std::string& id) override {
    m.erase(id);
    return absl::OkStatus();
  }
  std::map<std::string, Session> m;
};

class AuthTest : public ::testing::Test {
 protected:
  AuthTest() : auth_(admins_, sessions_, clock_, core::Random::System(), absl::Minutes(60)) {
    std::string generated;
    EXPECT_TRUE(auth_.Bootstrap("admin", "first-password", &generated).ok());
    EXPECT_TRUE(generated.empty());
  }
  FakeAdmins admins_;
  FakeSessions sessions_;
  core::ManualClock clock_;
  Authenticator auth_;
};

TEST_F(AuthTest, LoginGivesTokenThatExpires) {
  auto t = auth_.Login("admin", "first-password");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token.size(), 64u);
  EXPECT_EQ(t->expires_at, clock_.Now() + absl::Minutes(60));
  const std::string header = "Bearer " + t->token;
  auto who = auth_.Check(header);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, "admin");

  clock_.Advance(absl::Minutes(59));
  EXPECT_TRUE(auth_.Check(header).ok());
  clock_.Advance(absl::Minutes(1));
  auto expired = auth_.Check(header);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.status().message(), HasSubstr("expired"));
}

TEST_F(AuthTest, TokenIsNotStoredInClear) {
  auto t = auth_.Login("admin", "first-password");
  ASSERT_EQ(sessions_.m.size(), 1u);
  EXPECT_EQ(sessions_.m.begin()->first, core::Sha256Hex(t->token));
}

TEST_F(AuthTest, UnknownUserAndWrongPasswordLookAlike) {
  auto a = auth_.Login("admin", "nope");
  auto b = auth_.Login("nobody", "first-password");
  EXPECT_EQ(a.status(), b.status());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, MissingMalformedAndRevokedTokens) {
  EXPECT_THAT(auth_.Check("").status().message(), HasSubstr("log in first"));
  EXPECT_THAT(auth_.Check("Basic abc").status().message(), HasSubstr("Bearer"));
  EXPECT_EQ(auth_.Check("Bearer " + std::string(64, 'a')).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto t = auth_.Login("admin", "first-password");
  ASSERT_TRUE(auth_.Logout("Bearer " + t->token).ok());
  EXPECT_EQ(auth_.Check("Bearer " + t->token).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, StoreDownIsUnavailableNotUnauthenticated) {
  admins_.down = true;
  EXPECT_EQ(auth_.Login("admin", "first-password").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(AuthTest, ChangePassword) {
  auto t = auth_.Login("admin", "first-password");
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string me = "Bearer " + t->token;
  EXPECT_EQ(auth_.ChangePassword("admin", "wrong", "new-password", me).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth_.ChangePassword("admin", "first-password", "short", me).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(auth_.ChangePassword("admin", "first-password", "new-password", me).ok());
  EXPECT_FALSE(auth_.Login("admin", "first-password").ok());
  EXPECT_TRUE(auth_.Login("admin", "new-password").ok());
}

TEST_F(AuthTest, ChangePasswordRevokesTheOtherSessions) {
  std::string generated;
  ASSERT_TRUE(auth_.Bootstrap("other", "other-password", &generated).ok());
  auto mine = auth_.Login("admin", "first-password");
  auto laptop = auth_.Login("admin", "first-password");
  auto stolen = auth_.Login("admin", "first-password");
  auto someone = auth_.Login("other", "other-password");
  ASSERT_TRUE(mine.ok() && laptop.ok() && stolen.ok() && someone.ok());
  ASSERT_TRUE(
      auth_.ChangePassword("admin", "first-password", "new-password", "Bearer " + mine->token)
          .ok());

  // The session that changed the password goes on, until its own expiry.
  auto who = auth_.Check("Bearer " + mine->token);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, "admin");
  for (const auto& t : {laptop, stolen}) {
    auto r = auth_.Check("Bearer " + t->token);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(r.status().message(), HasSubstr("password changed"));
  }
  EXPECT_TRUE(auth_.Check("Bearer " + someone->token).ok()) << "other admins are not affected";
  auto fresh = auth_.Login("admin", "new-password");
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(auth_.Check("Bearer " + fresh->token).ok());
  clock_.Advance(absl::Minutes(60));
  EXPECT_FALSE(auth_.Check("Bearer " + mine->token).ok()) << "expires when it would have";
}

TEST_F(AuthTest, SessionOfADeletedAccountIsRefused) {
  auto t = auth_.Login("admin", "first-password");
  ASSERT_TRUE(t.ok());
  admins_.m.erase("admin");
  EXPECT_EQ(auth_.Check("Bearer " + t->token).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(AuthBootstrapTest, GeneratesPasswordOnceOnly) {
  FakeAdmins admins;
  FakeSessions sessions;
  core::ManualClock clock;
  Authenticator auth(admins, sessions, clock, core::Random::System(), absl::Minutes(5));
  std::string generated;
  ASSERT_TRUE(auth.Bootstrap("admin", "", &generated).ok());
  EXPECT_EQ(generated.size(), 20u);
  EXPECT_TRUE(auth.Login("admin", generated).ok());
  std::string again;
  ASSERT_TRUE(auth.Bootstrap("admin", "", &again).ok());
  EXPECT_TRUE(again.empty());
  EXPECT_TRUE(auth.Login("admin", generated).ok());
  EXPECT_EQ(auth.Bootstrap("other", "short", &again).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rwg::control
