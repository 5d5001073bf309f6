// The sync API's requests over a private redis-server, with an injected clock: what only time
// shows (a temporary token that expired, an access token a year old), Redis going away, and
// the order of the checks. Requests are signed here with rwg's own signer; the integration
// test (tests/integration/test_sync.py) signs with independent OAuth libraries.
#include "services/sync/api.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "services/core/clock.h"
#include "services/core/sync_store.h"
#include "services/sync/oauth1.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::sync {
namespace {

constexpr char kHost[] = "rwg.example.net:8443";

class SyncApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
        core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
    ASSERT_TRUE(box.ok());
    box_ = *std::move(box);
    store_ = std::make_unique<core::SyncStore>(redis_->client(), *box_);
    core::SyncConsumer c;
    c.name = "ipbx";
    c.id = "MiVOAppSuite";
    c.secret = "consumer-secret";
    c.sources = {"192.0.2.0/24"};
    c.created = clock_.Now();
    ASSERT_TRUE(store_->AddConsumer(c).ok());
    api_ = std::make_unique<SyncApi>(SyncApiOptions{}, redis_->client(), *box_, clock_,
                                     core::Random::System(), registry_);
  }

  // A request signed with HMAC-SHA1 at the clock's time.
  HttpRequest Signed(const std::string& method, const std::string& target,
                     const std::string& token = "", const std::string& token_secret = "",
                     const std::vector<std::pair<std::string, std::string>>& extra = {},
                     const std::string& consumer_secret = "consumer-secret") {
    std::vector<std::pair<std::string, std::string>> oauth = {
        {"oauth_consumer_key", "MiVOAppSuite"},
        {"oauth_nonce", absl::StrCat("n", ++nonce_)},
        {"oauth_signature_method", "HMAC-SHA1"},
        {"oauth_timestamp", std::to_string(absl::ToUnixSeconds(clock_.Now()))},
        {"oauth_version", "1.0"}};
    if (!token.empty()) oauth.emplace_back("oauth_token", token);
    oauth.insert(oauth.end(), extra.begin(), extra.end());
    std::vector<std::string> parts;
    parts.reserve(oauth.size());
    for (const auto& [k, v] : oauth) {
      parts.push_back(absl::StrCat(k, "=\"", PercentEncode(v), "\""));
    }
    const size_t q = target.find('?');
    SignedRequest sr{method,
                     "https",
                     kHost,
                     target.substr(0, q),
                     q == std::string::npos ? "" : target.substr(q + 1),
                     "OAuth " + absl::StrJoin(parts, ", "),
                     ""};
    absl::StatusOr<Parameters> params = CollectParameters(sr);
    EXPECT_TRUE(params.ok()) << params.status();
    const std::string sig = Sign(SignatureMethod::kHmacSha1, SignatureBaseString(sr, *params),
                                 consumer_secret, token_secret);
    HttpRequest r;
    r.method = method;
    r.target = target;
    r.host = kHost;
    r.authorization =
        absl::StrCat(sr.authorization, ", oauth_signature=\"", PercentEncode(sig), "\"");
    r.source = "192.0.2.7";
    return r;
  }

  HttpResponse Call(HttpRequest r) {
    std::optional<HttpResponse> got;
    api_->Handle(std::move(r), [&](HttpResponse a) { got = std::move(a); });
    EXPECT_TRUE(got.has_value()) << "answered at once";
    return got.value_or(HttpResponse{});
  }

  static std::string Field(const HttpResponse& r, const std::string& name) {
    for (absl::string_view kv : absl::StrSplit(r.body, '&')) {
      const size_t eq = kv.find('=');
      if (kv.substr(0, eq) == name) {
        return PercentDecode(kv.substr(eq + 1), true).value_or("");
      }
    }
    return "";
  }

  // Request token, approval, exchange: the access token and its secret.
  std::pair<std::string, std::string> Link() {
    HttpResponse t =
        Call(Signed("POST", "/oauth/request_token", "", "", {{"oauth_callback", "oob"}}));
    EXPECT_EQ(t.status, 200) << t.body;
    EXPECT_TRUE(store_->ApproveToken(Field(t, "oauth_token"), "VERIFIER42").ok());
    HttpResponse a =
        Call(Signed("POST", "/oauth/access_token", Field(t, "oauth_token"),
                    Field(t, "oauth_token_secret"), {{"oauth_verifier", "VERIFIER42"}}));
    EXPECT_EQ(a.status, 200) << a.body;
    return {Field(a, "oauth_token"), Field(a, "oauth_token_secret")};
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<core::SecretBox> box_;
  std::unique_ptr<core::SyncStore> store_;
  core::ManualClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<SyncApi> api_;
  int nonce_ = 0;
};

TEST_F(SyncApiTest, TheThreeLegsGiveATokenThatSignsApiCalls) {
  auto [token, secret] = Link();
  ASSERT_FALSE(token.empty());
  HttpResponse r = Call(Signed("GET", "/api/v1/devices", token, secret));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "\"devices\":[]")) << r.body;
}

TEST_F(SyncApiTest, ATemporaryTokenExpiresAfterAnHour) {
  HttpResponse t =
      Call(Signed("POST", "/oauth/request_token", "", "", {{"oauth_callback", "oob"}}));
  ASSERT_EQ(t.status, 200) << t.body;
  EXPECT_EQ(Field(t, "oauth_callback_confirmed"), "true");
  ASSERT_TRUE(store_->ApproveToken(Field(t, "oauth_token"), "VERIFIER42").ok());
  clock_.Advance(absl::Minutes(61));
  HttpResponse a = Call(Signed("POST", "/oauth/access_token", Field(t, "oauth_token"),
                               Field(t, "oauth_token_secret"), {{"oauth_verifier", "VERIFIER42"}}));
  EXPECT_EQ(a.status, 401);
  EXPECT_EQ(Field(a, "oauth_problem"), "token_expired") << a.body;
}

TEST_F(SyncApiTest, AnAccessTokenLastsAYearUnlessRenewed) {
  auto [token, secret] = Link();
  clock_.Advance(absl::Hours(24 * 300));
  HttpResponse renewed = Call(Signed("POST", "/oauth/renew", token, secret));
  ASSERT_EQ(renewed.status, 200) << renewed.body;
  EXPECT_EQ(Field(renewed, "oauth_expires_in"), std::to_string(365 * 86400));
  clock_.Advance(absl::Hours(24 * 300));  // 600 days after the exchange, 300 after renewal
  EXPECT_EQ(Call(Signed("GET", "/api/v1/devices", token, secret)).status, 200);
  clock_.Advance(absl::Hours(24 * 66));
  HttpResponse r = Call(Signed("GET", "/api/v1/devices", token, secret));
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Field(r, "oauth_problem"), "token_expired");
}

TEST_F(SyncApiTest, RefusalsNameTheirProblem) {
  auto [token, secret] = Link();
  HttpResponse r = Call(Signed("GET", "/api/v1/devices", token, "wrong"));
  EXPECT_EQ(Field(r, "oauth_problem"), "signature_invalid");
  r = Call(Signed("GET", "/api/v1/devices", token, secret, {}, "wrong-consumer-secret"));
  EXPECT_EQ(Field(r, "oauth_problem"), "signature_invalid");
  r = Call(Signed("GET", "/api/v1/devices", "no-such-token", secret));
  EXPECT_EQ(Field(r, "oauth_problem"), "token_rejected");
  r = Call(Signed("POST", "/oauth/request_token", "", "", {{"oauth_callback", "https://x"}}));
  EXPECT_EQ(Field(r, "oauth_problem"), "parameter_rejected");
  HttpRequest elsewhere = Signed("GET", "/api/v1/devices", token, secret);
  elsewhere.source = "198.51.100.1";
  r = Call(elsewhere);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Field(r, "oauth_problem"), "consumer_key_refused");
  EXPECT_TRUE(absl::StrContains(Field(r, "oauth_problem_advice"), "198.51.100.1"));
  HttpRequest no_host = Signed("GET", "/api/v1/devices", token, secret);
  no_host.host.clear();
  EXPECT_EQ(Call(no_host).status, 400);
  EXPECT_EQ(Call(Signed("GET", "/nowhere", token, secret)).status, 404);
  EXPECT_EQ(Call(Signed("DELETE", "/api/v1/devices", token, secret)).status, 405);
}

TEST_F(SyncApiTest, PendingTokensPerConsumerAreBounded) {
  for (int i = 0; i < 16; ++i) {
    HttpResponse t =
        Call(Signed("POST", "/oauth/request_token", "", "", {{"oauth_callback", "oob"}}));
    ASSERT_EQ(t.status, 200) << i << " " << t.body;
  }
  HttpResponse t =
      Call(Signed("POST", "/oauth/request_token", "", "", {{"oauth_callback", "oob"}}));
  EXPECT_EQ(t.status, 429) << t.body;
}

TEST_F(SyncApiTest, RedisGoneIs503AndNothingIsWritten) {
  auto [token, secret] = Link();
  redis_->Kill();
  HttpResponse r = Call(Signed("GET", "/api/v1/devices", token, secret));
  EXPECT_EQ(r.status, 503) << r.body;
}

TEST_F(SyncApiTest, TheQueryIsSigned) {
  auto [token, secret] = Link();
  HttpResponse r = Call(Signed("GET", "/api/v1/changes?since=0", token, secret));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "\"changes\":[]")) << r.body;
  HttpRequest altered = Signed("GET", "/api/v1/changes?since=0", token, secret);
  altered.target = "/api/v1/changes?since=1";
  r = Call(altered);
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(Field(r, "oauth_problem"), "signature_invalid");
  EXPECT_EQ(Call(Signed("GET", "/api/v1/changes?since=x", token, secret)).status, 400);
}

TEST_F(SyncApiTest, ALongPollIsAnsweredAtItsDeadlineOrWhenTheApiStops) {
  auto [token, secret] = Link();
  api_->Start();
  absl::Notification answered;
  HttpResponse got;
  api_->Handle(Signed("GET", "/api/v1/changes?since=0&wait=30", token, secret),
               [&](HttpResponse r) {
                 got = std::move(r);
                 answered.Notify();
               });
  EXPECT_FALSE(answered.WaitForNotificationWithTimeout(absl::Milliseconds(500)));
  clock_.Advance(absl::Seconds(31));
  EXPECT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(got.status, 200) << got.body;
  // One more, then Stop: it is answered, not dropped.
  absl::Notification second;
  api_->Handle(Signed("GET", "/api/v1/changes?since=0&wait=30", token, secret),
               [&](const HttpResponse&) { second.Notify(); });
  api_->Stop();
  EXPECT_TRUE(second.HasBeenNotified());
}

}  // namespace
}  // namespace rwg::sync
