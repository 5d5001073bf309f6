// BindingStore (registrations in Redis) against a private redis-server: licences counted by
// reservation, bindings and their ICP index written and removed together, nothing left behind.
#include "services/core/registrations.h"

#include <gtest/gtest.h>

#include "services/core/keys.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::core {
namespace {

class BindingStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    store_ = std::make_unique<BindingStore>(redis_->client());
  }

  Binding MakeBinding(const std::string& user, const std::string& icp, absl::Duration left) {
    Binding b;
    b.set_username = user;
    b.icp_username = icp;
    b.contacts = {"<sip:" + user + "@198.51.100.7:5061;transport=tls>"};
    b.source = "198.51.100.7:40000";
    b.transport = "tls";
    b.instance = "sip-edge-0";
    b.connection = "c1";
    b.since = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
    b.expires_at = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now() + left));
    return b;
  }

  std::vector<std::string> Keys() {
    absl::StatusOr<std::vector<std::string>> k = redis_->Keys();
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? *k : std::vector<std::string>{};
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<BindingStore> store_;
};

TEST_F(BindingStoreTest, ReservationsCountLicencesUpToTheLimit) {
  const absl::Time now = absl::Now();
  const absl::Time hold = now + absl::Seconds(30);
  auto reserve = [&](const std::string& user) {
    absl::StatusOr<BindingStore::Reserved> r = store_->Reserve(user, 2, now, hold);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->reservation : BindingStore::Reservation::kRefused;
  };
  EXPECT_EQ(reserve("1001"), BindingStore::Reservation::kNew);
  EXPECT_EQ(reserve("1001"), BindingStore::Reservation::kExisting);  // counted once
  EXPECT_EQ(reserve("1002"), BindingStore::Reservation::kNew);
  EXPECT_EQ(reserve("1003"), BindingStore::Reservation::kRefused);  // two licences
  ASSERT_TRUE(store_->Release("1002").ok());
  EXPECT_EQ(reserve("1003"), BindingStore::Reservation::kNew);
}

TEST_F(BindingStoreTest, AnExpiredReservationFreesItsLicence) {
  const absl::Time now = absl::Now();
  ASSERT_EQ(store_->Reserve("1001", 1, now, now + absl::Seconds(1))->reservation,
            BindingStore::Reservation::kNew);
  // Two seconds later the first reservation has lapsed (no REGISTER completed it).
  const absl::Time later = now + absl::Seconds(2);
  absl::StatusOr<BindingStore::Reserved> r =
      store_->Reserve("1002", 1, later, later + absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->reservation, BindingStore::Reservation::kNew);
}

TEST_F(BindingStoreTest, ABindingReadsBackByBothNamesAndIsListedWhileActive) {
  const Binding b = MakeBinding("1001", "21001", absl::Minutes(10));
  ASSERT_TRUE(store_->Put(b).ok());
  absl::StatusOr<std::optional<Binding>> got = store_->Get("1001");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->icp_username, "21001");
  EXPECT_EQ((*got)->contacts, b.contacts);
  EXPECT_EQ((*got)->expires_at, b.expires_at);
  EXPECT_EQ(*store_->SetUsernameForIcp("21001"), std::optional<std::string>("1001"));
  EXPECT_EQ(*store_->CountActive(absl::Now()), 1);

  ASSERT_TRUE(store_->Put(MakeBinding("1000", "21000", absl::Minutes(5))).ok());
  absl::StatusOr<std::vector<Binding>> list = store_->ListActive(absl::Now());
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].set_username, "1000");  // ordered by username
  EXPECT_EQ((*list)[1].set_username, "1001");
  // Past the expiry of the first, only the second is active.
  absl::StatusOr<std::vector<Binding>> later = store_->ListActive(absl::Now() + absl::Minutes(7));
  ASSERT_TRUE(later.ok());
  ASSERT_EQ(later->size(), 1u);
  EXPECT_EQ((*later)[0].set_username, "1001");
  EXPECT_EQ(*store_->CountActive(absl::Now() + absl::Minutes(7)), 1);
}

TEST_F(BindingStoreTest, RemovingABindingLeavesNothingBehind) {
  ASSERT_TRUE(store_->Reserve("1001", 10, absl::Now(), absl::Now() + absl::Seconds(30)).ok());
  ASSERT_TRUE(store_->Put(MakeBinding("1001", "21001", absl::Minutes(10))).ok());
  EXPECT_EQ(Keys(), (std::vector<std::string>{BindingKey("1001"), kActiveBindingsKey,
                                              IcpBindingKey("21001")}));
  ASSERT_TRUE(store_->Remove("1001", "21001").ok());
  EXPECT_EQ(Keys(), std::vector<std::string>{});
  EXPECT_EQ(*store_->Get("1001"), std::nullopt);
  EXPECT_EQ(*store_->CountActive(absl::Now()), 0);
}

TEST_F(BindingStoreTest, RemovingKeepsAnIcpNameThatMovedToAnotherDevice) {
  // 21001 was 1001's ICP name; the administrator gave it to 1002, which registered since.
  ASSERT_TRUE(store_->Put(MakeBinding("1001", "21001", absl::Minutes(10))).ok());
  ASSERT_TRUE(store_->Put(MakeBinding("1002", "21001", absl::Minutes(10))).ok());
  ASSERT_TRUE(store_->Remove("1001", "21001").ok());
  EXPECT_EQ(*store_->SetUsernameForIcp("21001"), std::optional<std::string>("1002"));
  EXPECT_TRUE(store_->Get("1002")->has_value());
}

TEST_F(BindingStoreTest, ADamagedRecordIsDataLossAndSkippedInLists) {
  ASSERT_TRUE(store_->Put(MakeBinding("1001", "21001", absl::Minutes(10))).ok());
  ASSERT_TRUE(store_->Put(MakeBinding("1002", "21002", absl::Minutes(10))).ok());
  ASSERT_TRUE(redis_->client().Command({"SET", BindingKey("1001"), "{\"contacts\": 5, \xff"}).ok());
  EXPECT_EQ(store_->Get("1001").status().code(), absl::StatusCode::kDataLoss);
  absl::StatusOr<std::vector<Binding>> list = store_->ListActive(absl::Now());
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].set_username, "1002");
}

TEST_F(BindingStoreTest, RedisGoneIsUnavailable) {
  redis_->Kill();
  EXPECT_EQ(store_->Put(MakeBinding("1001", "21001", absl::Minutes(10))).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_->Get("1001").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_->Reserve("1001", 1, absl::Now(), absl::Now()).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace rwg::core
