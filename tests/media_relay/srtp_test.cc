#include "services/media_relay/srtp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "services/media_relay/rtp.h"

namespace rwg::media_relay {

void PrintTo(SrtpResult result, std::ostream* os) { *os << SrtpResultName(result); }

namespace {

using ::testing::HasSubstr;
using Direction = SrtpContext::Direction;

constexpr uint32_t kSsrc = 0x11223344;
constexpr size_t kCapacity = 2048;

// A packet in a buffer with room for the SRTP trailer.
struct Packet {
  std::vector<uint8_t> buf = std::vector<uint8_t>(kCapacity);
  size_t len = 0;

  uint8_t* data() { return buf.data(); }
  std::vector<uint8_t> bytes() const { return {buf.begin(), buf.begin() + len}; }
};

// PCMU, 20 ms: 12-byte header and 160 payload bytes that depend on the sequence number.
Packet Rtp(uint16_t seq, uint32_t ssrc = kSsrc) {
  Packet p;
  const uint32_t ts = 160u * seq;
  const uint8_t header[] = {0x80,
                            0x00,
                            static_cast<uint8_t>(seq >> 8),
                            static_cast<uint8_t>(seq),
                            static_cast<uint8_t>(ts >> 24),
                            static_cast<uint8_t>(ts >> 16),
                            static_cast<uint8_t>(ts >> 8),
                            static_cast<uint8_t>(ts),
                            static_cast<uint8_t>(ssrc >> 24),
                            static_cast<uint8_t>(ssrc >> 16),
                            static_cast<uint8_t>(ssrc >> 8),
                            static_cast<uint8_t>(ssrc)};
  std::copy(std::begin(header), std::end(header), p.buf.begin());
  for (size_t i = 0; i < 160; ++i) p.buf[12 + i] = static_cast<uint8_t>(seq * 7 + i);
  p.len = 12 + 160;
  return p;
}

// A sender report (28 bytes) from `ssrc`, `n` making its content distinct.
Packet Rtcp(uint8_t n, uint32_t ssrc = kSsrc) {
  Packet p;
  const uint8_t sr[] = {0x80,
                        200,
                        0x00,
                        0x06,
                        static_cast<uint8_t>(ssrc >> 24),
                        static_cast<uint8_t>(ssrc >> 16),
                        static_cast<uint8_t>(ssrc >> 8),
                        static_cast<uint8_t>(ssrc),
                        0xe8,
                        0x00,
                        0x00,
                        0x00,
                        0x00,
                        0x00,
                        0x00,
                        n,
                        0x00,
                        0x00,
                        0x10,
                        n,
                        0x00,
                        0x00,
                        0x00,
                        n,
                        0x00,
                        0x00,
                        0x0a,
                        n};
  std::copy(std::begin(sr), std::end(sr), p.buf.begin());
  p.len = sizeof(sr);
  return p;
}

SrtpKey Key(SrtpSuite suite, uint8_t seed) {
  std::string master(kKeyMaterialSize, '\0');
  for (size_t i = 0; i < master.size(); ++i) master[i] = static_cast<char>(seed * 31 + i);
  return SrtpKey{suite, master};
}

std::unique_ptr<SrtpContext> Make(const SrtpKey& key, Direction direction) {
  auto ctx = SrtpContext::Create(key, direction);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? std::move(*ctx) : nullptr;
}

SrtpResult Protect(SrtpContext& ctx, Packet& p) {
  return IsRtcp(p.data(), p.len) ? ctx.ProtectRtcp(p.data(), &p.len, p.buf.size())
                                 : ctx.ProtectRtp(p.data(), &p.len, p.buf.size());
}

SrtpResult Unprotect(SrtpContext& ctx, Packet& p) {
  return IsRtcp(p.data(), p.len) ? ctx.UnprotectRtcp(p.data(), &p.len)
                                 : ctx.UnprotectRtp(p.data(), &p.len);
}

class FakeRandom : public core::Random {
 public:
  std::string Bytes(size_t n) override {
    ++calls;
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(next++);
    return out;
  }
  int calls = 0;
  uint8_t next = 1;
};

// --- Suites and keys -------------------------------------------------------------------------

TEST(SrtpSuiteNameTest, ParsesAndNamesTheSupportedSuites) {
  EXPECT_EQ(ParseSuite("AES_CM_128_HMAC_SHA1_80").value(), SrtpSuite::kAesCm128HmacSha1_80);
  EXPECT_EQ(ParseSuite("AES_CM_128_HMAC_SHA1_32").value(), SrtpSuite::kAesCm128HmacSha1_32);
  for (SrtpSuite s : {SrtpSuite::kAesCm128HmacSha1_80, SrtpSuite::kAesCm128HmacSha1_32}) {
    EXPECT_EQ(ParseSuite(SuiteName(s)).value(), s);
  }
  EXPECT_EQ(SuiteName(SrtpSuite::kNone), "NONE");
}

TEST(SrtpSuiteNameTest, UnknownSuiteIsInvalidArgumentNamingIt) {
  for (const char* name :
       {"AES_256_CM_HMAC_SHA1_80", "AEAD_AES_128_GCM", "aes_cm_128_hmac_sha1_80", "NONE", ""}) {
    auto suite = ParseSuite(name);
    EXPECT_EQ(suite.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(suite.status().message(), HasSubstr(std::string("'") + name + "'"));
  }
}

TEST(SrtpKeyTest, ValidKeysPass) {
  EXPECT_TRUE(ValidateKey(Key(SrtpSuite::kAesCm128HmacSha1_80, 1)).ok());
  EXPECT_TRUE(ValidateKey(Key(SrtpSuite::kAesCm128HmacSha1_32, 1)).ok());
  EXPECT_TRUE(ValidateKey(SrtpKey{SrtpSuite::kNone, ""}).ok());
}

TEST(SrtpKeyTest, WrongLengthIsInvalidArgumentWithTheLengths) {
  for (size_t size : {0, 16, 29, 31, 46}) {
    SrtpKey key{SrtpSuite::kAesCm128HmacSha1_80, std::string(size, 'k')};
    absl::Status status = ValidateKey(key);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << size;
    EXPECT_THAT(status.message(), HasSubstr("must be 30 bytes"));
    EXPECT_THAT(status.message(), HasSubstr("got " + std::to_string(size)));
    auto ctx = SrtpContext::Create(key, Direction::kInbound);
    EXPECT_EQ(ctx.status().code(), absl::StatusCode::kInvalidArgument) << size;
  }
}

TEST(SrtpKeyTest, PlainRtpWithKeyMaterialIsInvalidArgument) {
  absl::Status status = ValidateKey(SrtpKey{SrtpSuite::kNone, std::string(30, 'k')});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("NONE"));
  EXPECT_THAT(status.message(), HasSubstr("no key material"));
}

TEST(SrtpKeyTest, OutOfRangeSuiteIsInvalidArgument) {
  absl::Status status = ValidateKey(SrtpKey{static_cast<SrtpSuite>(42), std::string(30, 'k')});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("42"));
}

TEST(SrtpKeyTest, InlineKeyMatchesTheRfc4568Example) {
  // RFC 4568 §9.1: "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4".
  const std::string b64 = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
  auto master = DecodeInlineKey(b64);
  ASSERT_TRUE(master.ok()) << master.status();
  EXPECT_EQ(*master, "YS___semctl () {\t220;}\n}\nunles");
  EXPECT_EQ(EncodeInlineKey(*master), b64);
}

TEST(SrtpKeyTest, InlineKeyRoundTrips) {
  FakeRandom rng;
  SrtpKey key = GenerateKey(SrtpSuite::kAesCm128HmacSha1_80, rng);
  const std::string b64 = EncodeInlineKey(key.master);
  EXPECT_EQ(b64.size(), 40u);
  auto decoded = DecodeInlineKey(b64);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, key.master);
}

TEST(SrtpKeyTest, BadBase64IsInvalidArgumentSayingWhere) {
  auto bad_char = DecodeInlineKey("WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGV*");
  EXPECT_EQ(bad_char.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_char.status().message(), HasSubstr("not valid base64"));
  EXPECT_THAT(bad_char.status().message(), HasSubstr("'*' at offset 39"));

  // Lifetime and MKI belong to the SDP layer, not to the base64.
  auto with_lifetime = DecodeInlineKey("WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20");
  EXPECT_EQ(with_lifetime.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(with_lifetime.status().message(), HasSubstr("'|' at offset 40"));

  auto inner_padding = DecodeInlineKey("WVNf=X19");
  EXPECT_EQ(inner_padding.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(inner_padding.status().message(), HasSubstr("not valid base64"));

  auto truncated = DecodeInlineKey("WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGV");
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(truncated.status().message(), HasSubstr("not valid base64: 39 characters"));

  auto empty = DecodeInlineKey("");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("empty"));
}

TEST(SrtpKeyTest, InlineKeyOfTheWrongLengthIsInvalidArgument) {
  for (size_t size : {16, 29, 31, 46}) {
    auto decoded = DecodeInlineKey(EncodeInlineKey(std::string(size, 'k')));
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << size;
    EXPECT_THAT(decoded.status().message(),
                HasSubstr("decodes to " + std::to_string(size) + " bytes, want 30"));
  }
}

TEST(SrtpKeyTest, GenerateKeyTakesItsBytesFromTheRng) {
  FakeRandom rng;
  SrtpKey key = GenerateKey(SrtpSuite::kAesCm128HmacSha1_32, rng);
  EXPECT_EQ(key.suite, SrtpSuite::kAesCm128HmacSha1_32);
  ASSERT_EQ(key.master.size(), kKeyMaterialSize);
  EXPECT_EQ(key.master[0], 1);
  EXPECT_EQ(key.master[29], 30);
  EXPECT_TRUE(ValidateKey(key).ok());
  EXPECT_EQ(rng.calls, 1);

  SrtpKey plain = GenerateKey(SrtpSuite::kNone, rng);
  EXPECT_EQ(plain.suite, SrtpSuite::kNone);
  EXPECT_TRUE(plain.master.empty());
  EXPECT_EQ(rng.calls, 1);

  EXPECT_NE(GenerateKey(SrtpSuite::kAesCm128HmacSha1_80, core::Random::System()).master,
            GenerateKey(SrtpSuite::kAesCm128HmacSha1_80, core::Random::System()).master);
}

TEST(SrtpResultTest, NamesAndStatuses) {
  EXPECT_EQ(SrtpResultName(SrtpResult::kAuthFailed), "auth_failed");
  EXPECT_EQ(SrtpResultName(SrtpResult::kReplay), "replay");
  EXPECT_TRUE(ToStatus(SrtpResult::kOk).ok());
  EXPECT_EQ(ToStatus(SrtpResult::kAuthFailed).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ToStatus(SrtpResult::kReplay).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ToStatus(SrtpResult::kMalformed).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ToStatus(SrtpResult::kOther).code(), absl::StatusCode::kInternal);
}

// --- Packets, for each suite -----------------------------------------------------------------

// Each test runs with both engines: contexts made in the test use the engine of the parameter.
class SrtpSuiteTest : public ::testing::TestWithParam<std::tuple<SrtpEngine, SrtpSuite>> {
 protected:
  void SetUp() override { SetSrtpEngine(std::get<0>(GetParam())); }
  void TearDown() override { SetSrtpEngine(SrtpEngine::kLibsrtp); }

  SrtpSuite suite() const { return std::get<1>(GetParam()); }
  SrtpKey KeyA() const { return Key(suite(), 1); }
  SrtpKey KeyB() const { return Key(suite(), 2); }
};

TEST_P(SrtpSuiteTest, RtpRoundTrip) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  const size_t tag = suite() == SrtpSuite::kAesCm128HmacSha1_80 ? 10 : 4;
  EXPECT_EQ(RtpTrailerSize(suite()), tag);
  for (uint16_t seq = 1000; seq < 1010; ++seq) {
    const Packet original = Rtp(seq);
    Packet p = original;
    ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, p.buf.size()), SrtpResult::kOk);
    ASSERT_EQ(p.len, original.len + tag);
    // Header in clear, payload encrypted.
    EXPECT_TRUE(std::equal(p.buf.begin(), p.buf.begin() + 12, original.buf.begin()));
    EXPECT_FALSE(std::equal(p.buf.begin() + 12, p.buf.begin() + 172, original.buf.begin() + 12));
    ASSERT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
    EXPECT_EQ(p.bytes(), original.bytes());
  }
  EXPECT_EQ(in->GetRoc(kSsrc).value(), 0u);
  EXPECT_EQ(out->GetRoc(kSsrc).value(), 0u);
}

TEST_P(SrtpSuiteTest, RtcpRoundTrip) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  EXPECT_EQ(RtcpTrailerSize(suite()), 14u);  // E flag + index, 80-bit tag for both suites
  for (uint8_t n = 0; n < 5; ++n) {
    const Packet original = Rtcp(n);
    Packet p = original;
    ASSERT_EQ(out->ProtectRtcp(p.data(), &p.len, p.buf.size()), SrtpResult::kOk);
    ASSERT_EQ(p.len, original.len + 4 + 10);
    EXPECT_TRUE(std::equal(p.buf.begin(), p.buf.begin() + 8, original.buf.begin()));
    EXPECT_FALSE(std::equal(p.buf.begin() + 8, p.buf.begin() + 28, original.buf.begin() + 8));
    // E flag set, SRTCP index counts from 1.
    EXPECT_EQ(p.buf[original.len], 0x80);
    EXPECT_EQ(p.buf[original.len + 3], n + 1);
    ASSERT_EQ(in->UnprotectRtcp(p.data(), &p.len), SrtpResult::kOk);
    EXPECT_EQ(p.bytes(), original.bytes());
  }
}

TEST_P(SrtpSuiteTest, TamperedPacketFailsAuthentication) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  Packet p = Rtp(7);
  ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, p.buf.size()), SrtpResult::kOk);
  // A flipped bit anywhere: payload, sequence number in the header, tag.
  for (size_t at : {size_t{40}, size_t{3}, p.len - 1}) {
    Packet tampered = p;
    tampered.buf[at] ^= 0x01;
    const size_t len = tampered.len;
    EXPECT_EQ(in->UnprotectRtp(tampered.data(), &tampered.len), SrtpResult::kAuthFailed) << at;
    EXPECT_EQ(tampered.len, len);
  }
  // Failed packets do not take the genuine one's place in the replay window.
  const Packet original = Rtp(7);
  ASSERT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
  EXPECT_EQ(p.bytes(), original.bytes());

  Packet r = Rtcp(1);
  ASSERT_EQ(out->ProtectRtcp(r.data(), &r.len, r.buf.size()), SrtpResult::kOk);
  r.buf[12] ^= 0x80;
  EXPECT_EQ(in->UnprotectRtcp(r.data(), &r.len), SrtpResult::kAuthFailed);
}

TEST_P(SrtpSuiteTest, WrongKeyFailsAuthentication) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyB(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  Packet p = Rtp(1);
  ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, p.buf.size()), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kAuthFailed);
  Packet r = Rtcp(1);
  ASSERT_EQ(out->ProtectRtcp(r.data(), &r.len, r.buf.size()), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtcp(r.data(), &r.len), SrtpResult::kAuthFailed);
}

TEST_P(SrtpSuiteTest, SamePacketTwiceIsAReplay) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  for (Packet p : {Rtp(500), Rtcp(3)}) {
    ASSERT_EQ(Protect(*out, p), SrtpResult::kOk);
    Packet copy = p;
    EXPECT_EQ(Unprotect(*in, p), SrtpResult::kOk);
    EXPECT_EQ(Unprotect(*in, copy), SrtpResult::kReplay);
  }
}

TEST_P(SrtpSuiteTest, PacketOlderThanTheReplayWindowIsAReplay) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  std::vector<Packet> sent;
  for (uint16_t seq = 1; seq <= 1500; ++seq) {
    sent.push_back(Rtp(seq));
    ASSERT_EQ(out->ProtectRtp(sent.back().data(), &sent.back().len, kCapacity), SrtpResult::kOk);
  }
  ASSERT_EQ(in->UnprotectRtp(sent[0].data(), &sent[0].len), SrtpResult::kOk);        // seq 1
  ASSERT_EQ(in->UnprotectRtp(sent[1499].data(), &sent[1499].len), SrtpResult::kOk);  // 1500
  // 500 late: inside the 1024-packet window, never seen, accepted.
  EXPECT_EQ(in->UnprotectRtp(sent[999].data(), &sent[999].len), SrtpResult::kOk);  // 1000
  // 1498 late and never seen: outside the window.
  EXPECT_EQ(in->UnprotectRtp(sent[1].data(), &sent[1].len), SrtpResult::kReplay);  // seq 2
}

TEST_P(SrtpSuiteTest, OutboundProtectsAnUnchangedRetransmission) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  Packet first = Rtp(42);
  Packet again = Rtp(42);
  ASSERT_EQ(out->ProtectRtp(first.data(), &first.len, kCapacity), SrtpResult::kOk);
  ASSERT_EQ(out->ProtectRtp(again.data(), &again.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(first.bytes(), again.bytes());
  EXPECT_EQ(in->UnprotectRtp(first.data(), &first.len), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtp(again.data(), &again.len), SrtpResult::kReplay);
}

TEST_P(SrtpSuiteTest, TranscryptsBetweenKeysAndSuites) {
  // Phone leg in this suite with key A, iPBX leg in the other suite with key B.
  const SrtpSuite other = suite() == SrtpSuite::kAesCm128HmacSha1_80
                              ? SrtpSuite::kAesCm128HmacSha1_32
                              : SrtpSuite::kAesCm128HmacSha1_80;
  auto phone_out = Make(KeyA(), Direction::kOutbound);  // the phone's own sender
  auto relay_in_a = Make(KeyA(), Direction::kInbound);
  auto relay_out_b = Make(Key(other, 2), Direction::kOutbound);
  auto ipbx_in = Make(Key(other, 2), Direction::kInbound);
  ASSERT_TRUE(phone_out && relay_in_a && relay_out_b && ipbx_in);
  for (const Packet& original : {Rtp(10), Rtp(11), Rtcp(1), Rtp(12), Rtcp(2)}) {
    Packet p = original;
    ASSERT_EQ(Protect(*phone_out, p), SrtpResult::kOk);
    ASSERT_EQ(Unprotect(*relay_in_a, p), SrtpResult::kOk);
    ASSERT_EQ(Protect(*relay_out_b, p), SrtpResult::kOk);
    const std::vector<uint8_t> on_ipbx_leg = p.bytes();
    ASSERT_EQ(Unprotect(*ipbx_in, p), SrtpResult::kOk);
    EXPECT_EQ(p.bytes(), original.bytes());
    EXPECT_NE(on_ipbx_leg, original.bytes());
  }
}

TEST_P(SrtpSuiteTest, TranscryptsToAndFromPlainRtp) {
  auto phone_out = Make(KeyA(), Direction::kOutbound);
  auto relay_in_a = Make(KeyA(), Direction::kInbound);
  auto plain_out = Make(SrtpKey{SrtpSuite::kNone, ""}, Direction::kOutbound);
  auto plain_in = Make(SrtpKey{SrtpSuite::kNone, ""}, Direction::kInbound);
  auto relay_out_a = Make(KeyA(), Direction::kOutbound);
  auto phone_in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(phone_out && relay_in_a && plain_out && plain_in && relay_out_a && phone_in);
  for (const Packet& original : {Rtp(10), Rtcp(1), Rtp(11)}) {
    // Phone -> iPBX: SRTP in, plain RTP out, byte for byte the phone's packet.
    Packet p = original;
    ASSERT_EQ(Protect(*phone_out, p), SrtpResult::kOk);
    ASSERT_EQ(Unprotect(*relay_in_a, p), SrtpResult::kOk);
    ASSERT_EQ(Protect(*plain_out, p), SrtpResult::kOk);
    EXPECT_EQ(p.bytes(), original.bytes());
    // iPBX -> phone: plain RTP in, SRTP out.
    Packet q = original;
    ASSERT_EQ(Unprotect(*plain_in, q), SrtpResult::kOk);
    EXPECT_EQ(q.bytes(), original.bytes());
    ASSERT_EQ(Protect(*relay_out_a, q), SrtpResult::kOk);
    EXPECT_GT(q.len, original.len);
    ASSERT_EQ(Unprotect(*phone_in, q), SrtpResult::kOk);
    EXPECT_EQ(q.bytes(), original.bytes());
  }
  EXPECT_EQ(plain_in->GetRoc(kSsrc).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(plain_out->SetRoc(kSsrc, 1).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(SrtpSuiteTest, RolloverCounterAdvancesAcrossSequenceWrapWithLoss) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  for (uint16_t seq : {65533, 65534, 65535, 0, 1, 2}) {
    const Packet original = Rtp(seq);
    Packet p = original;
    ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk) << seq;
    if (seq == 65534 || seq == 65535 || seq == 0) continue;  // lost on the way
    ASSERT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk) << seq;
    EXPECT_EQ(p.bytes(), original.bytes()) << seq;
    EXPECT_EQ(in->GetRoc(kSsrc).value(), seq == 65533 ? 0u : 1u) << seq;
  }
  EXPECT_EQ(out->GetRoc(kSsrc).value(), 1u);
  EXPECT_EQ(in->GetRoc(kSsrc).value(), 1u);
}

TEST_P(SrtpSuiteTest, RestartedReceiverResumesWithRestoredRolloverCounter) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  for (uint16_t seq : {65534, 65535, 0, 1}) {
    Packet p = Rtp(seq);
    ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
    ASSERT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
  }
  const uint32_t persisted = in->GetRoc(kSsrc).value();
  ASSERT_EQ(persisted, 1u);

  // After a restart: one receiver restored from the persisted counter, one not.
  auto restored = Make(KeyA(), Direction::kInbound);
  auto fresh = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(restored && fresh);
  ASSERT_TRUE(restored->SetRoc(kSsrc, persisted).ok());
  EXPECT_EQ(restored->GetRoc(kSsrc).value(), 1u);
  EXPECT_EQ(restored->SetRoc(kSsrc, persisted).code(), absl::StatusCode::kFailedPrecondition);

  for (uint16_t seq : {2, 3, 5}) {
    const Packet original = Rtp(seq);
    Packet p = original;
    ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
    Packet copy = p;
    EXPECT_EQ(fresh->UnprotectRtp(copy.data(), &copy.len), SrtpResult::kAuthFailed) << seq;
    ASSERT_EQ(restored->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk) << seq;
    EXPECT_EQ(p.bytes(), original.bytes());
  }
  EXPECT_EQ(restored->GetRoc(kSsrc).value(), 1u);
  // Replay protection holds on the restored stream.
  Packet p = Rtp(6);
  ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
  Packet copy = p;
  EXPECT_EQ(restored->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
  EXPECT_EQ(restored->UnprotectRtp(copy.data(), &copy.len), SrtpResult::kReplay);
}

TEST_P(SrtpSuiteTest, RestartedSenderResumesWithRestoredRolloverCounter) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  for (uint16_t seq : {65535, 0}) {
    Packet p = Rtp(seq);
    ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
    ASSERT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
  }
  const uint32_t persisted = out->GetRoc(kSsrc).value();
  ASSERT_EQ(persisted, 1u);

  auto restored = Make(KeyA(), Direction::kOutbound);
  auto fresh = Make(KeyA(), Direction::kOutbound);
  ASSERT_TRUE(restored && fresh);
  ASSERT_TRUE(restored->SetRoc(kSsrc, persisted).ok());

  Packet stale = Rtp(1);
  ASSERT_EQ(fresh->ProtectRtp(stale.data(), &stale.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtp(stale.data(), &stale.len), SrtpResult::kAuthFailed);

  for (uint16_t seq : {1, 2}) {
    const Packet original = Rtp(seq);
    Packet p = original;
    ASSERT_EQ(restored->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
    ASSERT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk) << seq;
    EXPECT_EQ(p.bytes(), original.bytes());
  }
  EXPECT_EQ(restored->GetRoc(kSsrc).value(), 1u);
}

TEST_P(SrtpSuiteTest, KeyChangeMidStream) {
  auto out_a = Make(KeyA(), Direction::kOutbound);
  auto in_a = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out_a && in_a);
  for (uint16_t seq = 100; seq < 105; ++seq) {
    Packet p = Rtp(seq);
    ASSERT_EQ(out_a->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
    ASSERT_EQ(in_a->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
    Packet r = Rtcp(static_cast<uint8_t>(seq));
    ASSERT_EQ(out_a->ProtectRtcp(r.data(), &r.len, kCapacity), SrtpResult::kOk);
    ASSERT_EQ(in_a->UnprotectRtcp(r.data(), &r.len), SrtpResult::kOk);
  }
  // Re-INVITE with new keys: both ends switch to contexts for key B; the stream continues.
  auto out_b = Make(KeyB(), Direction::kOutbound);
  auto in_b = Make(KeyB(), Direction::kInbound);
  ASSERT_TRUE(out_b && in_b);
  for (uint16_t seq = 105; seq < 110; ++seq) {
    const Packet original = Rtp(seq);
    Packet p = original;
    ASSERT_EQ(out_b->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
    ASSERT_EQ(in_b->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk) << seq;
    EXPECT_EQ(p.bytes(), original.bytes());
  }
  Packet rtcp = Rtcp(9);
  ASSERT_EQ(out_b->ProtectRtcp(rtcp.data(), &rtcp.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(in_b->UnprotectRtcp(rtcp.data(), &rtcp.len), SrtpResult::kOk);

  // Late packets still under the old key no longer authenticate. (The old SRTCP index, 6, is
  // beyond the new context's 1: an index it has already seen would be rejected as a replay
  // before authentication.)
  Packet old = Rtp(110);
  ASSERT_EQ(out_a->ProtectRtp(old.data(), &old.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(in_b->UnprotectRtp(old.data(), &old.len), SrtpResult::kAuthFailed);
  Packet old_rtcp = Rtcp(10);
  ASSERT_EQ(out_a->ProtectRtcp(old_rtcp.data(), &old_rtcp.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(in_b->UnprotectRtcp(old_rtcp.data(), &old_rtcp.len), SrtpResult::kAuthFailed);
}

TEST_P(SrtpSuiteTest, ShortOrMalformedPacketsAreMalformed) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  const size_t tag = RtpTrailerSize(suite());
  for (size_t len = 0; len < kRtpHeaderSize; ++len) {
    Packet p = Rtp(1);
    p.len = len;
    EXPECT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kMalformed) << len;
    EXPECT_EQ(p.len, len);
    EXPECT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kMalformed) << len;
  }
  // A header but not the tag behind it.
  Packet no_tag = Rtp(1);
  no_tag.len = kRtpHeaderSize + tag - 1;
  EXPECT_EQ(in->UnprotectRtp(no_tag.data(), &no_tag.len), SrtpResult::kMalformed);
  // Not version 2; CSRC list longer than the packet.
  Packet v0 = Rtp(1);
  v0.buf[0] = 0x00;
  EXPECT_EQ(out->ProtectRtp(v0.data(), &v0.len, kCapacity), SrtpResult::kMalformed);
  Packet csrcs = Rtp(1);
  csrcs.buf[0] = 0x8f;
  csrcs.len = 40;
  EXPECT_EQ(out->ProtectRtp(csrcs.data(), &csrcs.len, kCapacity), SrtpResult::kMalformed);
  EXPECT_EQ(in->UnprotectRtp(csrcs.data(), &csrcs.len), SrtpResult::kMalformed);
  // RTCP shorter than header + sender SSRC (+ trailer when protected).
  for (size_t len = 0; len < kRtcpHeaderSize; ++len) {
    Packet r = Rtcp(1);
    r.len = len;
    EXPECT_EQ(out->ProtectRtcp(r.data(), &r.len, kCapacity), SrtpResult::kMalformed) << len;
  }
  Packet r = Rtcp(1);
  r.len = kRtcpHeaderSize + RtcpTrailerSize(suite()) - 1;
  EXPECT_EQ(in->UnprotectRtcp(r.data(), &r.len), SrtpResult::kMalformed);
  // Larger than any UDP datagram.
  Packet huge = Rtp(1);
  huge.len = kMaxPacketSize + 1;
  EXPECT_EQ(in->UnprotectRtp(huge.data(), &huge.len), SrtpResult::kMalformed);
}

TEST_P(SrtpSuiteTest, RandomGarbageNeverPassesAndNeverCrashes) {
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(in);
  std::mt19937 gen(1234);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<size_t> length(0, 120);
  for (int i = 0; i < 5000; ++i) {
    Packet p;
    p.len = length(gen);
    for (size_t j = 0; j < p.len; ++j) p.buf[j] = static_cast<uint8_t>(byte(gen));
    if (i % 2 == 0 && p.len > 0) p.buf[0] = static_cast<uint8_t>(0x80 | (p.buf[0] & 0x3f));
    const size_t len = p.len;
    EXPECT_NE(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk) << i;
    EXPECT_EQ(p.len, len);
    EXPECT_NE(in->UnprotectRtcp(p.data(), &p.len), SrtpResult::kOk) << i;
  }
}

TEST_P(SrtpSuiteTest, MisuseIsReportedNotProcessed) {
  auto out = Make(KeyA(), Direction::kOutbound);
  auto in = Make(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out && in);
  // Not enough room behind the packet for the trailer.
  Packet p = Rtp(1);
  const std::vector<uint8_t> before = p.bytes();
  EXPECT_EQ(out->ProtectRtp(p.data(), &p.len, p.len + kMaxTrailer - 1), SrtpResult::kOther);
  EXPECT_EQ(p.bytes(), before);
  // Wrong direction.
  EXPECT_EQ(in->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOther);
  EXPECT_EQ(p.bytes(), before);
  ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(out->UnprotectRtp(p.data(), &p.len), SrtpResult::kOther);
  // Unknown SSRC.
  EXPECT_EQ(in->GetRoc(kSsrc).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(out->GetRoc(kSsrc + 1).status().code(), absl::StatusCode::kNotFound);
  // A stream that already carries packets cannot have its counter replaced.
  EXPECT_EQ(out->SetRoc(kSsrc, 5).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(out->GetRoc(kSsrc).value(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    EnginesAndSuites, SrtpSuiteTest,
    ::testing::Combine(::testing::Values(SrtpEngine::kLibsrtp, SrtpEngine::kOpenssl),
                       ::testing::Values(SrtpSuite::kAesCm128HmacSha1_80,
                                         SrtpSuite::kAesCm128HmacSha1_32)),
    [](const ::testing::TestParamInfo<std::tuple<SrtpEngine, SrtpSuite>>& info) {
      return std::string(SrtpEngineName(std::get<0>(info.param))) + "_" +
             (std::get<1>(info.param) == SrtpSuite::kAesCm128HmacSha1_80 ? "Sha1_80" : "Sha1_32");
    });

TEST(SrtpPlainTest, PlainContextsPassPacketsThroughButCheckThem) {
  auto out = Make(SrtpKey{SrtpSuite::kNone, ""}, Direction::kOutbound);
  auto in = Make(SrtpKey{SrtpSuite::kNone, ""}, Direction::kInbound);
  ASSERT_TRUE(out && in);
  const Packet original = Rtp(9);
  Packet p = original;
  EXPECT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
  EXPECT_EQ(p.bytes(), original.bytes());
  p.len = 11;
  EXPECT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kMalformed);
  EXPECT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kMalformed);
}

}  // namespace
}  // namespace rwg::media_relay
