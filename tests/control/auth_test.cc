#include "services/control/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

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

TEST_F(AuthTest, FailedLoginsLockTheSourceOutUnknownUsersIncluded) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(auth_.Login("nobody-" + std::to_string(i), "guess", "198.51.100.7").status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  // Locked out: even the right password is refused, without being checked.
  auto locked = auth_.Login("admin", "first-password", "198.51.100.7");
  EXPECT_EQ(locked.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(locked.status().message(), HasSubstr("from this address"));
  // Another source is not concerned.
  EXPECT_TRUE(auth_.Login("admin", "first-password", "203.0.113.9").ok());
  clock_.Advance(absl::Minutes(5));
  EXPECT_TRUE(auth_.Login("admin", "first-password", "198.51.100.7").ok());
}

TEST_F(AuthTest, WrongCurrentPasswordsCountToo) {
  auto t = auth_.Login("admin", "first-password", "198.51.100.7");
  ASSERT_TRUE(t.ok());
  const std::string me = "Bearer " + t->token;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(auth_.VerifyPassword("admin", "guess", "198.51.100.7").code(),
              absl::StatusCode::kPermissionDenied);
  }
  EXPECT_EQ(
      auth_.ChangePassword("admin", "first-password", "new-password", me, "198.51.100.7").code(),
      absl::StatusCode::kResourceExhausted);
}

// A verifier that holds every check until released, to see how many run at once.
class HeldChecks {
 public:
  bool Verify() {
    std::unique_lock<std::mutex> lock(mu_);
    ++running_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
    --running_;
    return false;
  }
  void WaitRunning(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return running_ == n; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  void Count() {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int running_ = 0;
  int calls_ = 0;
  bool released_ = false;
};

TEST(AuthConcurrencyTest, ChecksBeyondTheLimitAreRefusedAtOnce) {
  FakeAdmins admins;
  admins.m["admin"] = "stored-hash";
  FakeSessions sessions;
  core::ManualClock clock;
  HeldChecks held;
  LoginLimits limits;
  limits.max_concurrent = 2;
  limits.source_failures = 1000;
  limits.user_failures = 1000;
  int busy = 0;
  Authenticator auth(
      admins, sessions, clock, core::Random::System(), absl::Minutes(5), limits,
      [&](LoginEvent e) { busy += e == LoginEvent::kBusy; },
      [&](const std::string&, const std::string&) {
        held.Count();
        return held.Verify();
      });
  std::vector<std::thread> running;
  std::vector<absl::Status> results(2);
  for (int i = 0; i < 2; ++i) {
    running.emplace_back([&, i] { results[i] = auth.Login("admin", "guess", "").status(); });
  }
  held.WaitRunning(2);
  for (int i = 0; i < 20; ++i) {
    absl::Status s = auth.Login("admin", "guess", "").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(s.message(), HasSubstr("password checks in progress"));
  }
  EXPECT_EQ(busy, 20);
  EXPECT_EQ(held.calls(), 2) << "refused attempts cost no check";
  held.Release();
  for (std::thread& t : running) t.join();
  for (const absl::Status& s : results) EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  // Slots are given back.
  EXPECT_EQ(auth.Login("admin", "guess", "").status().code(), absl::StatusCode::kUnauthenticated);
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
