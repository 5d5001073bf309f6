// OttStore against a real redis-server.
#include "services/ott/store.h"

#include <gtest/gtest.h>

#include "tests/testing/scratch_redis.h"

namespace rwg::ott {
namespace {

class FixedClock final : public core::Clock {
 public:
  absl::Time Now() const override { return t; }
  absl::Time t = absl::FromUnixSeconds(1700000000);
};

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    store_ = std::make_unique<OttStore>(redis_->client(), clock_, core::Random::System());
  }
  static pb::Domain Portal() {
    pb::Domain d;
    d.set_fqdn("portal.example.com");
    d.set_service(pb::SERVICE_USER_PORTAL);
    d.mutable_backend()->set_host("manager.lan");
    d.mutable_backend()->set_port(8080);
    d.set_enabled(true);
    return d;
  }
  std::unique_ptr<testing::ScratchRedis> redis_;
  FixedClock clock_;
  std::unique_ptr<OttStore> store_;
};

TEST_F(StoreTest, DomainsAddListUpdateDelete) {
  EXPECT_EQ(*store_->Version(), 0);
  ASSERT_TRUE(store_->AddDomain(Portal()).ok());
  EXPECT_EQ(store_->AddDomain(Portal()).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*store_->Version(), 1);
  pb::Domain d = Portal();
  d.set_enabled(false);
  ASSERT_TRUE(store_->PutDomain(d).ok());
  auto list = store_->ListDomains();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_FALSE((*list)[0].enabled());
  EXPECT_EQ((*list)[0].backend().port(), 8080u);
  d.set_fqdn("other.example.com");
  EXPECT_EQ(store_->PutDomain(d).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(*store_->DeleteDomain("portal.example.com"));
  EXPECT_FALSE(*store_->DeleteDomain("portal.example.com"));
  EXPECT_EQ(*store_->Version(), 3);
  // Nothing left but the version.
  EXPECT_EQ(*redis_->Keys(), std::vector<std::string>{kVersionKey});
}

TEST_F(StoreTest, TheDomainListIsBounded) {
  for (size_t i = 0; i < kMaxDomains; ++i) {
    pb::Domain d = Portal();
    d.set_fqdn("d" + std::to_string(i) + ".example.com");
    ASSERT_TRUE(store_->AddDomain(d).ok()) << i;
  }
  EXPECT_EQ(store_->AddDomain(Portal()).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(StoreTest, ValidateDomainNamesTheField) {
  auto message = [](const pb::Domain& d) { return std::string(ValidateDomain(d).message()); };
  EXPECT_TRUE(ValidateDomain(Portal()).ok());
  pb::Domain d = Portal();
  d.set_fqdn("Portal.example.com");
  EXPECT_NE(message(d).find("fqdn"), std::string::npos);
  d.set_fqdn("portal");
  EXPECT_NE(message(d).find("fqdn"), std::string::npos);
  d.set_fqdn("-x.example.com");
  EXPECT_NE(message(d).find("fqdn"), std::string::npos);
  d = Portal();
  d.set_service(pb::SERVICE_UNSPECIFIED);
  EXPECT_NE(message(d).find("service"), std::string::npos);
  d = Portal();
  d.mutable_backend()->set_host("bad host");
  EXPECT_NE(message(d).find("backend.host"), std::string::npos);
  d = Portal();
  d.mutable_backend()->set_port(70000);
  EXPECT_NE(message(d).find("backend.port"), std::string::npos);
  d = Portal();
  d.mutable_backend()->set_tls(true);
  d.mutable_backend()->set_ca_file("/nonexistent/ca.pem");
  EXPECT_NE(message(d).find("backend.ca_file"), std::string::npos);
  d = Portal();
  d.mutable_paths()->add_admin("admin/");
  EXPECT_NE(message(d).find("paths.admin"), std::string::npos);
  d = Portal();
  d.mutable_backend()->set_host("fd00::1");
  EXPECT_TRUE(ValidateDomain(d).ok());
}

TEST_F(StoreTest, AccountsNeverShowTheirPassword) {
  auto a = store_->AddAccount("alice", "correct horse battery", true);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->password().empty());
  EXPECT_EQ(store_->AddAccount("alice", "correct horse battery", true).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->AddAccount("bob", "short", true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->AddAccount("b b", "long enough password", true).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto list = store_->ListAccounts();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE((*list)[0].password().empty());
  // At rest, a scrypt hash, not the password.
  auto raw = redis_->client().Command({"HGET", kAccountsKey, "alice"});
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->str.find("correct horse"), std::string::npos);
  EXPECT_NE(raw->str.find("scrypt$"), std::string::npos);
}

TEST_F(StoreTest, LoginLocksAfterFailuresAndUnlockLiftsIt) {
  ASSERT_TRUE(store_->AddAccount("alice", "correct horse battery", true).ok());
  LoginPolicy p;
  p.failures = 3;
  EXPECT_EQ(*store_->Login("alice", "correct horse battery", p), LoginResult::kOk);
  EXPECT_EQ(*store_->Login("alice", "wrong", p), LoginResult::kBadCredentials);
  EXPECT_EQ(*store_->Login("alice", "wrong", p), LoginResult::kBadCredentials);
  EXPECT_EQ(*store_->Login("alice", "wrong", p), LoginResult::kLocked);
  // Locked: the right password is refused too.
  EXPECT_EQ(*store_->Login("alice", "correct horse battery", p), LoginResult::kLocked);
  auto list = store_->ListAccounts();
  ASSERT_TRUE(list.ok());
  EXPECT_GT((*list)[0].locked_until_unix(), 0);
  EXPECT_EQ((*list)[0].last_login_unix(), 1700000000);
  ASSERT_TRUE(store_->UpdateAccount("alice", std::nullopt, std::nullopt, true).ok());
  EXPECT_EQ(*store_->Login("alice", "correct horse battery", p), LoginResult::kOk);
  // A success resets the count.
  EXPECT_EQ(*store_->Login("alice", "wrong", p), LoginResult::kBadCredentials);
  EXPECT_EQ(*store_->Login("alice", "correct horse battery", p), LoginResult::kOk);
  EXPECT_EQ(*store_->Login("alice", "wrong", p), LoginResult::kBadCredentials);
  EXPECT_EQ(*store_->Login("alice", "wrong", p), LoginResult::kBadCredentials);
  EXPECT_EQ(*store_->Login("alice", "correct horse battery", p), LoginResult::kOk);
}

TEST_F(StoreTest, UnknownAndDisabledAccounts) {
  LoginPolicy p;
  EXPECT_EQ(*store_->Login("nobody", "whatever password", p), LoginResult::kBadCredentials);
  EXPECT_EQ(*store_->Login(std::string(500, 'x'), "x", p), LoginResult::kBadCredentials);
  // Unknown names leave no counter behind (the table is bounded by the accounts).
  EXPECT_TRUE(redis_->Keys()->empty());
  ASSERT_TRUE(store_->AddAccount("bob", "correct horse battery", false).ok());
  EXPECT_EQ(*store_->Login("bob", "correct horse battery", p), LoginResult::kDisabled);
  ASSERT_TRUE(store_->UpdateAccount("bob", std::nullopt, true, false).ok());
  EXPECT_EQ(*store_->Login("bob", "correct horse battery", p), LoginResult::kOk);
  ASSERT_TRUE(
      store_->UpdateAccount("bob", std::string("another long password"), std::nullopt, false).ok());
  EXPECT_EQ(*store_->Login("bob", "correct horse battery", p), LoginResult::kBadCredentials);
  EXPECT_EQ(*store_->Login("bob", "another long password", p), LoginResult::kOk);
  EXPECT_EQ(store_->UpdateAccount("carol", std::nullopt, true, false).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(*store_->DeleteAccount("bob"));
  EXPECT_EQ(*redis_->Keys(), std::vector<std::string>{kVersionKey});
}

TEST_F(StoreTest, Sessions) {
  auto cookie = store_->CreateSession("alice", absl::Hours(1));
  ASSERT_TRUE(cookie.ok());
  EXPECT_EQ(cookie->size(), 64u);
  EXPECT_EQ(**store_->SessionAccount(*cookie), "alice");
  // Redis holds the cookie's digest, never the cookie.
  const std::vector<std::string> keys = *redis_->Keys();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].find(*cookie), std::string::npos);
  auto ttl = redis_->client().Command({"TTL", keys[0]});
  EXPECT_GT(ttl->integer, 3500);
  EXPECT_FALSE(store_->SessionAccount("x")->has_value());
  EXPECT_FALSE(store_->SessionAccount(std::string(64, 'g'))->has_value());
  EXPECT_FALSE(store_->SessionAccount(std::string(64, 'a'))->has_value());
  ASSERT_TRUE(store_->DeleteSession(*cookie).ok());
  EXPECT_FALSE(store_->SessionAccount(*cookie)->has_value());
  EXPECT_TRUE(redis_->Keys()->empty());
}

}  // namespace
}  // namespace rwg::ott
