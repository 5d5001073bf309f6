#include <gtest/gtest.h>

#include <string>

#include "services/control/admin_service.h"

namespace rwg::control {
namespace {

TEST(CallRecordTest, ReadsWhatSipEdgeWrites) {
  absl::StatusOr<admin::v1::Call> c = CallFromJson(
      R"({"answered_unix":1800000007,"device":"1001","direction":"outbound",)"
      R"("icp":{"call_id":"icp-1","remote_target":"<sip:+33123456789@203.0.113.20>"},)"
      R"("icp_username":"21001","id":"c-1","instance":"edge-0","number":"+33123456789",)"
      R"("relay":{"grpc":"10.0.0.5:7001","id":"r-1","instance":"relay-1"},)"
      R"("set":{"call_id":"set-1","remote_target":"<sip:1001@198.51.100.7:40123>"},)"
      R"("started_unix":1800000000,"state":"confirmed"})",
      "c-key");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->id(), "c-1");
  EXPECT_EQ(c->instance(), "edge-0");
  EXPECT_EQ(c->direction(), "outbound");
  EXPECT_EQ(c->device(), "1001");
  EXPECT_EQ(c->icp_username(), "21001");
  EXPECT_EQ(c->number(), "+33123456789");
  EXPECT_EQ(c->state(), "confirmed");
  EXPECT_EQ(c->started_unix(), 1800000000);
  EXPECT_EQ(c->answered_unix(), 1800000007);
  EXPECT_EQ(c->relay_session(), "r-1");
  EXPECT_EQ(c->relay_instance(), "relay-1");
  EXPECT_EQ(c->set().call_id(), "set-1");
  EXPECT_EQ(c->set().remote_target(), "<sip:1001@198.51.100.7:40123>");
  EXPECT_EQ(c->icp().call_id(), "icp-1");
  EXPECT_EQ(c->icp().remote_target(), "<sip:+33123456789@203.0.113.20>");
}

TEST(CallRecordTest, IdFallsBackToTheKeys) {
  absl::StatusOr<admin::v1::Call> c = CallFromJson(R"({"state":"setup"})", "c-key");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->id(), "c-key");
  EXPECT_EQ(c->relay_session(), "");
}

TEST(CallRecordTest, DamagedRecordsAreDataLoss) {
  for (const char* json :
       {"", "[]", "null", "{\"id\":", "{\"id\":7}", "{\"id\":null}", "{\"started_unix\":\"1\"}",
        "{\"answered_unix\":1e99}", "{\"relay\":{\"id\":[]}}", "{\"set\":{\"call_id\":false}}"}) {
    absl::StatusOr<admin::v1::Call> c = CallFromJson(json, "c-key");
    EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss) << json;
  }
}

}  // namespace
}  // namespace rwg::control
