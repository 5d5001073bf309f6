#include "services/sip_edge/housekeeping.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <deque>
#include <memory>
#include <string>

#include "services/core/crypto.h"
#include "services/core/random.h"

namespace rwg::sip_edge {
namespace {

core::Ban SourceBan(const std::string& ip, absl::Time since) {
  core::Ban b;
  b.id = core::SourceBanId(ip);
  b.kind = "source";
  b.source = ip;
  b.reason = "test";
  b.since = since;
  b.until = since + absl::Minutes(10);
  return b;
}

TEST(MergeFreshBansTest, BansMadeHereAfterTheReadStayInForce) {
  core::ManualClock clock;
  Protection protection(ProtectionOptions{}, clock);
  const absl::Time read_at = clock.Now();
  std::deque<core::Ban> recent = {SourceBan("192.0.2.1", read_at - absl::Seconds(1)),
                                  SourceBan("192.0.2.2", read_at + absl::Seconds(1))};
  protection.AddBan(recent[0]);
  protection.AddBan(recent[1]);
  MergeFreshBans(FreshBans{{SourceBan("192.0.2.3", read_at - absl::Seconds(5))}, read_at},
                 protection, recent);
  // 192.0.2.1 was in Redis when the read began and is not in it: lifted by an admin.
  EXPECT_FALSE(protection.SourceBanned("192.0.2.1"));
  EXPECT_TRUE(protection.SourceBanned("192.0.2.2"));
  EXPECT_TRUE(protection.SourceBanned("192.0.2.3"));
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].source, "192.0.2.2");
}

TEST(OrphanCallTest, OnlyTheCallsOfDeadInstancesAreOrphans) {
  const auto alive = [](const std::string& instance) { return instance == "sip-edge-1"; };
  EXPECT_FALSE(OrphanCall("c1", "not json", "sip-edge-0", alive));
  EXPECT_FALSE(OrphanCall("c1", R"({"id":"c1"})", "sip-edge-0", alive));
  EXPECT_FALSE(OrphanCall("c1", R"({"id":"c1","instance":7})", "sip-edge-0", alive));
  EXPECT_FALSE(OrphanCall("c1", R"({"id":"c1","instance":"sip-edge-0"})", "sip-edge-0", alive));
  EXPECT_FALSE(OrphanCall("c1", R"({"id":"c1","instance":"sip-edge-1"})", "sip-edge-0", alive));
  std::optional<absl::StatusOr<core::CallRecord>> orphan = OrphanCall(
      "c1", R"({"id":"c1","instance":"sip-edge-2","icp":{"cseq":3}})", "sip-edge-0", alive);
  ASSERT_TRUE(orphan);
  ASSERT_TRUE(orphan->ok()) << orphan->status();
  EXPECT_EQ((*orphan)->id, "c1");
  EXPECT_EQ((*orphan)->icp.cseq, 3u);
}

TEST(OrphanCallTest, TheIdIsTheKeysWhenTheRecordHasNone) {
  const auto alive = [](const std::string&) { return false; };
  std::optional<absl::StatusOr<core::CallRecord>> orphan =
      OrphanCall("c-key", R"({"instance":"sip-edge-2"})", "sip-edge-0", alive);
  ASSERT_TRUE(orphan && orphan->ok());
  EXPECT_EQ((*orphan)->id, "c-key");
}

// A damaged record of a dead instance is to be dropped; a live instance's stays.
TEST(OrphanCallTest, DamagedRecordsOfDeadInstancesAreDataLoss) {
  const auto alive = [](const std::string& instance) { return instance == "sip-edge-1"; };
  const std::string damaged = R"({"id":"c1","instance":"sip-edge-2","set":{"cseq":"2"}})";
  std::optional<absl::StatusOr<core::CallRecord>> orphan =
      OrphanCall("c1", damaged, "sip-edge-0", alive);
  ASSERT_TRUE(orphan);
  EXPECT_EQ(orphan->status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(orphan->status().message().find("set.cseq"), std::string::npos) << orphan->status();
  EXPECT_FALSE(
      OrphanCall("c1", R"({"id":"c1","instance":"sip-edge-1","set":[]})", "sip-edge-0", alive));
}

// Without Redis the rounds go on, say Redis is down, and stop with the object.
TEST(HousekeepingTest, WithoutRedisRoundsReportRedisDownAndStop) {
  core::RedisOptions redis_options;
  redis_options.address = "127.0.0.1:1";  // nothing listens there
  redis_options.connect_timeout = absl::Milliseconds(200);
  core::RedisClient redis(redis_options);
  auto box = core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
  ASSERT_TRUE(box.ok());
  core::DeviceDirectory devices(redis, **box);
  GatewayConfigWatcher config(redis);
  core::BindingStore bindings(redis);
  core::BanStore banstore(redis);
  core::ManualClock clock;
  auto instances = NewInstanceDirectory("sip-edge-0", "10.0.0.1:5070", redis, clock);
  prometheus::Registry registry;
  auto& gauges = prometheus::BuildGauge().Name("g").Register(registry);
  HousekeepingGauges g{gauges.Add({{"g", "redis_up"}}), gauges.Add({{"g", "licences"}}),
                       gauges.Add({{"g", "registered"}}), gauges.Add({{"g", "relays"}})};
  g.redis_up.Set(1);
  HousekeepingOptions options;
  options.instance = "sip-edge-0";
  options.period = absl::Milliseconds(20);
  int orphans = 0;
  auto housekeeping =
      StartHousekeeping(options, redis, devices, config, bindings, banstore, *instances, clock, g,
                        [&](const core::CallRecord&) { ++orphans; });
  for (int i = 0; i < 200 && g.redis_up.Value() != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(g.redis_up.Value(), 0);
  housekeeping->AddOwnCall("c1");
  housekeeping->DropOwnCall("c1");
  EXPECT_EQ(housekeeping->EmergencyRoutes(), nullptr);
  EXPECT_FALSE(housekeeping->TakeFreshBans());
  housekeeping.reset();  // joins the thread
  EXPECT_EQ(orphans, 0);
}

}  // namespace
}  // namespace rwg::sip_edge
