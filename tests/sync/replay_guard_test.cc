// The freshness rules of signed sync requests over a private redis-server: the clock window
// both ways with the skew named, a nonce refused the second time (also through a second
// guard, as on another instance), nonces that expire with the window.
#include "services/sync/replay_guard.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "services/sync/oauth1.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::sync {
namespace {

class FakeClock final : public core::Clock {
 public:
  absl::Time Now() const override { return now_; }
  absl::Time now_ = absl::FromUnixSeconds(1796432254);
};

class ReplayGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
  }
  std::string Now(int64_t delta = 0) {
    return std::to_string(absl::ToUnixSeconds(clock_.now_) + delta);
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  FakeClock clock_;
};

TEST_F(ReplayGuardTest, ANonceWorksOnceOnEveryInstance) {
  ReplayGuard a(redis_->client(), clock_);
  ReplayGuard b(redis_->client(), clock_);  // another instance of the service, same Redis
  EXPECT_TRUE(a.Check("MiVOAppSuite", "tok", Now(), "n1").ok());
  absl::Status again = a.Check("MiVOAppSuite", "tok", Now(), "n1");
  EXPECT_EQ(ProblemOf(again), "nonce_used") << again;
  EXPECT_EQ(ProblemOf(b.Check("MiVOAppSuite", "tok", Now(), "n1")), "nonce_used");
  // The same nonce with another timestamp, token or consumer is another request.
  EXPECT_TRUE(a.Check("MiVOAppSuite", "tok", Now(1), "n1").ok());
  EXPECT_TRUE(a.Check("MiVOAppSuite", "tok2", Now(), "n1").ok());
  EXPECT_TRUE(a.Check("Other", "tok", Now(), "n1").ok());
  // Fields are not run together: ("ab", "c") is not ("a", "bc").
  EXPECT_TRUE(a.Check("ab", "c", Now(), "n").ok());
  EXPECT_TRUE(a.Check("a", "bc", Now(), "n").ok());
}

TEST_F(ReplayGuardTest, TheClockWindowIsSixHundredSecondsEitherWayAndTheSkewIsNamed) {
  ReplayGuard g(redis_->client(), clock_);
  EXPECT_TRUE(g.Check("c", "", Now(600), "a").ok());
  EXPECT_TRUE(g.Check("c", "", Now(-600), "b").ok());
  absl::Status ahead = g.Check("c", "", Now(700), "c");
  EXPECT_EQ(ProblemOf(ahead), "timestamp_refused");
  EXPECT_TRUE(absl::StrContains(ahead.message(), "700 s ahead of")) << ahead;
  absl::Status behind = g.Check("c", "", Now(-700), "d");
  EXPECT_EQ(ProblemOf(behind), "timestamp_refused");
  EXPECT_TRUE(absl::StrContains(behind.message(), "700 s behind")) << behind;
  EXPECT_EQ(ProblemOf(g.Check("c", "", "12ab", "e")), "timestamp_refused");
  EXPECT_EQ(ProblemOf(g.Check("c", "", "-5", "e")), "timestamp_refused");
  EXPECT_EQ(ProblemOf(g.Check("c", "", "99999999999999999999999", "e")), "timestamp_refused");
  EXPECT_EQ(ProblemOf(g.Check("c", "", "", "e")), "parameter_absent");
}

TEST_F(ReplayGuardTest, NoncesAreBoundedAndKeptOnlyWhileTheirTimestampIsAcceptable) {
  ReplayGuard g(redis_->client(), clock_);
  EXPECT_EQ(ProblemOf(g.Check("c", "", Now(), "")), "parameter_absent");
  EXPECT_EQ(ProblemOf(g.Check("c", "", Now(), std::string(129, 'n'))), "parameter_rejected");
  ASSERT_TRUE(g.Check("c", "", Now(), std::string("\xff\x00\n", 3)).ok());
  ASSERT_TRUE(g.Check("c", "", Now(-590), "old").ok());
  absl::StatusOr<std::vector<std::string>> keys = redis_->Keys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  for (const std::string& k : *keys) {
    EXPECT_TRUE(absl::StartsWith(k, "rwg:sync:nonce:")) << k;
    EXPECT_EQ(k.size(), std::string("rwg:sync:nonce:").size() + 64) << k;  // a digest
    absl::StatusOr<core::RedisReply> ttl = redis_->client().Command({"PTTL", k});
    ASSERT_TRUE(ttl.ok());
    // At most the window plus a second; the one 590 s old goes within about 11 s.
    EXPECT_GT(ttl->integer, 0);
    EXPECT_LE(ttl->integer, 601000);
  }
}

TEST_F(ReplayGuardTest, RedisGoneIsUnavailableNotAcceptance) {
  ReplayGuard g(redis_->client(), clock_);
  redis_->Kill();
  absl::Status s = g.Check("c", "", Now(), "n");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

}  // namespace
}  // namespace rwg::sync
