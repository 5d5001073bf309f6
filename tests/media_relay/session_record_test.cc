#include <gtest/gtest.h>

#include <string>

#include "services/media_relay/relay.h"

namespace rwg::media_relay {
namespace {

constexpr char kRecord[] =
    R"({"call_id":"c-1","created":1800000000123,"id":"r-1","instance":"relay-1",)"
    R"("icp":{"in":[],"latched_rtcp":null,"latched_rtp":null,"out":[],"port":20012,)"
    R"("sdp_rtcp":null,"sdp_rtp":{"host":"203.0.113.20","port":16384},"suite":"RTP"},)"
    R"("set":{"in":[{"roc":0,"seq":4711,"srtcp":0,"ssrc":305419896}],)"
    R"("latched_rtcp":null,"latched_rtp":{"host":"198.51.100.7","port":40000},)"
    R"("local_key":"v1:AAAA","out":[{"roc":1,"seq":65530,"srtcp":12,"ssrc":2596069104}],)"
    R"("port":20010,"sdp_rtcp":null,"sdp_rtp":null,"suite":"AES_CM_128_HMAC_SHA1_80"}})";

TEST(SessionRecordTest, ReadsWhatTheRelayWrites) {
  absl::StatusOr<SessionRecord> r = SessionRecordFromJson(kRecord);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->call_id, "c-1");
  EXPECT_EQ(r->created, absl::FromUnixMillis(1800000000123));
  const LegRecord& set = r->legs[0];
  EXPECT_EQ(set.port, 20010);
  EXPECT_EQ(set.suite, SrtpSuite::kAesCm128HmacSha1_80);
  EXPECT_EQ(set.sealed_local_key, std::optional<std::string>("v1:AAAA"));
  EXPECT_FALSE(set.sealed_remote_key.has_value());
  EXPECT_TRUE(set.sdp_rtp.empty());
  EXPECT_EQ(set.latched_rtp.Host(), "198.51.100.7");
  EXPECT_EQ(set.latched_rtp.Port(), 40000);
  EXPECT_TRUE(set.in[0].used);
  EXPECT_EQ(set.in[0].ssrc, 305419896u);
  EXPECT_EQ(set.in[0].last_seq, 4711);
  EXPECT_FALSE(set.in[1].used);
  EXPECT_EQ(set.out[0].roc, 1u);
  EXPECT_EQ(set.out[0].srtcp_sent, 12u);
  const LegRecord& icp = r->legs[1];
  EXPECT_EQ(icp.port, 20012);
  EXPECT_EQ(icp.suite, SrtpSuite::kNone);
  EXPECT_EQ(icp.sdp_rtp.Host(), "203.0.113.20");
  EXPECT_FALSE(icp.in[0].used);
}

TEST(SessionRecordTest, DamagedRecordsAreDataLoss) {
  for (const char* json :
       {"", "[]", "{\"set\":", "{}", R"({"set":{},"icp":7})",
        R"({"set":{"suite":"BOGUS"},"icp":{}})", R"({"set":{"port":"20010"},"icp":{}})",
        R"({"set":{},"icp":{"local_key":3}})", R"({"set":{"out":[{"srtcp":1048577}]},"icp":{}})",
        R"({"set":{"in":[{"seq":65536}]},"icp":{}})", R"({"call_id":1,"set":{},"icp":{}})",
        R"({"created":1e99,"set":{},"icp":{}})",
        R"({"set":{"sdp_rtp":{"host":[],"port":1}},"icp":{}})"}) {
    absl::StatusOr<SessionRecord> r = SessionRecordFromJson(json);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << json;
  }
}

TEST(SessionRecordTest, AtMostTrackedSsrcsAreKept) {
  absl::StatusOr<SessionRecord> r = SessionRecordFromJson(
      R"({"set":{"in":[{"ssrc":1},{"ssrc":2},{"ssrc":3},{"ssrc":4},{"ssrc":5}]},"icp":{}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->legs[0].in[kTrackedSsrcs - 1].ssrc, static_cast<uint32_t>(kTrackedSsrcs));
}

}  // namespace
}  // namespace rwg::media_relay
