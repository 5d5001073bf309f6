// SyncStore (the sync API's consumers and tokens) against a private redis-server: consumers
// added, listed, enabled, reset and deleted with their tokens; the token's life (pending,
// approved or rejected, used by one exchange, active, renewed, revoked, expired); secrets
// sealed at rest; nothing left behind.
#include "services/core/sync_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/keys.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::core {
namespace {

using ::testing::HasSubstr;

class SyncStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    absl::StatusOr<std::unique_ptr<SecretBox>> box =
        SecretBox::Create(std::string(32, 'k'), Random::System());
    ASSERT_TRUE(box.ok());
    box_ = *std::move(box);
    store_ = std::make_unique<SyncStore>(redis_->client(), *box_);
  }

  static SyncConsumer Consumer(const std::string& name, const std::string& id = "") {
    SyncConsumer c;
    c.name = name;
    c.id = id.empty() ? name : id;
    c.secret = "consumer-secret-of-" + name;
    c.sources = {"192.0.2.10", "198.51.100.0/24"};
    c.created = absl::FromUnixSeconds(1'800'000'000);
    return c;
  }

  static SyncToken Temporary(const std::string& token, const std::string& consumer,
                             absl::Duration life = kSyncTemporaryTokenLife) {
    SyncToken t;
    t.token = token;
    t.secret = "token-secret-of-" + token;
    t.kind = SyncTokenKind::kTemporary;
    t.state = SyncTokenState::kPending;
    t.consumer = consumer;
    t.source = "192.0.2.10";
    t.created = absl::FromUnixMillis(absl::ToUnixMillis(absl::Now()));
    t.expires = t.created + life;
    return t;
  }

  static SyncToken Access(const std::string& token, const std::string& consumer) {
    SyncToken t = Temporary(token, consumer, kSyncAccessTokenLife);
    t.kind = SyncTokenKind::kAccess;
    t.state = SyncTokenState::kActive;
    return t;
  }

  SyncToken Get(const std::string& token) {
    absl::StatusOr<std::optional<SyncToken>> t = store_->GetToken(token);
    EXPECT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(t.ok() && t->has_value()) << token;
    return t.ok() && t->has_value() ? **t : SyncToken{};
  }

  // An access token of `consumer` made through the whole three-legged sequence.
  void Link(const std::string& consumer, const std::string& temporary, const std::string& access) {
    ASSERT_TRUE(store_->PutToken(Temporary(temporary, consumer)).ok());
    ASSERT_TRUE(store_->ApproveToken(temporary, "VERIFIER22").ok());
    ASSERT_TRUE(store_->ExchangeToken(Get(temporary), Access(access, consumer)).ok());
  }

  std::vector<std::string> Keys() {
    absl::StatusOr<std::vector<std::string>> k = redis_->Keys();
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? *k : std::vector<std::string>{};
  }

  std::string Raw(const std::vector<std::string>& command) {
    absl::StatusOr<RedisReply> r = redis_->client().Command(command);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->str : "";
  }

  int64_t Integer(const std::vector<std::string>& command) {
    absl::StatusOr<RedisReply> r = redis_->client().Command(command);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->integer : -1;
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<SecretBox> box_;
  std::unique_ptr<SyncStore> store_;
};

TEST_F(SyncStoreTest, ConsumersAreAddedListedAndFoundByNameAndId) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx2", "MiVOAppSuite")).ok());
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  absl::StatusOr<std::vector<SyncConsumer>> all = store_->ListConsumers();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "pbx1");
  EXPECT_EQ((*all)[1].name, "pbx2");
  EXPECT_EQ((*all)[1].id, "MiVOAppSuite");
  EXPECT_EQ((*all)[1].secret, "consumer-secret-of-pbx2");
  EXPECT_TRUE((*all)[1].enabled);
  EXPECT_EQ((*all)[1].sources, (std::vector<std::string>{"192.0.2.10", "198.51.100.0/24"}));
  EXPECT_EQ((*all)[1].created, absl::FromUnixSeconds(1'800'000'000));

  absl::StatusOr<std::optional<SyncConsumer>> by_id = store_->ConsumerById("MiVOAppSuite");
  ASSERT_TRUE(by_id.ok() && by_id->has_value()) << by_id.status();
  EXPECT_EQ((*by_id)->name, "pbx2");
  absl::StatusOr<std::optional<SyncConsumer>> none = store_->ConsumerById("pbx3");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  absl::StatusOr<std::optional<SyncConsumer>> by_name = store_->ConsumerByName("pbx1");
  ASSERT_TRUE(by_name.ok() && by_name->has_value());
  EXPECT_EQ((*by_name)->id, "pbx1");
}

TEST_F(SyncStoreTest, ANameOrIdInUseIsRefusedNamingTheField) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1", "MiVOAppSuite")).ok());
  absl::Status s = store_->AddConsumer(Consumer("pbx1", "other"));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(s.message()), HasSubstr("name:"));
  s = store_->AddConsumer(Consumer("pbx2", "MiVOAppSuite"));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(s.message()), HasSubstr("id:"));
  EXPECT_EQ(Integer({"HLEN", kSyncConsumersKey}), 1);
  EXPECT_EQ(Integer({"HLEN", kSyncConsumersByIdKey}), 1);
}

TEST_F(SyncStoreTest, AtMost64Consumers) {
  for (size_t i = 0; i < kSyncConsumersMax; ++i) {
    ASSERT_TRUE(store_->AddConsumer(Consumer(absl::StrCat("pbx", i))).ok()) << i;
  }
  absl::Status s = store_->AddConsumer(Consumer("one-too-many"));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(Integer({"HLEN", kSyncConsumersKey}), 64);
}

TEST_F(SyncStoreTest, AnIdOf40CharactersIsAcceptedAndOneOf41Refused) {
  const std::string id40(40, 'A');
  ASSERT_TRUE(store_->AddConsumer(Consumer("forty", id40)).ok());
  absl::StatusOr<std::optional<SyncConsumer>> c = store_->ConsumerById(id40);
  ASSERT_TRUE(c.ok() && c->has_value());
  absl::Status s = store_->AddConsumer(Consumer("forty-one", std::string(41, 'A')));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("id: 41 characters, at most 40"));
}

TEST_F(SyncStoreTest, ValidationNamesTheField) {
  auto field = [](SyncConsumer c) {
    absl::Status s = ValidateSyncConsumer(c);
    return s.ok() ? std::string("ok") : std::string(s.message().substr(0, s.message().find(':')));
  };
  EXPECT_EQ(field(Consumer("pbx1", "MiVO!App#Suite~")), "ok");
  EXPECT_EQ(field(Consumer("pb x")), "name");
  EXPECT_EQ(field(Consumer(std::string(65, 'a'))), "name");
  EXPECT_EQ(field(Consumer("pbx1", "has space")), "id");
  EXPECT_EQ(field(Consumer("pbx1", "caf\xc3\xa9")), "id");
  SyncConsumer no_secret = Consumer("pbx1");
  no_secret.secret.clear();
  EXPECT_EQ(field(no_secret), "secret");
  SyncConsumer long_secret = Consumer("pbx1");
  long_secret.secret = std::string(41, 's');
  EXPECT_EQ(field(long_secret), "secret");
  for (const char* bad : {"192.0.2.300", "192.0.2.0/33", "2001:db8::/129", "host.example",
                          "192.0.2.0/", "192.0.2.0/-1",
                          // host bits beyond the prefix: the service would never match it
                          "192.0.2.1/24"}) {
    SyncConsumer c = Consumer("pbx1");
    c.sources = {bad};
    EXPECT_EQ(field(c), "sources") << bad;
  }
  SyncConsumer v6 = Consumer("pbx1");
  v6.sources = {"2001:db8::/32", "2001:db8::1"};
  EXPECT_EQ(field(v6), "ok");
}

TEST_F(SyncStoreTest, EnableAndDisable) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->SetConsumerEnabled("pbx1", false).ok());
  absl::StatusOr<std::optional<SyncConsumer>> c = store_->ConsumerByName("pbx1");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_FALSE((*c)->enabled);
  EXPECT_EQ((*c)->secret, "consumer-secret-of-pbx1");
  ASSERT_TRUE(store_->SetConsumerEnabled("pbx1", true).ok());
  c = store_->ConsumerByName("pbx1");
  EXPECT_TRUE((*c)->enabled);
  EXPECT_EQ(store_->SetConsumerEnabled("pbx9", true).code(), absl::StatusCode::kNotFound);
}

TEST_F(SyncStoreTest, ResetChangesTheSecretAndRevokesEveryTokenOfTheConsumer) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx2")).ok());
  Link("pbx1", "t1", "a1");
  ASSERT_TRUE(store_->PutToken(Temporary("t2", "pbx1")).ok());
  Link("pbx2", "t3", "a3");

  absl::StatusOr<int> revoked = store_->ResetConsumer("pbx1", "a-new-secret");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(*revoked, 2);  // a1 and t2 (t1 was used already)
  EXPECT_EQ(Get("a1").state, SyncTokenState::kRevoked);
  EXPECT_EQ(Get("t2").state, SyncTokenState::kRevoked);
  EXPECT_EQ(Get("t1").state, SyncTokenState::kUsed);
  EXPECT_EQ(Get("a3").state, SyncTokenState::kActive) << "another consumer's token";
  EXPECT_EQ(Get("a1").secret, "token-secret-of-a1") << "kept readable";
  absl::StatusOr<std::optional<SyncConsumer>> c = store_->ConsumerByName("pbx1");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->secret, "a-new-secret");
  EXPECT_GT(Integer({"PTTL", SyncTokenKey("a1")}), 0) << "kept until it would have expired";

  EXPECT_EQ(store_->ResetConsumer("pbx9", "x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ResetConsumer("pbx1", "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SyncStoreTest, DeleteRemovesTheConsumerItsTokensAndIndexes) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1", "MiVOAppSuite")).ok());
  Link("pbx1", "t1", "a1");
  ASSERT_TRUE(store_->PutToken(Temporary("t2", "pbx1")).ok());
  absl::StatusOr<bool> deleted = store_->DeleteConsumer("pbx1");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  EXPECT_EQ(Keys(), std::vector<std::string>{});
  deleted = store_->DeleteConsumer("pbx1");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
  // Its id is free again; a token for a consumer that is gone is refused.
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx2", "MiVOAppSuite")).ok());
  EXPECT_EQ(store_->PutToken(Temporary("t3", "pbx1")).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SyncStoreTest, DeleteKeepsOtherConsumersTokens) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx2")).ok());
  Link("pbx1", "t1", "a1");
  Link("pbx2", "t2", "a2");
  ASSERT_TRUE(store_->DeleteConsumer("pbx1").ok());
  EXPECT_EQ(Keys(),
            (std::vector<std::string>{kSyncConsumersKey, kSyncConsumersByIdKey, SyncTokenKey("a2"),
                                      SyncTokenKey("t2"), kSyncTokensKey}));
  EXPECT_EQ(Integer({"ZCARD", kSyncTokensKey}), 2);
}

TEST_F(SyncStoreTest, ApproveRejectAndTheirStateErrors) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("t1", "pbx1")).ok());
  EXPECT_EQ(store_->PutToken(Temporary("t1", "pbx1")).code(), absl::StatusCode::kAlreadyExists);
  SyncToken t = Get("t1");
  EXPECT_EQ(t.state, SyncTokenState::kPending);
  EXPECT_EQ(t.secret, "token-secret-of-t1");
  EXPECT_EQ(t.source, "192.0.2.10");
  EXPECT_EQ(t.consumer, "pbx1");

  ASSERT_TRUE(store_->ApproveToken("t1", "VERIFIER22").ok());
  t = Get("t1");
  EXPECT_EQ(t.state, SyncTokenState::kApproved);
  EXPECT_EQ(t.verifier, "VERIFIER22");
  absl::Status again = store_->ApproveToken("t1", "OTHER");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.message()), HasSubstr("approved"));
  ASSERT_TRUE(store_->RejectToken("t1").ok());
  EXPECT_EQ(Get("t1").state, SyncTokenState::kRejected);
  EXPECT_EQ(store_->RejectToken("t1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ApproveToken("t1", "V").code(), absl::StatusCode::kFailedPrecondition);

  EXPECT_EQ(store_->ApproveToken("nope", "V").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->RejectToken("nope").code(), absl::StatusCode::kNotFound);
  Link("pbx1", "t2", "a2");
  EXPECT_EQ(store_->ApproveToken("a2", "V").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->RejectToken("a2").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SyncStoreTest, FiveWrongVerifiersVoidTheToken) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("t1", "pbx1")).ok());
  EXPECT_EQ(store_->CountVerifierFailure("t1").status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "not approved yet";
  ASSERT_TRUE(store_->ApproveToken("t1", "VERIFIER22").ok());
  for (int i = 1; i < kSyncVerifierAttempts; ++i) {
    absl::StatusOr<int> n = store_->CountVerifierFailure("t1");
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, i);
    EXPECT_EQ(Get("t1").state, SyncTokenState::kApproved);
  }
  absl::StatusOr<int> n = store_->CountVerifierFailure("t1");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, kSyncVerifierAttempts);
  EXPECT_EQ(Get("t1").state, SyncTokenState::kRejected);
  EXPECT_EQ(store_->ExchangeToken(Get("t1"), Access("a1", "pbx1")).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Integer({"EXISTS", SyncTokenKey("a1")}), 0);
}

TEST_F(SyncStoreTest, TheExchangeWorksOnce) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("t1", "pbx1")).ok());
  EXPECT_EQ(store_->ExchangeToken(Get("t1"), Access("a1", "pbx1")).code(),
            absl::StatusCode::kFailedPrecondition)
      << "pending, not approved";
  ASSERT_TRUE(store_->ApproveToken("t1", "VERIFIER22").ok());
  const SyncToken approved = Get("t1");
  ASSERT_TRUE(store_->ExchangeToken(approved, Access("a1", "pbx1")).ok());
  SyncToken used = Get("t1");
  EXPECT_EQ(used.state, SyncTokenState::kUsed);
  EXPECT_EQ(used.access_token, "a1");
  SyncToken a = Get("a1");
  EXPECT_EQ(a.kind, SyncTokenKind::kAccess);
  EXPECT_EQ(a.state, SyncTokenState::kActive);
  EXPECT_EQ(a.secret, "token-secret-of-a1");

  // The same temporary token (as read before the first exchange) cannot be exchanged again.
  absl::Status second = store_->ExchangeToken(approved, Access("a2", "pbx1"));
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition) << second;
  EXPECT_EQ(Integer({"EXISTS", SyncTokenKey("a2")}), 0);
}

TEST_F(SyncStoreTest, ConcurrentExchangesOfOneTokenMakeOneAccessToken) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("t1", "pbx1")).ok());
  ASSERT_TRUE(store_->ApproveToken("t1", "VERIFIER22").ok());
  const SyncToken approved = Get("t1");
  std::vector<absl::Status> results(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] = store_->ExchangeToken(approved, Access(absl::StrCat("a", i), "pbx1"));
    });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0;
  for (const absl::Status& s : results) {
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    }
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(Integer({"ZCARD", kSyncTokensKey}), 2);
}

TEST_F(SyncStoreTest, AVerifierFailureCountedMeanwhileStopsTheExchange) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("t1", "pbx1")).ok());
  ASSERT_TRUE(store_->ApproveToken("t1", "VERIFIER22").ok());
  const SyncToken read = Get("t1");
  ASSERT_TRUE(store_->CountVerifierFailure("t1").ok());
  EXPECT_EQ(store_->ExchangeToken(read, Access("a1", "pbx1")).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SyncStoreTest, RenewMovesTheExpiryOfAnActiveAccessToken) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  Link("pbx1", "t1", "a1");
  const absl::Time later = absl::FromUnixMillis(absl::ToUnixMillis(absl::Now())) +
                           kSyncAccessTokenLife + absl::Hours(24 * 30);
  ASSERT_TRUE(store_->RenewToken("a1", later).ok());
  EXPECT_EQ(Get("a1").expires, later);
  const int64_t pttl = Integer({"PTTL", SyncTokenKey("a1")});
  EXPECT_GT(pttl, absl::ToInt64Milliseconds(kSyncAccessTokenLife + absl::Hours(24 * 29)));
  absl::StatusOr<RedisReply> score = redis_->client().Command({"ZSCORE", kSyncTokensKey, "a1"});
  ASSERT_TRUE(score.ok());
  EXPECT_EQ(score->str.substr(0, score->str.find('.')), std::to_string(absl::ToUnixSeconds(later)));
  EXPECT_EQ(store_->RenewToken("t1", later).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->RenewToken("nope", later).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->RevokeToken("a1").ok());
  EXPECT_EQ(store_->RenewToken("a1", later).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SyncStoreTest, RevokeKeepsTheTokenUntilItsExpiry) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  Link("pbx1", "t1", "a1");
  ASSERT_TRUE(store_->RevokeToken("a1").ok());
  EXPECT_EQ(Get("a1").state, SyncTokenState::kRevoked);
  EXPECT_GT(Integer({"PTTL", SyncTokenKey("a1")}),
            absl::ToInt64Milliseconds(kSyncAccessTokenLife - absl::Hours(1)));
  ASSERT_TRUE(store_->RevokeToken("t1").ok());
  EXPECT_EQ(store_->RevokeToken("nope").code(), absl::StatusCode::kNotFound);
}

TEST_F(SyncStoreTest, TokensExpireWithTheirExpiryAndLeaveTheList) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("long", "pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("short", "pbx1", absl::Milliseconds(300))).ok());
  const int64_t pttl = Integer({"PTTL", SyncTokenKey("long")});
  EXPECT_GT(pttl, absl::ToInt64Milliseconds(kSyncTemporaryTokenLife - absl::Minutes(1)));
  EXPECT_LE(pttl, absl::ToInt64Milliseconds(kSyncTemporaryTokenLife));
  // Redis expires the short one by its own clock: wait for it (bounded), no fixed sleep.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Integer({"EXISTS", SyncTokenKey("short")}) == 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::StatusOr<std::optional<SyncToken>> gone = store_->GetToken("short");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ(store_->ApproveToken("short", "V").code(), absl::StatusCode::kNotFound);
  // Listing prunes it from the zset too.
  absl::StatusOr<std::vector<SyncToken>> list = store_->ListTokens();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].token, "long");
  EXPECT_EQ(Integer({"ZCARD", kSyncTokensKey}), 1);
  // A token already expired is never stored.
  SyncToken old = Temporary("old", "pbx1");
  old.expires = absl::Now() - absl::Seconds(1);
  ASSERT_TRUE(store_->PutToken(old).ok());
  EXPECT_EQ(Integer({"EXISTS", SyncTokenKey("old")}), 0);
  EXPECT_EQ(Integer({"ZSCORE", kSyncTokensKey, "old"}), 0);
}

TEST_F(SyncStoreTest, ListTokensIsNewestFirst) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  SyncToken a = Temporary("a", "pbx1");
  SyncToken b = Temporary("b", "pbx1");
  b.created = a.created + absl::Seconds(5);
  ASSERT_TRUE(store_->PutToken(a).ok());
  ASSERT_TRUE(store_->PutToken(b).ok());
  absl::StatusOr<std::vector<SyncToken>> list = store_->ListTokens();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].token, "b");
  EXPECT_EQ((*list)[1].token, "a");
}

TEST_F(SyncStoreTest, SecretsAreNotInClearInRedisAndAreBoundToTheirRecord) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx2")).ok());
  Link("pbx1", "t1", "a1");
  ASSERT_TRUE(store_->PutToken(Temporary("t2", "pbx1")).ok());
  ASSERT_TRUE(store_->ApproveToken("t2", "VERIFIER99").ok());
  std::string everything;
  for (const std::string& k : Keys()) {
    absl::StatusOr<RedisReply> r = redis_->client().Command({"DUMP", k});
    ASSERT_TRUE(r.ok());
    everything += r->str;
  }
  for (const char* secret : {"consumer-secret-of-pbx1", "token-secret-of-t1", "token-secret-of-a1",
                             "VERIFIER22", "VERIFIER99"}) {
    EXPECT_FALSE(absl::StrContains(everything, secret)) << secret;
  }
  // A sealed secret copied into another record does not open there.
  const nlohmann::json pbx1 = nlohmann::json::parse(Raw({"HGET", kSyncConsumersKey, "pbx1"}));
  nlohmann::json pbx2 = nlohmann::json::parse(Raw({"HGET", kSyncConsumersKey, "pbx2"}));
  pbx2["secret"] = pbx1["secret"];
  Raw({"HSET", kSyncConsumersKey, "pbx2", pbx2.dump()});
  absl::StatusOr<std::optional<SyncConsumer>> c = store_->ConsumerByName("pbx2");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("secret"));
}

TEST_F(SyncStoreTest, DamagedRecordsAreDataLossNamingTheField) {
  ASSERT_TRUE(store_->AddConsumer(Consumer("pbx1")).ok());
  ASSERT_TRUE(store_->PutToken(Temporary("t1", "pbx1")).ok());
  Raw({"HSET", kSyncConsumersKey, "bad", "{\"name\":\"bad\",\"enabled\":\"yes\"}"});
  absl::StatusOr<std::optional<SyncConsumer>> c = store_->ConsumerByName("bad");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("enabled"));
  Raw({"HSET", kSyncConsumersKey, "bad", "not json"});
  EXPECT_EQ(store_->ConsumerByName("bad").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->ListConsumers().status().code(), absl::StatusCode::kDataLoss);

  Raw({"SET", SyncTokenKey("t9"), "{\"token\":\"t9\",\"kind\":\"temporary\",\"state\":\"odd\"}"});
  absl::StatusOr<std::optional<SyncToken>> t = store_->GetToken("t9");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("state"));
  Raw({"SET", SyncTokenKey("t9"), "{\"token\":\"t9\",\"expires_ms\":[]}"});
  t = store_->GetToken("t9");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("expires_ms"));
  Raw({"SET", SyncTokenKey("t9"), "[1,2]"});
  EXPECT_EQ(store_->GetToken("t9").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->RevokeToken("t9").code(), absl::StatusCode::kDataLoss);
}

TEST_F(SyncStoreTest, RedisGoneIsUnavailable) {
  redis_->Kill();
  EXPECT_EQ(store_->AddConsumer(Consumer("pbx1")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_->GetToken("t1").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_->ListTokens().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace rwg::core
