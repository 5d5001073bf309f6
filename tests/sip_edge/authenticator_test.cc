#include "services/sip_edge/authenticator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <vector>

namespace rwg::sip_edge {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Outcome = AuthResult::Outcome;

constexpr char kRealm[] = "rwg.example.com";
constexpr char kIp[] = "192.0.2.7";

class AuthenticatorTest : public ::testing::Test {
 protected:
  AuthenticatorTest() {
    core::DeviceSecrets d;
    d.set_username = "1001";
    d.set_password = "secret";
    d.icp_username = "icp1001";
    devices_["1001"] = d;
  }

  Authenticator Make(AuthenticatorOptions options = {}) {
    options.nonce_secret = "nonce-secret";
    return Authenticator(
        std::move(options),
        [this](const std::string& user, core::DeviceDirectory::DeviceCallback done) {
          ++lookups_;
          if (defer_) {
            deferred_.push_back([this, user, done = std::move(done)] { done(Find(user)); });
            return;
          }
          done(Find(user));
        },
        protection_, clock_, core::Random::System());
  }

  absl::StatusOr<std::optional<core::DeviceSecrets>> Find(const std::string& user) {
    if (!lookup_ok_) return absl::UnavailableError("redis down");
    auto it = devices_.find(user);
    if (it == devices_.end()) return std::optional<core::DeviceSecrets>();
    return std::optional<core::DeviceSecrets>(it->second);
  }

  // The result of a check whose lookup answers at once.
  static AuthResult Check(Authenticator& auth, const std::optional<DigestParams>& credentials,
                          absl::string_view method, const std::string& realm,
                          const std::string& ip) {
    std::optional<AuthResult> out;
    auth.Check(credentials, method, realm, ip, [&](AuthResult r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value());
    return out.value_or(AuthResult{});
  }

  // The credentials a phone sends answering `challenge` for `method`.
  static DigestParams Answer(const std::string& challenge, const std::string& user,
                             const std::string& password, const std::string& method,
                             const std::string& nc = "00000001") {
    absl::StatusOr<DigestParams> c = ParseDigest(challenge);
    EXPECT_TRUE(c.ok());
    const DigestAlgorithm alg = *ParseAlgorithm(c->Get("algorithm"));
    DigestParams p;
    p.values = {{"username", user},
                {"realm", c->Get("realm")},
                {"nonce", c->Get("nonce")},
                {"uri", "sip:rwg.example.com"},
                {"algorithm", c->Get("algorithm")},
                {"qop", "auth"},
                {"nc", nc},
                {"cnonce", "abcdef"}};
    p.values["response"] = DigestResponse(alg, user, c->Get("realm"), password, method,
                                          p.Get("uri"), p.Get("nonce"), nc, "abcdef", "auth");
    return p;
  }

  core::ManualClock clock_;
  Protection protection_{ProtectionOptions{}, clock_};
  std::map<std::string, core::DeviceSecrets> devices_;
  bool lookup_ok_ = true;
  bool defer_ = false;  // lookups answer when the test runs deferred_
  std::vector<std::function<void()>> deferred_;
  int lookups_ = 0;
};

TEST_F(AuthenticatorTest, ChallengesWithEveryAlgorithm) {
  Authenticator auth = Make();
  std::vector<std::string> c = auth.Challenges(kRealm, false, "Yealink SIP-T46U");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_THAT(c[0], HasSubstr("algorithm=MD5"));
  EXPECT_THAT(c[1], HasSubstr("algorithm=SHA-256"));
  EXPECT_THAT(c[0], HasSubstr("realm=\"rwg.example.com\""));
  EXPECT_THAT(c[0], HasSubstr("qop=\"auth\""));
  EXPECT_THAT(c[0], Not(HasSubstr("stale")));
  EXPECT_THAT(auth.Challenges(kRealm, true, "")[0], HasSubstr("stale=true"));
}

TEST_F(AuthenticatorTest, Md5AloneForListedUserAgents) {
  AuthenticatorOptions o;
  o.md5_only_user_agents = {"oldphone"};
  Authenticator auth = Make(o);
  std::vector<std::string> c = auth.Challenges(kRealm, false, "OldPhone/1.2");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_THAT(c[0], HasSubstr("algorithm=MD5"));
  // Without MD5 configured the list changes nothing.
  o.algorithms = {DigestAlgorithm::kSha256};
  Authenticator sha = Make(o);
  c = sha.Challenges(kRealm, false, "OldPhone/1.2");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_THAT(c[0], HasSubstr("algorithm=SHA-256"));
}

TEST_F(AuthenticatorTest, NoCredentialsIsAChallenge) {
  Authenticator auth = Make();
  AuthResult r = Check(auth, std::nullopt, "REGISTER", kRealm, kIp);
  EXPECT_EQ(r.outcome, Outcome::kChallenge);
  EXPECT_FALSE(r.stale);
}

TEST_F(AuthenticatorTest, AcceptsTheRightPasswordWithEitherAlgorithm) {
  Authenticator auth = Make();
  for (const std::string& c : auth.Challenges(kRealm, false, "")) {
    AuthResult r = Check(auth, Answer(c, "1001", "secret", "REGISTER"), "REGISTER", kRealm, kIp);
    ASSERT_EQ(r.outcome, Outcome::kAccepted) << c;
    EXPECT_EQ(r.user, "1001");
    ASSERT_TRUE(r.device.has_value());
    EXPECT_EQ(r.device->icp_username, "icp1001");
  }
}

TEST_F(AuthenticatorTest, TheMethodIsPartOfTheAnswer) {
  Authenticator auth = Make();
  const std::string c = auth.Challenges(kRealm, false, "")[0];
  AuthResult r = Check(auth, Answer(c, "1001", "secret", "REGISTER"), "INVITE", kRealm, kIp);
  EXPECT_EQ(r.outcome, Outcome::kRefused);
  EXPECT_EQ(Check(auth, Answer(c, "1001", "secret", "INVITE"), "INVITE", kRealm, kIp).outcome,
            Outcome::kAccepted);
}

TEST_F(AuthenticatorTest, WrongPasswordAndUnknownUserAreRefused) {
  Authenticator auth = Make();
  const std::string c = auth.Challenges(kRealm, false, "")[0];
  AuthResult wrong = Check(auth, Answer(c, "1001", "guess", "REGISTER"), "REGISTER", kRealm, kIp);
  EXPECT_EQ(wrong.outcome, Outcome::kRefused);
  EXPECT_STREQ(wrong.reason, "wrong password");
  AuthResult unknown =
      Check(auth, Answer(c, "9999", "secret", "REGISTER"), "REGISTER", kRealm, kIp);
  EXPECT_EQ(unknown.outcome, Outcome::kRefused);
  EXPECT_STREQ(unknown.reason, "unknown user");
  EXPECT_EQ(unknown.user, "9999");
}

TEST_F(AuthenticatorTest, ForeignAndStaleNonces) {
  Authenticator auth = Make();
  Authenticator other(
      AuthenticatorOptions{{DigestAlgorithm::kMd5}, {}, "another-secret"},
      [](const std::string&, core::DeviceDirectory::DeviceCallback done) {
        done(std::optional<core::DeviceSecrets>());
      },
      protection_, clock_, core::Random::System());
  const std::string foreign = other.Challenges(kRealm, false, "")[0];
  AuthResult r =
      Check(auth, Answer(foreign, "1001", "secret", "REGISTER"), "REGISTER", kRealm, kIp);
  EXPECT_EQ(r.outcome, Outcome::kChallenge);
  EXPECT_FALSE(r.stale);

  const std::string c = auth.Challenges(kRealm, false, "")[0];
  clock_.Advance(absl::Minutes(6));
  r = Check(auth, Answer(c, "1001", "secret", "REGISTER"), "REGISTER", kRealm, kIp);
  EXPECT_EQ(r.outcome, Outcome::kChallenge);
  EXPECT_TRUE(r.stale);
}

TEST_F(AuthenticatorTest, AlgorithmNotOfferedIsAChallenge) {
  AuthenticatorOptions md5;
  md5.algorithms = {DigestAlgorithm::kMd5};
  Authenticator auth = Make(md5);
  std::string c = auth.Challenges(kRealm, false, "")[0];
  DigestParams p = Answer(c, "1001", "secret", "REGISTER");
  // The same nonce answered with SHA-256, which this edge does not offer.
  p.values["algorithm"] = "SHA-256";
  p.values["response"] =
      DigestResponse(DigestAlgorithm::kSha256, "1001", kRealm, "secret", "REGISTER", p.Get("uri"),
                     p.Get("nonce"), p.Get("nc"), p.Get("cnonce"), "auth");
  EXPECT_EQ(Check(auth, p, "REGISTER", kRealm, kIp).outcome, Outcome::kChallenge);
}

TEST_F(AuthenticatorTest, ANonceCountIsTakenOnce) {
  Authenticator auth = Make();
  const std::string c = auth.Challenges(kRealm, false, "")[0];
  const DigestParams p = Answer(c, "1001", "secret", "REGISTER");
  EXPECT_EQ(Check(auth, p, "REGISTER", kRealm, kIp).outcome, Outcome::kAccepted);
  EXPECT_EQ(Check(auth, p, "REGISTER", kRealm, kIp).outcome, Outcome::kReplayed);
  EXPECT_EQ(
      Check(auth, Answer(c, "1001", "secret", "REGISTER", "00000002"), "REGISTER", kRealm, kIp)
          .outcome,
      Outcome::kAccepted);
}

TEST_F(AuthenticatorTest, UnreadableDevices) {
  Authenticator auth = Make();
  lookup_ok_ = false;
  const std::string c = auth.Challenges(kRealm, false, "")[0];
  AuthResult r = Check(auth, Answer(c, "1001", "secret", "REGISTER"), "REGISTER", kRealm, kIp);
  EXPECT_EQ(r.outcome, Outcome::kUnavailable);
  EXPECT_TRUE(absl::IsUnavailable(r.error));
}

TEST_F(AuthenticatorTest, FailuresLeadToABanThatHoldsEvenForTheRightPassword) {
  Authenticator auth = Make();
  const int threshold = ProtectionOptions{}.auth_failures;
  std::optional<core::Ban> ban;
  for (int i = 0; i < threshold && !ban; ++i) ban = auth.CountFailure(kIp, "1001");
  ASSERT_TRUE(ban.has_value());
  protection_.AddBan(*ban);
  const std::string c = auth.Challenges(kRealm, false, "")[0];
  AuthResult r = Check(auth, Answer(c, "1001", "secret", "REGISTER"), "REGISTER", kRealm, kIp);
  EXPECT_EQ(r.outcome, Outcome::kBanned);
  EXPECT_EQ(r.user, "1001");
  // Another source is not concerned.
  EXPECT_EQ(
      Check(auth, Answer(c, "1001", "secret", "REGISTER"), "REGISTER", kRealm, "192.0.2.8").outcome,
      Outcome::kAccepted);
  clock_.Advance(ProtectionOptions{}.auth_ban + absl::Seconds(1));
  EXPECT_NE(
      Check(auth, Answer(c, "1001", "secret", "REGISTER", "00000002"), "REGISTER", kRealm, kIp)
          .outcome,
      Outcome::kBanned);
}

TEST_F(AuthenticatorTest, ALookupThatAnswersLaterFinishesTheCheckThen) {
  Authenticator auth = Make();
  defer_ = true;
  const std::string c = auth.Challenges(kRealm, false, "")[0];
  std::vector<AuthResult> results;
  auth.Check(Answer(c, "1001", "secret", "REGISTER"), "REGISTER", kRealm, kIp,
             [&](AuthResult r) { results.push_back(std::move(r)); });
  auth.Check(Answer(c, "9999", "secret", "REGISTER"), "REGISTER", kRealm, kIp,
             [&](AuthResult r) { results.push_back(std::move(r)); });
  EXPECT_TRUE(results.empty());  // both wait on their lookups
  ASSERT_EQ(deferred_.size(), 2u);
  for (auto& run : deferred_) run();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].outcome, Outcome::kAccepted);
  ASSERT_TRUE(results[0].device.has_value());
  EXPECT_EQ(results[0].device->icp_username, "icp1001");
  EXPECT_EQ(results[1].outcome, Outcome::kRefused);
  EXPECT_STREQ(results[1].reason, "unknown user");
}

TEST_F(AuthenticatorTest, NoLookupWhenTheCredentialsAreDecidedWithoutTheDevice) {
  Authenticator auth = Make();
  defer_ = true;
  std::optional<AuthResult> r;
  auth.Check(std::nullopt, "REGISTER", kRealm, kIp, [&](AuthResult a) { r = std::move(a); });
  ASSERT_TRUE(r.has_value());  // answered at once: a challenge
  EXPECT_EQ(r->outcome, Outcome::kChallenge);
  EXPECT_EQ(lookups_, 0);
}

TEST_F(AuthenticatorTest, ALateFailedLookupIsUnavailable) {
  Authenticator auth = Make();
  defer_ = true;
  const std::string c = auth.Challenges(kRealm, false, "")[0];
  std::optional<AuthResult> r;
  auth.Check(Answer(c, "1001", "secret", "REGISTER"), "REGISTER", kRealm, kIp,
             [&](AuthResult a) { r = std::move(a); });
  lookup_ok_ = false;
  ASSERT_EQ(deferred_.size(), 1u);
  deferred_[0]();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcome, Outcome::kUnavailable);
  EXPECT_TRUE(absl::IsUnavailable(r->error));
}

}  // namespace
}  // namespace rwg::sip_edge
