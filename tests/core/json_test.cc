#include "services/core/json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace rwg::core {
namespace {

TEST(JsonDumpTest, KeepsUtf8AndEscapesAsJson) {
  nlohmann::json j = {{"name", "Jos\xc3\xa9 \xe2\x82\xac"}, {"n", 3}, {"q", "a\"b\n"}};
  EXPECT_EQ(JsonDump(j), "{\"n\":3,\"name\":\"Jos\xc3\xa9 \xe2\x82\xac\",\"q\":\"a\\\"b\\n\"}");
  EXPECT_EQ(JsonDump(j), j.dump());
}

TEST(JsonDumpTest, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  // What a phone may send: a Latin-1 display name, a lone 0xff.
  nlohmann::json j = {{"user", "\xff"}, {"display", "Jos\xe9"}, {"list", {"ok", "\xc0\xaf"}}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);
  std::string text;
  ASSERT_NO_THROW(text = JsonDump(j));
  std::optional<nlohmann::json> back = JsonObject(text);
  ASSERT_TRUE(back.has_value()) << text;
  EXPECT_EQ((*back)["user"], "\xef\xbf\xbd");
  EXPECT_EQ((*back)["display"], "Jos\xef\xbf\xbd");
  EXPECT_EQ((*back)["list"][0], "ok");
  EXPECT_EQ(JsonDump(*back), text);
}

TEST(JsonDumpTest, KeysThatAreNotUtf8DoNotThrowEither) {
  nlohmann::json j;
  j["\xfe"] = 1;
  std::string text;
  ASSERT_NO_THROW(text = JsonDump(j));
  EXPECT_TRUE(JsonObject(text).has_value()) << text;
}

TEST(JsonObjectTest, AnythingButAnObjectIsNullopt) {
  EXPECT_FALSE(JsonObject("").has_value());
  EXPECT_FALSE(JsonObject("not json").has_value());
  EXPECT_FALSE(JsonObject("[1,2]").has_value());
  EXPECT_FALSE(JsonObject("\"s\"").has_value());
  EXPECT_FALSE(JsonObject("{\"a\":\"\xff\"}").has_value());  // not UTF-8: not JSON
  EXPECT_FALSE(JsonObject("{\"a\":1").has_value());
  EXPECT_TRUE(JsonObject("{\"a\":1}").has_value());
}

TEST(JsonNumberTest, NumbersThatDoNotFitAreDamagedRecords) {
  const nlohmann::json j = nlohmann::json::parse(
      R"({"small":7,"big":1e99,"neg":-5,"huge":18446744073709551615,"frac":12.9,"text":"9"})");
  EXPECT_EQ(JsonNumber<int64_t>(j, "small", -1), 7);
  EXPECT_EQ(JsonNumber<int64_t>(j, "frac", -1), 12);  // cut off
  EXPECT_EQ(JsonNumber<int64_t>(j, "missing", 4), 4);
  EXPECT_EQ(JsonNumber<int64_t>(nlohmann::json::array(), "small", 4), 4);
  // Converting these would be undefined behaviour or wrong: the record is damaged.
  EXPECT_THROW(JsonNumber<int64_t>(j, "big", -1), nlohmann::json::exception);
  EXPECT_THROW(JsonNumber<uint32_t>(j, "neg", 3), nlohmann::json::exception);
  EXPECT_THROW(JsonNumber<int64_t>(j, "huge", -1), nlohmann::json::exception);
  EXPECT_THROW(JsonNumber<int64_t>(j, "text", -1), nlohmann::json::exception);
}

}  // namespace
}  // namespace rwg::core
