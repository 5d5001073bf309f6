#include "services/provisioning/http_rules.h"

#include <gtest/gtest.h>

namespace rwg::provisioning {
namespace {

const absl::Time kModified = absl::FromUnixSeconds(784111777);  // Sun, 06 Nov 1994 08:49:37

TEST(HttpRulesTest, DatesRoundTrip) {
  EXPECT_EQ(HttpDate(kModified), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), kModified);
  EXPECT_FALSE(ParseHttpDate("yesterday").has_value());
}

TEST(HttpRulesTest, ETagChangesWithTheFile) {
  FileInfo f{1000, kModified, 42};
  const std::string e = ETagFor(f);
  EXPECT_EQ(e.front(), '"');
  FileInfo g = f;
  g.modified += absl::Nanoseconds(1);
  EXPECT_NE(ETagFor(g), e);
  g = f;
  g.size = 1001;
  EXPECT_NE(ETagFor(g), e);
}

TEST(HttpRulesTest, ConditionalRequests) {
  const std::string etag = "\"abc\"";
  EXPECT_TRUE(NotModified("\"abc\"", "", etag, kModified));
  EXPECT_TRUE(NotModified("\"x\", W/\"abc\"", "", etag, kModified));
  EXPECT_TRUE(NotModified("*", "", etag, kModified));
  EXPECT_FALSE(NotModified("\"other\"", "", etag, kModified));
  // If-None-Match decides when present, even against a matching date.
  EXPECT_FALSE(NotModified("\"other\"", "Sun, 06 Nov 1994 08:49:37 GMT", etag, kModified));
  EXPECT_TRUE(NotModified("", "Sun, 06 Nov 1994 08:49:37 GMT", etag, kModified));
  EXPECT_TRUE(NotModified("", "Mon, 07 Nov 1994 08:49:37 GMT", etag, kModified));
  EXPECT_FALSE(NotModified("", "Sat, 05 Nov 1994 08:49:37 GMT", etag, kModified));
  EXPECT_FALSE(NotModified("", "not a date", etag, kModified));
  EXPECT_FALSE(NotModified("", "", etag, kModified));
}

TEST(HttpRulesTest, Ranges) {
  const std::string etag = "\"e\"";
  ByteRange r;
  EXPECT_EQ(ParseRange("", "", 1000, etag, kModified, &r), RangeResult::kWhole);
  ASSERT_EQ(ParseRange("bytes=0-99", "", 1000, etag, kModified, &r), RangeResult::kPartial);
  EXPECT_EQ(r.start, 0u);
  EXPECT_EQ(r.length, 100u);
  ASSERT_EQ(ParseRange("bytes=900-", "", 1000, etag, kModified, &r), RangeResult::kPartial);
  EXPECT_EQ(r.start, 900u);
  EXPECT_EQ(r.length, 100u);
  ASSERT_EQ(ParseRange("bytes=-10", "", 1000, etag, kModified, &r), RangeResult::kPartial);
  EXPECT_EQ(r.start, 990u);
  EXPECT_EQ(r.length, 10u);
  ASSERT_EQ(ParseRange("bytes=500-5000", "", 1000, etag, kModified, &r), RangeResult::kPartial);
  EXPECT_EQ(r.length, 500u);  // clipped to the end
  EXPECT_EQ(ParseRange("bytes=1000-", "", 1000, etag, kModified, &r), RangeResult::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=-0", "", 1000, etag, kModified, &r), RangeResult::kUnsatisfiable);
  // Not taken: the whole file.
  EXPECT_EQ(ParseRange("bytes=0-1,5-6", "", 1000, etag, kModified, &r), RangeResult::kWhole);
  EXPECT_EQ(ParseRange("items=0-1", "", 1000, etag, kModified, &r), RangeResult::kWhole);
  EXPECT_EQ(ParseRange("bytes=9-1", "", 1000, etag, kModified, &r), RangeResult::kWhole);
  EXPECT_EQ(ParseRange("bytes=x-1", "", 1000, etag, kModified, &r), RangeResult::kWhole);
  EXPECT_EQ(ParseRange("bytes=99999999999999999999-", "", 1000, etag, kModified, &r),
            RangeResult::kWhole);
  // If-Range: the range only while the file is the one the client has.
  EXPECT_EQ(ParseRange("bytes=0-9", "\"e\"", 1000, etag, kModified, &r), RangeResult::kPartial);
  EXPECT_EQ(ParseRange("bytes=0-9", "\"old\"", 1000, etag, kModified, &r), RangeResult::kWhole);
  EXPECT_EQ(ParseRange("bytes=0-9", "Sun, 06 Nov 1994 08:49:37 GMT", 1000, etag, kModified, &r),
            RangeResult::kPartial);
  EXPECT_EQ(ParseRange("bytes=0-9", "Sat, 05 Nov 1994 08:49:37 GMT", 1000, etag, kModified, &r),
            RangeResult::kWhole);
}

TEST(HttpRulesTest, ContentTypesAndKinds) {
  EXPECT_STREQ(ContentTypeFor("0800A1B2C3D4.cfg"), "text/plain; charset=utf-8");
  EXPECT_STREQ(ContentTypeFor("CA_Mitel.pem"), "application/x-pem-file");
  EXPECT_STREQ(ContentTypeFor("6867i.st"), "application/octet-stream");
  EXPECT_STREQ(FileKind("aastra.cfg"), "cfg");
  EXPECT_STREQ(FileKind("6867i.st"), "firmware");
  EXPECT_STREQ(FileKind("CA_Mitel.pem"), "cert");
}

}  // namespace
}  // namespace rwg::provisioning
