#include "services/core/bans.h"

#include <gtest/gtest.h>

#include <string>

namespace rwg::core {
namespace {

TEST(BanRecordTest, WrittenBanReadsBack) {
  Ban b;
  b.id = AuthBanId("203.0.113.9", "1001");
  b.kind = "auth";
  b.source = "203.0.113.9";
  b.user = "1001";
  b.reason = "password guessing";
  b.instance = "edge-1";
  b.since = absl::FromUnixSeconds(1800000100);
  b.until = absl::FromUnixSeconds(1800003700);
  absl::StatusOr<Ban> got = BanFromJson(BanToJson(b));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id, "");  // the key's, set by List
  EXPECT_EQ(got->kind, b.kind);
  EXPECT_EQ(got->source, b.source);
  EXPECT_EQ(got->user, b.user);
  EXPECT_EQ(got->reason, b.reason);
  EXPECT_EQ(got->instance, b.instance);
  EXPECT_EQ(got->since, b.since);
  EXPECT_EQ(got->until, b.until);
}

TEST(BanRecordTest, MissingFieldsAreEmpty) {
  absl::StatusOr<Ban> got = BanFromJson("{}");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kind, "");
  EXPECT_EQ(got->since, absl::UnixEpoch());
  EXPECT_EQ(got->until, absl::UnixEpoch());
}

TEST(BanRecordTest, DamagedRecordsAreDataLoss) {
  for (const char* json :
       {"", "[]", "\"ban\"", "{\"kind\":", "{\"kind\":3}", "{\"since\":\"1800000000\"}",
        "{\"until\":1e99}", "{\"since\":9223372036854775808}", "{\"user\":[\"1001\"]}"}) {
    absl::StatusOr<Ban> got = BanFromJson(json);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << json;
  }
}

}  // namespace
}  // namespace rwg::core
