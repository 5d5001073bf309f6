// PhoneFetches (rwg:prov:fetched) against a private redis-server: a batch in one write, the
// newest fetch of a MAC kept, reads by MAC and of everything, forgetting, damaged values.
#include "services/core/phone_fetches.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "services/core/keys.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::core {
namespace {

const absl::Time kT0 = absl::FromUnixMillis(1'800'000'000'123);

class PhoneFetchesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    fetches_ = std::make_unique<PhoneFetches>(redis_->client());
  }

  std::string Raw(const std::string& mac) {
    absl::StatusOr<RedisReply> r = redis_->client().Command({"HGET", kPhoneFetchesKey, mac});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && !r->is_nil() ? r->str : "<nil>";
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<PhoneFetches> fetches_;
};

TEST(PhoneFetchCodecTest, RoundTripsToTheMillisecond) {
  const PhoneFetch f{"0800A1B2C3D4", kT0 + absl::Microseconds(456), "198.51.100.7"};
  EXPECT_EQ(EncodePhoneFetch(f), "1800000000123,198.51.100.7");
  absl::StatusOr<PhoneFetch> back = DecodePhoneFetch(f.mac, EncodePhoneFetch(f));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, (PhoneFetch{"0800A1B2C3D4", kT0, "198.51.100.7"}));
  back = DecodePhoneFetch("0800A1B2C3D4", "1800000000123,2001:db8::7");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->source, "2001:db8::7");
}

TEST(PhoneFetchCodecTest, DamagedValuesAreDataLossNamingTheMacAndPart) {
  absl::StatusOr<PhoneFetch> f = DecodePhoneFetch("0800A1B2C3D4", "1800000000123");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(f.status().message(), "phone fetch 0800A1B2C3D4: not '<unix ms>,<source address>'");
  f = DecodePhoneFetch("0800A1B2C3D4", "yesterday,198.51.100.7");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(f.status().message(), "phone fetch 0800A1B2C3D4: time: not a number");
  EXPECT_EQ(DecodePhoneFetch("0800A1B2C3D4", ",x").status().code(), absl::StatusCode::kDataLoss);
}

TEST(PhoneFetchCodecTest, MacsAreTwelveUpperCaseHexDigits) {
  EXPECT_TRUE(IsPhoneFetchMac("0800A1B2C3D4"));
  EXPECT_FALSE(IsPhoneFetchMac("0800a1b2c3d4"));
  EXPECT_FALSE(IsPhoneFetchMac("0800A1B2C3D"));
  EXPECT_FALSE(IsPhoneFetchMac("0800A1B2C3D45"));
  EXPECT_FALSE(IsPhoneFetchMac("08:00:A1:B2:C3:D4"));
  EXPECT_FALSE(IsPhoneFetchMac("0800A1B2C3G4"));
}

TEST_F(PhoneFetchesTest, ABatchIsWrittenAndReadBack) {
  ASSERT_TRUE(fetches_
                  ->Record({{"0800A1B2C3D4", kT0, "198.51.100.7"},
                            {"0800A1B2C3D5", kT0 + absl::Seconds(1), "2001:db8::5"}})
                  .ok());
  EXPECT_EQ(Raw("0800A1B2C3D4"), "1800000000123,198.51.100.7");
  EXPECT_EQ(Raw("0800A1B2C3D5"), "1800000001123,2001:db8::5");

  absl::StatusOr<std::map<std::string, PhoneFetch>> got =
      fetches_->Get({"0800A1B2C3D5", "0800A1B2C3D4", "0800FFFFFFFF"});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);  // the one never fetched is absent
  EXPECT_EQ(got->at("0800A1B2C3D4"), (PhoneFetch{"0800A1B2C3D4", kT0, "198.51.100.7"}));
  EXPECT_EQ(got->at("0800A1B2C3D5"),
            (PhoneFetch{"0800A1B2C3D5", kT0 + absl::Seconds(1), "2001:db8::5"}));

  absl::StatusOr<std::map<std::string, PhoneFetch>> all = fetches_->All();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, *got);
}

TEST_F(PhoneFetchesTest, ALaterFetchReplacesAndTheNewestOfABatchWins) {
  ASSERT_TRUE(fetches_->Record({{"0800A1B2C3D4", kT0, "198.51.100.7"}}).ok());
  ASSERT_TRUE(fetches_
                  ->Record({{"0800A1B2C3D4", kT0 + absl::Seconds(5), "198.51.100.9"},
                            {"0800A1B2C3D4", kT0 + absl::Seconds(2), "198.51.100.8"}})
                  .ok());
  EXPECT_EQ(Raw("0800A1B2C3D4"), "1800000005123,198.51.100.9");
}

TEST_F(PhoneFetchesTest, NothingToDoIsNoCommandAndNoKey) {
  EXPECT_TRUE(fetches_->Record({}).ok());
  EXPECT_TRUE(fetches_->Forget({}).ok());
  absl::StatusOr<std::map<std::string, PhoneFetch>> got = fetches_->Get({});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->empty());
  absl::StatusOr<std::map<std::string, PhoneFetch>> all = fetches_->All();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->empty());
  EXPECT_EQ(*redis_->Keys(), std::vector<std::string>{});
}

TEST_F(PhoneFetchesTest, MalformedMacsAreRefusedNamingTheEntryAndNothingIsWritten) {
  absl::Status s = fetches_->Record(
      {{"0800A1B2C3D4", kT0, "198.51.100.7"}, {"0800a1b2c3d5", kT0, "198.51.100.7"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "fetches[1].mac: '0800a1b2c3d5' is not 12 upper-case hex digits");
  EXPECT_EQ(*redis_->Keys(), std::vector<std::string>{});
  EXPECT_EQ(fetches_->Get({"0800A1B2C3D4", "x"}).status().message(),
            "macs[1]: 'x' is not 12 upper-case hex digits");
  EXPECT_EQ(fetches_->Forget({"08:00:A1:B2:C3:D4"}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PhoneFetchesTest, ForgetRemovesOnlyTheMacsGiven) {
  ASSERT_TRUE(fetches_
                  ->Record({{"0800A1B2C3D4", kT0, "198.51.100.7"},
                            {"0800A1B2C3D5", kT0, "198.51.100.7"},
                            {"0800A1B2C3D6", kT0, "198.51.100.7"}})
                  .ok());
  ASSERT_TRUE(fetches_->Forget({"0800A1B2C3D4", "0800A1B2C3D6", "0800FFFFFFFF"}).ok());
  absl::StatusOr<std::map<std::string, PhoneFetch>> all = fetches_->All();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_TRUE(all->count("0800A1B2C3D5"));
  ASSERT_TRUE(fetches_->Forget({"0800A1B2C3D5"}).ok());
  EXPECT_EQ(*redis_->Keys(), std::vector<std::string>{});
}

TEST_F(PhoneFetchesTest, AllReadsEveryPageOfALargeHash) {
  std::vector<PhoneFetch> batch;
  for (int i = 0; i < 5000; ++i) {
    char mac[13];
    std::snprintf(mac, sizeof(mac), "0800%08X", i);
    batch.push_back({mac, kT0 + absl::Milliseconds(i), "198.51.100.7"});
  }
  ASSERT_TRUE(fetches_->Record(batch).ok());
  absl::StatusOr<std::map<std::string, PhoneFetch>> all = fetches_->All();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 5000u);
  EXPECT_EQ(all->at("0800000010F0").time, kT0 + absl::Milliseconds(0x10F0));
}

TEST_F(PhoneFetchesTest, DamagedValuesAndForeignFieldsAreSkipped) {
  ASSERT_TRUE(fetches_->Record({{"0800A1B2C3D4", kT0, "198.51.100.7"}}).ok());
  ASSERT_TRUE(redis_->client()
                  .Command({"HSET", kPhoneFetchesKey, "0800A1B2C3D5", "garbage", "not-a-mac",
                            "1,198.51.100.7"})
                  .ok());
  absl::StatusOr<std::map<std::string, PhoneFetch>> got =
      fetches_->Get({"0800A1B2C3D4", "0800A1B2C3D5"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 1u);
  absl::StatusOr<std::map<std::string, PhoneFetch>> all = fetches_->All();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_TRUE(all->count("0800A1B2C3D4"));
}

TEST_F(PhoneFetchesTest, WithoutRedisEveryCallIsUnavailable) {
  redis_->Kill();
  const std::vector<PhoneFetch> one = {{"0800A1B2C3D4", kT0, "198.51.100.7"}};
  EXPECT_EQ(fetches_->Record(one).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fetches_->Get({"0800A1B2C3D4"}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fetches_->All().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fetches_->Forget({"0800A1B2C3D4"}).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace rwg::core
