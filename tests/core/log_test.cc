#include "services/core/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rwg::core::log {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(LogFormatTest, OneLineWithFields) {
  Init("control", "info");
  std::string line = Format("info", "device created", {{"user", "admin"}, {"device", "1001"}});
  EXPECT_THAT(line, MatchesRegex("ts=[0-9T:.-]+Z level=info service=control .*"));
  EXPECT_THAT(line, EndsWith("msg=\"device created\" user=admin device=1001"));
}

TEST(LogFormatTest, QuotesAndEscapesHostileValues) {
  std::string line = Format("warn", "x", {{"peer", "a b\"c\nd=e\x01"}});
  EXPECT_THAT(line, HasSubstr("peer=\"a b\\\"c\\nd=e\\x01\""));
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_THAT(Format("info", "x", {{"empty", ""}}), EndsWith("empty=\"\""));
}

}  // namespace
}  // namespace rwg::core::log
