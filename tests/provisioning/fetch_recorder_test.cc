// FetchRecorder against a private redis-server: notes kept in memory, newest per MAC, written
// in one flush; bounded and kept for the next try while Redis refuses writes or is away.
#include "services/provisioning/fetch_recorder.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "services/core/keys.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::provisioning {
namespace {

class FetchRecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
  }

  std::string Raw(const std::string& mac) {
    absl::StatusOr<core::RedisReply> r =
        redis_->client().Command({"HGET", core::kPhoneFetchesKey, mac});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && !r->is_nil() ? r->str : "<nil>";
  }

  // Writes fail (OOM) while `on`, as a Redis out of memory refuses them.
  void RefuseWrites(bool on) {
    ASSERT_TRUE(redis_->client().Command({"CONFIG", "SET", "maxmemory", on ? "1" : "0"}).ok());
  }

  double Counter(const std::string& name) {
    for (const prometheus::MetricFamily& f : registry_.Collect()) {
      if (f.name == name && !f.metric.empty()) return f.metric[0].counter.value;
    }
    return -1;
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  core::ManualClock clock_;
  prometheus::Registry registry_;
};

TEST_F(FetchRecorderTest, NotesTheNewestFetchOfEachMacAndWritesThemInOneFlush) {
  FetchRecorder rec(redis_->client(), clock_, registry_);
  const absl::Time t0 = clock_.Now();
  rec.Fetched("0800A1B2C3D4", "198.51.100.7");
  clock_.Advance(absl::Milliseconds(1500));
  rec.Fetched("0800A1B2C3D4", "198.51.100.8");
  rec.Fetched("0800A1B2C3D5", "2001:db8::5");
  rec.Fetched("not-a-mac", "198.51.100.7");  // ignored
  EXPECT_EQ(rec.Pending(), (std::vector<core::PhoneFetch>{
                               {"0800A1B2C3D4", t0 + absl::Milliseconds(1500), "198.51.100.8"},
                               {"0800A1B2C3D5", t0 + absl::Milliseconds(1500), "2001:db8::5"}}));
  EXPECT_EQ(*redis_->Keys(), std::vector<std::string>{});  // nothing written before a flush

  ASSERT_TRUE(rec.Flush().ok());
  EXPECT_TRUE(rec.Pending().empty());
  EXPECT_EQ(Raw("0800A1B2C3D4"), "1800000001500,198.51.100.8");
  EXPECT_EQ(Raw("0800A1B2C3D5"), "1800000001500,2001:db8::5");
  EXPECT_EQ(Counter("rwg_provisioning_phone_fetches_total"), 3);
  EXPECT_EQ(Counter("rwg_provisioning_fetch_records_dropped_total"), 0);
  ASSERT_TRUE(rec.Flush().ok());  // nothing waiting: nothing to do
}

TEST_F(FetchRecorderTest, WhileRedisRefusesNotesStayBoundedForTheNextTry) {
  FetchRecorder rec(redis_->client(), clock_, registry_, 2);
  RefuseWrites(true);
  rec.Fetched("0800A1B2C3D4", "198.51.100.7");
  rec.Fetched("0800A1B2C3D5", "198.51.100.7");
  rec.Fetched("0800A1B2C3D6", "198.51.100.7");  // a third MAC: over the bound, dropped
  EXPECT_EQ(Counter("rwg_provisioning_fetch_records_dropped_total"), 1);
  EXPECT_EQ(rec.Flush().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(rec.Pending().size(), 2u);
  // A MAC already waiting takes its newer fetch, beyond the bound or not.
  clock_.Advance(absl::Seconds(1));
  rec.Fetched("0800A1B2C3D4", "198.51.100.9");
  EXPECT_EQ(rec.Flush().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Counter("rwg_provisioning_fetch_records_dropped_total"), 1);

  RefuseWrites(false);
  ASSERT_TRUE(rec.Flush().ok());
  EXPECT_TRUE(rec.Pending().empty());
  EXPECT_EQ(Raw("0800A1B2C3D4"), "1800000001000,198.51.100.9");
  EXPECT_EQ(Raw("0800A1B2C3D5"), "1800000000000,198.51.100.7");
  EXPECT_EQ(Raw("0800A1B2C3D6"), "<nil>");
  EXPECT_EQ(Counter("rwg_provisioning_phone_fetches_total"), 4);
}

TEST_F(FetchRecorderTest, WithoutRedisTheFlushIsUnavailableAndNothingIsLost) {
  core::RedisOptions ro;
  ro.address = "127.0.0.1:1";  // nothing listens there
  core::RedisClient nowhere(ro);
  FetchRecorder rec(nowhere, clock_, registry_);
  rec.Fetched("0800A1B2C3D4", "198.51.100.7");
  EXPECT_EQ(rec.Flush().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(rec.Pending(),
            (std::vector<core::PhoneFetch>{{"0800A1B2C3D4", clock_.Now(), "198.51.100.7"}}));
  EXPECT_EQ(Counter("rwg_provisioning_fetch_records_dropped_total"), 0);
}

TEST_F(FetchRecorderTest, TheDefaultBound) {
  FetchRecorder rec(redis_->client(), clock_, registry_);
  EXPECT_EQ(FetchRecorder::kMaxPending, 65536u);
  for (int i = 0; i < 1000; ++i) {
    char mac[13];
    std::snprintf(mac, sizeof(mac), "0800%08X", i);
    rec.Fetched(mac, "198.51.100.7");
  }
  EXPECT_EQ(rec.Pending().size(), 1000u);
  ASSERT_TRUE(rec.Flush().ok());
  absl::StatusOr<core::RedisReply> n = redis_->client().Command({"HLEN", core::kPhoneFetchesKey});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->integer, 1000);
}

}  // namespace
}  // namespace rwg::provisioning
