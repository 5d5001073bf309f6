// Change callbacks: the back-off, the notice and its signature (checked with oauth1.h's
// VerifySignature, as the iPBX would), and delivery against a private redis-server with a
// stand-in poster: no backlog when the URL is set, only password changes sent, failures
// counted and retried after the back-off, the delivered revision moved on by a 2xx, a trimmed
// log skipped and said so, disabled consumers left alone, another instance's lock respected.
#include "services/sync/callbacks.h"

#include <gtest/gtest.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/keys.h"
#include "services/sync/oauth1.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::sync {
namespace {

TEST(CallbackBackoffTest, OneSecondDoublingToFiveMinutes) {
  EXPECT_EQ(CallbackBackoff(1), absl::Seconds(1));
  EXPECT_EQ(CallbackBackoff(2), absl::Seconds(2));
  EXPECT_EQ(CallbackBackoff(3), absl::Seconds(4));
  EXPECT_EQ(CallbackBackoff(9), absl::Seconds(256));
  EXPECT_EQ(CallbackBackoff(10), absl::Minutes(5));
  EXPECT_EQ(CallbackBackoff(1000), absl::Minutes(5));
}

core::SyncConsumer Consumer(const std::string& url) {
  core::SyncConsumer c;
  c.name = "pbx1";
  c.id = "MiVOAppSuite";
  c.secret = "s3cr3t&with/odd=chars";
  c.callback_url = url;
  return c;
}

TEST(SignedNoticeTest, TheIpbxVerifiesItWithTheConsumerSecret) {
  const core::SyncConsumer c = Consumer("https://ipbx.example:8443/rwg/notify?site=a%20b");
  absl::StatusOr<core::HttpsUrl> url = core::ParseSyncCallbackUrl(c.callback_url);
  ASSERT_TRUE(url.ok()) << url.status();
  core::DeviceChange ch{42, "updated", "alice+1@x", true};
  CallbackRequest n = SignedNotice(c, *url, ch, absl::FromUnixSeconds(1'800'000'000), "n0nce");
  EXPECT_EQ(n.body, "op=updated&set_username=alice%2B1%40x&revision=42");
  EXPECT_TRUE(absl::StartsWith(n.authorization, "OAuth ")) << n.authorization;
  EXPECT_FALSE(absl::StrContains(n.authorization, "oauth_token=")) << "two-legged";

  SignedRequest r;
  r.method = "POST";
  r.scheme = "https";
  r.host = "ipbx.example:8443";
  r.path = "/rwg/notify";
  r.query = "site=a%20b";
  r.authorization = n.authorization;
  r.form_body = n.body;
  absl::StatusOr<Parameters> p = CollectParameters(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->oauth.at("oauth_consumer_key"), "MiVOAppSuite");
  EXPECT_EQ(p->oauth.at("oauth_timestamp"), "1800000000");
  EXPECT_EQ(p->oauth.at("oauth_signature_method"), "HMAC-SHA1");
  EXPECT_TRUE(VerifySignature(r, *p, c.secret, "").ok());
  EXPECT_FALSE(VerifySignature(r, *p, "another secret", "").ok());
  r.form_body = "op=updated&set_username=mallory&revision=42";
  p = CollectParameters(r);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(VerifySignature(r, *p, c.secret, "").ok()) << "the body is covered";
}

TEST(CallbackUrlTest, HttpsOnlyWithAHostAPortAndAPath) {
  absl::StatusOr<core::HttpsUrl> u = core::ParseSyncCallbackUrl("https://[2001:db8::1]:444");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "2001:db8::1");
  EXPECT_EQ(u->port, 444);
  EXPECT_EQ(u->target, "/");
  u = core::ParseSyncCallbackUrl("https://127.0.0.1/x?y=1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/x?y=1");
  for (const std::string bad :
       {"http://ipbx/x", "ftp://ipbx", "https://", "https://:443/", "https://ipbx:0/",
        "https://ipbx:65536/", "https://user:pw@ipbx/", "https://ipbx/a b", "https://ipbx/#f",
        "https://ip_bx/", "https://[::1/"}) {
    EXPECT_FALSE(core::ParseSyncCallbackUrl(bad).ok()) << bad;
  }
  EXPECT_TRUE(core::ParseSyncCallbackUrl("https://ipbx/" + std::string(499, 'a')).ok());
  absl::StatusOr<core::HttpsUrl> big =
      core::ParseSyncCallbackUrl("https://ipbx/" + std::string(500, 'a'));
  ASSERT_FALSE(big.ok());
  EXPECT_TRUE(absl::StrContains(big.status().message(), "at most 512")) << big.status();
}

// Answers from a script: a status per call (0: the connection refused; 200 once the script is
// empty), recording what it was sent.
class ScriptedPoster final : public CallbackPoster {
 public:
  absl::StatusOr<int> Post(const CallbackRequest& r) override {
    sent.push_back(r);
    if (answers.empty()) return 200;
    const int a = answers.front();
    answers.pop_front();
    if (a == 0) return absl::UnavailableError("connect: Connection refused");
    return a;
  }
  std::deque<int> answers;
  std::vector<CallbackRequest> sent;
};

class CallbackDelivererTest : public ::testing::Test {
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
    deliverer_ =
        std::make_unique<CallbackDeliverer>(CallbackOptions{}, redis_->client(), *box_, clock_,
                                            core::Random::System(), poster_, registry_);
  }

  // A device write as control's scripts log it: one revision, these changes.
  void Write(const std::vector<std::pair<std::string, bool>>& users) {
    const int64_t rev = redis_->client().Command({"INCR", core::kDevicesRevisionKey})->integer;
    for (const auto& [user, pw] : users) {
      nlohmann::json j = {{"rev", rev}, {"op", "updated"}, {"user", user}, {"pw", pw}};
      ASSERT_TRUE(redis_->client()
                      .Command({"ZADD", core::kDeviceChangesKey, std::to_string(rev), j.dump()})
                      .ok());
    }
  }

  core::SyncConsumer Add(const std::string& url) {
    core::SyncConsumer c = Consumer("");
    c.secret = "consumer-secret";
    EXPECT_TRUE(store_->AddConsumer(c).ok());
    EXPECT_TRUE(store_->SetConsumerCallback(c.name, url).ok());
    return **store_->ConsumerByName(c.name);
  }

  core::SyncCallbackStatus Status() {
    return *store_->CallbackStatus(**store_->ConsumerByName("pbx1"));
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<core::SecretBox> box_;
  std::unique_ptr<core::SyncStore> store_;
  core::ManualClock clock_;
  ScriptedPoster poster_;
  prometheus::Registry registry_;
  std::unique_ptr<CallbackDeliverer> deliverer_;
};

TEST_F(CallbackDelivererTest, RetriedWithBackoffThenDelivered) {
  Write({{"old", true}});  // before the URL: no backlog
  const core::SyncConsumer c = Add("https://127.0.0.1:9/notify");
  EXPECT_EQ(c.callback_from, 1);
  deliverer_->RunOnce();
  EXPECT_TRUE(poster_.sent.empty());

  Write({{"desc-only", false}});
  deliverer_->RunOnce();
  EXPECT_TRUE(poster_.sent.empty()) << "not a password change";
  EXPECT_EQ(Status().delivered_revision, 2);

  Write({{"alice", true}});
  poster_.answers = {503, 0};
  deliverer_->RunOnce();
  ASSERT_EQ(poster_.sent.size(), 1u);
  EXPECT_EQ(poster_.sent[0].body, "op=updated&set_username=alice&revision=3");
  core::SyncCallbackStatus st = Status();
  EXPECT_EQ(st.failures, 1);
  EXPECT_EQ(st.last_error, "HTTP 503");
  EXPECT_EQ(st.delivered_revision, 2);
  EXPECT_EQ(st.next_attempt, clock_.Now() + absl::Seconds(1));

  deliverer_->RunOnce();  // too early
  EXPECT_EQ(poster_.sent.size(), 1u);
  clock_.Advance(absl::Seconds(1));
  deliverer_->RunOnce();
  EXPECT_EQ(poster_.sent.size(), 2u);
  st = Status();
  EXPECT_EQ(st.failures, 2);
  EXPECT_EQ(st.last_error, "connect: Connection refused");
  EXPECT_EQ(st.next_attempt, clock_.Now() + absl::Seconds(2));

  clock_.Advance(absl::Seconds(2));
  deliverer_->RunOnce();
  EXPECT_EQ(poster_.sent.size(), 3u);
  st = Status();
  EXPECT_EQ(st.failures, 0);
  EXPECT_EQ(st.last_error, "");
  EXPECT_EQ(st.delivered_revision, 3);
  EXPECT_EQ(st.last_attempt, clock_.Now());

  deliverer_->RunOnce();
  EXPECT_EQ(poster_.sent.size(), 3u) << "delivered once";
}

TEST_F(CallbackDelivererTest, TrimmedLogSkippedAndSaid) {
  Add("https://127.0.0.1:9/notify");
  // Revisions 1 and 2 written, only 2's entry kept.
  ASSERT_TRUE(redis_->client().Command({"SET", core::kDevicesRevisionKey, "1"}).ok());
  Write({{"bob", true}});
  ASSERT_TRUE(redis_->client().Command({"SET", core::kDevicesRevisionKey, "5"}).ok());
  ASSERT_TRUE(redis_->client()
                  .Command({"ZADD", core::kDeviceChangesKey, "5",
                            R"({"rev":5,"op":"updated","user":"carol","pw":true})"})
                  .ok());
  ASSERT_TRUE(
      redis_->client().Command({"ZREMRANGEBYSCORE", core::kDeviceChangesKey, "2", "2"}).ok());
  deliverer_->RunOnce();
  EXPECT_TRUE(poster_.sent.empty());
  core::SyncCallbackStatus st = Status();
  EXPECT_EQ(st.delivered_revision, 5);
  EXPECT_TRUE(absl::StrContains(st.last_error, "trimmed")) << st.last_error;
}

TEST_F(CallbackDelivererTest, DisabledOrLockedConsumersWait) {
  Add("https://127.0.0.1:9/notify");
  Write({{"alice", true}});
  ASSERT_TRUE(store_->SetConsumerEnabled("pbx1", false).ok());
  deliverer_->RunOnce();
  EXPECT_TRUE(poster_.sent.empty());
  ASSERT_TRUE(store_->SetConsumerEnabled("pbx1", true).ok());
  ASSERT_TRUE(redis_->client()
                  .Command({"SET", core::SyncCallbackLockKey("pbx1"), "other", "PX", "60000"})
                  .ok());
  deliverer_->RunOnce();
  EXPECT_TRUE(poster_.sent.empty()) << "another instance holds the lock";
  ASSERT_TRUE(redis_->client().Command({"DEL", core::SyncCallbackLockKey("pbx1")}).ok());
  deliverer_->RunOnce();
  EXPECT_EQ(poster_.sent.size(), 1u);
  EXPECT_EQ(redis_->client().Command({"EXISTS", core::SyncCallbackLockKey("pbx1")})->integer, 0)
      << "released";
}

TEST_F(CallbackDelivererTest, SettingTheUrlAgainStartsAfresh) {
  Add("https://127.0.0.1:9/notify");
  Write({{"alice", true}});
  poster_.answers = {500};
  deliverer_->RunOnce();
  EXPECT_EQ(Status().failures, 1);
  ASSERT_TRUE(store_->SetConsumerCallback("pbx1", "https://127.0.0.1:10/other").ok());
  core::SyncCallbackStatus st = Status();
  EXPECT_EQ(st.failures, 0);
  EXPECT_EQ(st.delivered_revision, 1);
  ASSERT_TRUE(store_->SetConsumerCallback("pbx1", "").ok());
  EXPECT_EQ((*store_->ConsumerByName("pbx1"))->callback_url, "");
  EXPECT_FALSE(store_->SetConsumerCallback("pbx1", "http://127.0.0.1/").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->SetConsumerCallback("nobody", "")));
}

TEST_F(CallbackDelivererTest, NothingIsLeftOfADeletedConsumer) {
  const core::SyncConsumer c = Add("https://127.0.0.1:9/notify");
  Write({{"alice", true}});
  poster_.answers = {500};
  deliverer_->RunOnce();
  EXPECT_EQ(redis_->client().Command({"EXISTS", core::SyncCallbackKey("pbx1")})->integer, 1);
  ASSERT_TRUE(*store_->DeleteConsumer("pbx1"));
  EXPECT_EQ(redis_->client().Command({"EXISTS", core::SyncCallbackKey("pbx1")})->integer, 0);
  // A delivery round that read the consumer before it went writes nothing after.
  EXPECT_TRUE(store_->PutCallbackStatus(c, core::SyncCallbackStatus{}).ok());
  EXPECT_EQ(redis_->client().Command({"EXISTS", core::SyncCallbackKey("pbx1")})->integer, 0);
  // Nor for a URL that is not the consumer's any more.
  const core::SyncConsumer again = Add("https://127.0.0.1:9/notify");
  ASSERT_TRUE(store_->SetConsumerCallback("pbx1", "https://127.0.0.1:9/other").ok());
  EXPECT_TRUE(store_->PutCallbackStatus(again, core::SyncCallbackStatus{}).ok());
  EXPECT_EQ(redis_->client().Command({"EXISTS", core::SyncCallbackKey("pbx1")})->integer, 0);
}

}  // namespace
}  // namespace rwg::sync
