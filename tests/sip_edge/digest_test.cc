#include "services/sip_edge/digest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rwg::sip_edge {
namespace {

using ::testing::HasSubstr;

TEST(DigestTest, Rfc7616Vectors) {
  // RFC 7616 §3.9.1.
  EXPECT_EQ(
      DigestResponse(DigestAlgorithm::kMd5, "Mufasa", "http-auth@example.org", "Circle of Life",
                     "GET", "/dir/index.html", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                     "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth"),
      "8ca523f5e9506fed4657c9700eebdbec");
  EXPECT_EQ(
      DigestResponse(DigestAlgorithm::kSha256, "Mufasa", "http-auth@example.org", "Circle of Life",
                     "GET", "/dir/index.html", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                     "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth"),
      "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
}

TEST(DigestTest, Rfc2617Vector) {
  EXPECT_EQ(DigestResponse(DigestAlgorithm::kMd5, "Mufasa", "testrealm@host.com", "Circle Of Life",
                           "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                           "00000001", "0a4f113b", "auth"),
            "6629fae49393a05397450978507c4ef1");
}

TEST(DigestTest, ParsesQuotedAndBareValues) {
  auto p = ParseDigest(
      "Digest username=\"10 01\", realm=\"rwg.example.com\", nonce=\"abc\", "
      "uri=\"sip:rwg.example.com\", response=\"f00\", algorithm=SHA-256, qop=auth, nc=00000001, "
      "cnonce=\"x,y\"");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Get("username"), "10 01");
  EXPECT_EQ(p->Get("algorithm"), "SHA-256");
  EXPECT_EQ(p->Get("cnonce"), "x,y");
  EXPECT_EQ(p->Get("nc"), "00000001");
  EXPECT_FALSE(ParseDigest("Digest username=\"unterminated").ok());
  EXPECT_FALSE(ParseDigest("Digest =x").ok());
}

TEST(DigestTest, AlgorithmNames) {
  EXPECT_EQ(ParseAlgorithm(""), DigestAlgorithm::kMd5);
  EXPECT_EQ(ParseAlgorithm("md5"), DigestAlgorithm::kMd5);
  EXPECT_EQ(ParseAlgorithm("SHA-256"), DigestAlgorithm::kSha256);
  EXPECT_EQ(ParseAlgorithm("MD5-sess"), std::nullopt);
}

class NonceTest : public ::testing::Test {
 protected:
  core::ManualClock clock_;
  NonceKeeper keeper_{"secret", clock_, core::Random::System(), absl::Minutes(5)};
};

TEST_F(NonceTest, OwnNonceValidUntilItExpires) {
  std::string n = keeper_.Issue();
  EXPECT_EQ(keeper_.Check(n), NonceKeeper::Verdict::kValid);
  clock_.Advance(absl::Minutes(5));
  EXPECT_EQ(keeper_.Check(n), NonceKeeper::Verdict::kValid);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(keeper_.Check(n), NonceKeeper::Verdict::kStale);
}

TEST_F(NonceTest, ForgedOrForeignNonces) {
  std::string n = keeper_.Issue();
  std::string tampered = n;
  tampered[3] = tampered[3] == '0' ? '1' : '0';
  EXPECT_EQ(keeper_.Check(tampered), NonceKeeper::Verdict::kForged);
  EXPECT_EQ(keeper_.Check("short"), NonceKeeper::Verdict::kForged);
  NonceKeeper other("other secret", clock_, core::Random::System(), absl::Minutes(5));
  EXPECT_EQ(other.Check(n), NonceKeeper::Verdict::kForged);
}

TEST_F(NonceTest, CountsAreSingleUse) {
  std::string n = keeper_.Issue();
  EXPECT_TRUE(keeper_.AcceptCount(n, "00000001"));
  EXPECT_FALSE(keeper_.AcceptCount(n, "00000001"));  // replay
  EXPECT_TRUE(keeper_.AcceptCount(n, "00000002"));
  EXPECT_FALSE(keeper_.AcceptCount(n, "00000002"));
  EXPECT_FALSE(keeper_.AcceptCount(n, "xyz"));
  std::string m = keeper_.Issue();
  EXPECT_TRUE(keeper_.AcceptCount(m, ""));  // no qop: the nonce once
  EXPECT_FALSE(keeper_.AcceptCount(m, ""));
}

TEST_F(NonceTest, CountsAreForgottenOnceTheirNonceIsStale) {
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(keeper_.AcceptCount(keeper_.Issue(), "00000001"));
  EXPECT_EQ(keeper_.tracked(), 1000u);
  clock_.Advance(absl::Minutes(5) + absl::Seconds(1));
  std::string n = keeper_.Issue();
  EXPECT_TRUE(keeper_.AcceptCount(n, "00000001"));
  EXPECT_EQ(keeper_.tracked(), 1u) << "the stale nonces' counts are gone";
  EXPECT_FALSE(keeper_.AcceptCount(n, "00000001"));
}

TEST(NonceLimitTest, BeyondTheLimitOlderNoncesAreRefusedNotReplayable) {
  core::ManualClock clock;
  NonceKeeper keeper("secret", clock, core::Random::System(), absl::Minutes(5), 100);
  std::vector<std::string> nonces;
  for (int i = 0; i < 150; ++i) {
    nonces.push_back(keeper.Issue());
    clock.Advance(absl::Milliseconds(10));
  }
  for (const std::string& n : nonces) EXPECT_TRUE(keeper.AcceptCount(n, "00000001"));
  EXPECT_LE(keeper.tracked(), 100u);
  // The first ones were forgotten: a replay of them is refused, not taken as new.
  EXPECT_FALSE(keeper.AcceptCount(nonces[0], "00000001"));
  EXPECT_FALSE(keeper.AcceptCount(nonces[10], "00000002"));
  // The newest are still tracked: their counts must still rise.
  EXPECT_FALSE(keeper.AcceptCount(nonces[149], "00000001"));
  EXPECT_TRUE(keeper.AcceptCount(nonces[149], "00000002"));
  // A nonce issued now is accepted.
  EXPECT_TRUE(keeper.AcceptCount(keeper.Issue(), "00000001"));
}

TEST(AnswerChallengeTest, AnswersWhatAServerChecks) {
  auto header = AnswerChallenge(
      "Digest realm=\"127.0.0.2\", nonce=\"n0nce\", qop=\"auth,auth-int\", opaque=\"op\"", "21001",
      "icp-pw", "REGISTER", "sip:127.0.0.2:5060;transport=tcp", 1, core::Random::System());
  ASSERT_TRUE(header.ok()) << header.status();
  auto p = ParseDigest(*header);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Get("qop"), "auth");
  EXPECT_EQ(p->Get("nc"), "00000001");
  EXPECT_EQ(p->Get("opaque"), "op");
  EXPECT_EQ(p->Get("response"),
            DigestResponse(DigestAlgorithm::kMd5, "21001", "127.0.0.2", "icp-pw", "REGISTER",
                           "sip:127.0.0.2:5060;transport=tcp", "n0nce", "00000001",
                           p->Get("cnonce"), "auth"));
  auto unsupported = AnswerChallenge("Digest realm=\"r\", nonce=\"n\", algorithm=AKAv1-MD5", "u",
                                     "p", "REGISTER", "sip:x", 1, core::Random::System());
  EXPECT_THAT(unsupported.status().message(), HasSubstr("AKAv1-MD5"));
}

// Quotes and backslashes in a challenge's values stay inside their parameters in the answer
// (found by tests/fuzz/sip_edge/digest_fuzz).
TEST(AnswerChallengeTest, QuotesInTheChallengeAreEscapedInTheAnswer) {
  auto header =
      AnswerChallenge(R"(Digest realm="a\"b", nonce="n\\", opaque="x\", response=\"f")", "21001",
                      "icp-pw", "REGISTER", "sip:127.0.0.2", 1, core::Random::System());
  ASSERT_TRUE(header.ok()) << header.status();
  auto p = ParseDigest(*header);
  ASSERT_TRUE(p.ok()) << *header;
  EXPECT_EQ(p->Get("realm"), R"(a"b)");
  EXPECT_EQ(p->Get("nonce"), R"(n\)");
  EXPECT_EQ(p->Get("opaque"), R"(x", response="f)");
  EXPECT_EQ(p->Get("response"), DigestResponse(DigestAlgorithm::kMd5, "21001", R"(a"b)", "icp-pw",
                                               "REGISTER", "sip:127.0.0.2", R"(n\)", "", "", ""));
}

}  // namespace
}  // namespace rwg::sip_edge
