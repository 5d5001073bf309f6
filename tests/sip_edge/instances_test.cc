#include "services/sip_edge/instances.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace rwg::sip_edge {
namespace {

core::RedisReply Str(std::string s) {
  core::RedisReply r;
  r.type = core::RedisReply::Type::kString;
  r.str = std::move(s);
  return r;
}

TEST(InstanceAdvertsTest, AnAdvertisementReadsBack) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  auto adverts = ParseInstanceAdverts(
      {Str("sip-edge-0"), Str(InstanceAdvertJson("10.0.0.1:5070", now)), Str("sip-edge-1"),
       Str(R"({"icp":"10.0.0.2:5070","seen":1799999990})")});
  ASSERT_EQ(adverts.size(), 2u);
  EXPECT_EQ(adverts["sip-edge-0"].icp, "10.0.0.1:5070");
  EXPECT_EQ(adverts["sip-edge-0"].seen, 1'800'000'000);
  EXPECT_EQ(adverts["sip-edge-1"].icp, "10.0.0.2:5070");
  EXPECT_EQ(adverts["sip-edge-1"].seen, 1'799'999'990);
}

TEST(InstanceAdvertsTest, DamagedAdvertisementsAreLeftOut) {
  auto adverts = ParseInstanceAdverts({Str("a"), Str("not json"), Str("b"), Str(R"(["icp"])"),
                                       Str("c"), Str(R"({"icp":5,"seen":1})"), Str("d"),
                                       Str(R"({"icp":"h:1","seen":"soon"})"), Str("e"),
                                       Str(R"({"icp":"h:2"})"), Str("odd")});
  ASSERT_EQ(adverts.size(), 1u);
  EXPECT_EQ(adverts["e"].icp, "h:2");
  EXPECT_EQ(adverts["e"].seen, 0);  // no time seen: long dead
}

TEST(InstanceAdvertsTest, AliveForFifteenSeconds) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_TRUE(InstanceAlive(1'800'000'000, now));
  EXPECT_TRUE(InstanceAlive(1'800'000'000 - 15, now));
  EXPECT_FALSE(InstanceAlive(1'800'000'000 - 16, now));
  EXPECT_FALSE(InstanceAlive(0, now));
}

TEST(InstanceDirectoryTest, WithoutRedisNothingIsKnown) {
  core::RedisOptions options;
  options.address = "127.0.0.1:1";  // nothing listens there
  options.connect_timeout = absl::Milliseconds(200);
  core::RedisClient redis(options);
  core::ManualClock clock;
  auto directory = NewInstanceDirectory("sip-edge-0", "10.0.0.1:5070", redis, clock);
  EXPECT_FALSE(directory->Advertise().ok());
  EXPECT_FALSE(directory->Refresh().ok());
  EXPECT_EQ(directory->Address("sip-edge-1"), "");
  EXPECT_FALSE(directory->Alive("sip-edge-1", clock.Now()));
}

class ForwardMarksTest : public ::testing::Test {
 protected:
  // The value of a header line "X-Rwg-Forwarded: <value>".
  static std::string Value(const std::string& line) {
    const std::string prefix = absl::StrCat(ForwardMarks::kHeader, ": ");
    EXPECT_EQ(line.substr(0, prefix.size()), prefix);
    return line.substr(prefix.size());
  }

  core::ManualClock clock_;
  ForwardMarks a_{"sip-edge-0", "shared key", clock_};
  ForwardMarks b_{"sip-edge-1", "shared key", clock_};
  const std::string id_ = ForwardMarks::RequestIdentity("call-1@ipbx", 7, "NOTIFY", "tag-1");
};

TEST_F(ForwardMarksTest, AnotherInstanceTakesAMarkOnce) {
  const std::string mark = Value(a_.Mark(id_));
  EXPECT_EQ(mark.rfind("sip-edge-0;ts=1800000000;sig=", 0), 0u) << mark;
  EXPECT_TRUE(b_.Accept(mark, id_));
  EXPECT_FALSE(b_.Accept(mark, id_));  // replayed
}

TEST_F(ForwardMarksTest, OwnMarksAreRefused) { EXPECT_FALSE(a_.Accept(Value(a_.Mark(id_)), id_)); }

TEST_F(ForwardMarksTest, AMarkFitsItsRequestOnly) {
  const std::string mark = Value(a_.Mark(id_));
  EXPECT_FALSE(b_.Accept(mark, ForwardMarks::RequestIdentity("call-1@ipbx", 8, "NOTIFY", "tag-1")));
  EXPECT_FALSE(b_.Accept(mark, ForwardMarks::RequestIdentity("call-2@ipbx", 7, "NOTIFY", "tag-1")));
  EXPECT_TRUE(b_.Accept(mark, id_));
}

TEST_F(ForwardMarksTest, AnotherKeyOrNoKeyRefuses) {
  ForwardMarks other("sip-edge-2", "another key", clock_);
  ForwardMarks keyless("sip-edge-3", "", clock_);
  const std::string mark = Value(a_.Mark(id_));
  EXPECT_FALSE(other.Accept(mark, id_));
  EXPECT_FALSE(keyless.Accept(mark, id_));
  EXPECT_FALSE(b_.Accept(Value(other.Mark(id_)), id_));
}

TEST_F(ForwardMarksTest, StaleOrEarlyMarksAreRefused) {
  const std::string mark = Value(a_.Mark(id_));
  clock_.Advance(ForwardMarks::kWindow + absl::Seconds(1));
  EXPECT_FALSE(b_.Accept(mark, id_));
  core::ManualClock behind(clock_.Now() - 2 * ForwardMarks::kWindow);
  ForwardMarks c("sip-edge-2", "shared key", behind);
  EXPECT_FALSE(c.Accept(Value(b_.Mark(id_)), id_));  // from too far ahead
}

TEST_F(ForwardMarksTest, ATakenMarkIsForgottenAfterTheWindow) {
  const std::string mark = Value(a_.Mark(id_));
  EXPECT_TRUE(b_.Accept(mark, id_));
  clock_.Advance(ForwardMarks::kWindow + absl::Seconds(1));
  EXPECT_FALSE(b_.Accept(mark, id_));  // stale by then anyway
  EXPECT_TRUE(b_.Accept(Value(a_.Mark(id_)), id_));
}

TEST_F(ForwardMarksTest, MalformedMarksAreRefused) {
  const std::string mark = Value(a_.Mark(id_));
  for (const std::string& bad :
       {std::string(""), std::string("sip-edge-0"), std::string("sip-edge-0;ts=1800000000"),
        absl::StrCat(mark, ";more"), std::string("sip-edge-0;ts=soon;sig=00"),
        std::string("sip-edge-0;sig=00;ts=1800000000"),
        std::string("sip-edge-0;ts=1800000000;sig=00")}) {
    EXPECT_FALSE(b_.Accept(bad, id_)) << bad;
  }
}

}  // namespace
}  // namespace rwg::sip_edge
