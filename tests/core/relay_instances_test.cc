#include "services/core/relay_instances.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace rwg::core {
namespace {

// A heartbeat as media-relay wrote it before the codec was in core: its session count came
// from a gauge, a float.
constexpr char kWrittenHeartbeat[] =
    R"({"draining":false,"grpc":"10.0.0.5:50053","media":"203.0.113.5","ports_free":1800,)"
    R"("ports_used":200,"seen":1800000000,"sessions":12.0})";

TEST(RelayHeartbeatTest, RoundTrips) {
  RelayHeartbeat h{"10.0.0.5:50053", "203.0.113.5", 1800, 200, 100, true, 1'800'000'000};
  absl::StatusOr<RelayHeartbeat> back = DecodeRelayHeartbeat(EncodeRelayHeartbeat(h));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, h);
  EXPECT_EQ(EncodeRelayHeartbeat(h),
            R"({"draining":true,"grpc":"10.0.0.5:50053","media":"203.0.113.5",)"
            R"("ports_free":1800,"ports_used":200,"seen":1800000000,"sessions":100})");
}

TEST(RelayHeartbeatTest, ReadsWhatMediaRelayWrote) {
  absl::StatusOr<RelayHeartbeat> h = DecodeRelayHeartbeat(kWrittenHeartbeat);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h,
            (RelayHeartbeat{"10.0.0.5:50053", "203.0.113.5", 1800, 200, 12, false, 1'800'000'000}));
  // A relay still starting: its API address has port 0.
  h = DecodeRelayHeartbeat(R"({"grpc":"10.0.0.5:0","seen":1800000000})");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->grpc, "10.0.0.5:0");
  EXPECT_EQ(h->ports_free, 0);
  EXPECT_FALSE(h->draining);
}

TEST(RelayHeartbeatTest, DamagedHeartbeatsAreDataLossNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {"\"x\"", "not a JSON object"},
      {R"({"grpc":7})", "grpc: not a string"},
      {R"({"media":null})", "media: not a string"},
      {R"({"seen":"today"})", "seen: not a number"},
      {R"({"seen":80000000000000000000})", "seen: out of range"},
      {R"({"sessions":"many"})", "sessions: not a number"},
      {R"({"ports_free":[]})", "ports_free: not a number"},
      {R"({"ports_used":{}})", "ports_used: not a number"},
      {R"({"draining":1})", "draining: not a boolean"},
  };
  for (const auto& [json, field] : cases) {
    absl::StatusOr<RelayHeartbeat> h = DecodeRelayHeartbeat(json);
    EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss) << json;
    EXPECT_EQ(h.status().message(), "relay heartbeat: " + field) << json;
  }
}

TEST(RelayHeartbeatTest, BytesThatAreNotUtf8AndHugeValuesDoNotBreakIt) {
  RelayHeartbeat h;
  h.grpc = "relay-\xff:7000";
  h.media = std::string(1 << 20, 'm');
  h.seen_unix = -1;
  absl::StatusOr<RelayHeartbeat> back = DecodeRelayHeartbeat(EncodeRelayHeartbeat(h));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->grpc, "relay-\xef\xbf\xbd:7000");
  EXPECT_EQ(back->media, h.media);
  EXPECT_EQ(back->seen_unix, -1);
  EXPECT_EQ(DecodeRelayHeartbeat("{\"grpc\":\"\xc0\xaf\"}").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(DecodeRelayHeartbeat(R"({"seen":1e400})").ok());
}

}  // namespace
}  // namespace rwg::core
