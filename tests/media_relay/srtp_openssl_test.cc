// The OpenSSL SRTP engine against libsrtp: the same packets in must give the same bytes and
// the same results out, in both directions and for both suites, across sequence-number wraps,
// loss, reordering, retransmission, tampering and restored rollover counters.
#include "services/media_relay/srtp_openssl.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "services/media_relay/rtp.h"
#include "services/media_relay/srtp.h"

namespace rwg::media_relay {

void PrintTo(SrtpResult result, std::ostream* os) { *os << SrtpResultName(result); }

namespace {

using ::testing::HasSubstr;
using Direction = SrtpContext::Direction;

constexpr uint32_t kSsrc = 0x11223344;
constexpr uint32_t kOtherSsrc = 0x55667788;
constexpr size_t kCapacity = 2048;

struct Packet {
  std::vector<uint8_t> buf = std::vector<uint8_t>(kCapacity);
  size_t len = 0;

  uint8_t* data() { return buf.data(); }
  std::vector<uint8_t> bytes() const { return {buf.begin(), buf.begin() + len}; }
};

void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// An RTP packet: fixed header, `csrcs` CSRCs, a one-word header extension when `extension`,
// then `payload` bytes that depend on the sequence number and `salt`.
Packet Rtp(uint16_t seq, uint32_t ssrc = kSsrc, size_t payload = 160, uint8_t salt = 0,
           uint8_t csrcs = 0, bool extension = false) {
  Packet p;
  uint8_t* b = p.data();
  b[0] = static_cast<uint8_t>(0x80 | (extension ? 0x10 : 0) | csrcs);
  b[1] = 0x00;
  b[2] = static_cast<uint8_t>(seq >> 8);
  b[3] = static_cast<uint8_t>(seq);
  PutBe32(b + 4, 160u * seq);
  PutBe32(b + 8, ssrc);
  size_t at = 12;
  for (uint8_t i = 0; i < csrcs; ++i, at += 4) PutBe32(b + at, 0xc0000000u + i);
  if (extension) {
    const uint8_t ext[] = {0xbe, 0xde, 0x00, 0x01, 0x10, 0x42, 0x00, 0x00};
    std::copy(std::begin(ext), std::end(ext), b + at);
    at += sizeof(ext);
  }
  for (size_t i = 0; i < payload; ++i) b[at + i] = static_cast<uint8_t>(seq * 7 + i + salt);
  p.len = at + payload;
  return p;
}

// A sender report followed by an SDES chunk, from `ssrc`; `n` makes the content distinct.
Packet Rtcp(uint32_t n, uint32_t ssrc = kSsrc) {
  Packet p;
  uint8_t* b = p.data();
  const uint8_t sr[] = {0x80, 200, 0x00, 0x06};
  std::copy(std::begin(sr), std::end(sr), b);
  PutBe32(b + 4, ssrc);
  for (size_t i = 8; i < 28; ++i) b[i] = static_cast<uint8_t>(n * 13 + i);
  const uint8_t sdes[] = {0x81, 202, 0x00, 0x03};
  std::copy(std::begin(sdes), std::end(sdes), b + 28);
  PutBe32(b + 32, ssrc);
  const uint8_t cname[] = {0x01, 0x02, 'r', 'w', 0x00, 0x00, 0x00, 0x00};
  std::copy(std::begin(cname), std::end(cname), b + 36);
  p.len = 44;
  return p;
}

SrtpKey Key(SrtpSuite suite, uint8_t seed) {
  std::string master(kKeyMaterialSize, '\0');
  for (size_t i = 0; i < master.size(); ++i) master[i] = static_cast<char>(seed * 31 + i * 7);
  return SrtpKey{suite, master};
}

std::unique_ptr<SrtpContext> Make(SrtpEngine engine, const SrtpKey& key, Direction direction) {
  SetSrtpEngine(engine);
  auto ctx = SrtpContext::Create(key, direction);
  SetSrtpEngine(SrtpEngine::kLibsrtp);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  if (!ctx.ok()) return nullptr;
  EXPECT_EQ((*ctx)->engine(), engine);
  return std::move(*ctx);
}

SrtpResult Protect(SrtpContext& ctx, Packet& p) {
  return IsRtcp(p.data(), p.len) ? ctx.ProtectRtcp(p.data(), &p.len, p.buf.size())
                                 : ctx.ProtectRtp(p.data(), &p.len, p.buf.size());
}

SrtpResult Unprotect(SrtpContext& ctx, Packet& p) {
  return IsRtcp(p.data(), p.len) ? ctx.UnprotectRtcp(p.data(), &p.len)
                                 : ctx.UnprotectRtp(p.data(), &p.len);
}

std::string Hex(const std::vector<uint8_t>& bytes) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// The same direction of the same leg, once per engine.
struct Twins {
  std::unique_ptr<SrtpContext> lib;
  std::unique_ptr<SrtpContext> ossl;

  Twins(const SrtpKey& key, Direction direction)
      : lib(Make(SrtpEngine::kLibsrtp, key, direction)),
        ossl(Make(SrtpEngine::kOpenssl, key, direction)) {}
  bool ok() const { return lib != nullptr && ossl != nullptr; }
};

// Protects `plain` with both senders. The results, lengths and bytes must be identical; returns
// the result and, in `out`, the packet as the OpenSSL engine protected it.
SrtpResult ProtectBoth(Twins& senders, const Packet& plain, Packet* out) {
  Packet a = plain;
  Packet b = plain;
  const SrtpResult ra = Protect(*senders.lib, a);
  const SrtpResult rb = Protect(*senders.ossl, b);
  EXPECT_EQ(ra, rb) << "protect of " << Hex(plain.bytes());
  EXPECT_EQ(a.bytes(), b.bytes()) << "protect of " << Hex(plain.bytes()) << "\nlibsrtp "
                                  << Hex(a.bytes()) << "\nopenssl " << Hex(b.bytes());
  *out = b;
  return rb;
}

// Unprotects `packet` with both receivers, the libsrtp one taking what the OpenSSL sender
// produced and vice versa (ProtectBoth has made sure they are the same). The results must be
// equal, and on kOk both must give back `plain`; returns the result.
SrtpResult UnprotectBoth(Twins& receivers, const Packet& packet, const Packet& plain) {
  Packet a = packet;
  Packet b = packet;
  const SrtpResult ra = Unprotect(*receivers.lib, a);
  const SrtpResult rb = Unprotect(*receivers.ossl, b);
  EXPECT_EQ(ra, rb) << "unprotect of " << Hex(packet.bytes());
  EXPECT_EQ(a.bytes(), ra == SrtpResult::kOk ? plain.bytes() : packet.bytes()) << "libsrtp";
  EXPECT_EQ(b.bytes(), rb == SrtpResult::kOk ? plain.bytes() : packet.bytes()) << "openssl";
  return rb;
}

void ExpectSameRoc(const Twins& twins, uint32_t ssrc, uint32_t want) {
  auto lib = twins.lib->GetRoc(ssrc);
  auto ossl = twins.ossl->GetRoc(ssrc);
  ASSERT_TRUE(lib.ok()) << lib.status();
  ASSERT_TRUE(ossl.ok()) << ossl.status();
  EXPECT_EQ(*lib, want) << "libsrtp, SSRC " << ssrc;
  EXPECT_EQ(*ossl, want) << "openssl, SSRC " << ssrc;
}

SrtpSuite OtherSuite(SrtpSuite suite) {
  return suite == SrtpSuite::kAesCm128HmacSha1_80 ? SrtpSuite::kAesCm128HmacSha1_32
                                                  : SrtpSuite::kAesCm128HmacSha1_80;
}

// --- Engine selection -------------------------------------------------------------------------

TEST(SrtpEngineTest, ParsesAndNamesEngines) {
  EXPECT_EQ(ParseSrtpEngine("libsrtp").value(), SrtpEngine::kLibsrtp);
  EXPECT_EQ(ParseSrtpEngine("openssl").value(), SrtpEngine::kOpenssl);
  EXPECT_EQ(SrtpEngineName(SrtpEngine::kLibsrtp), "libsrtp");
  EXPECT_EQ(SrtpEngineName(SrtpEngine::kOpenssl), "openssl");
  for (const char* bad : {"", "OpenSSL", "nss", "libsrtp2", "openssl "}) {
    auto engine = ParseSrtpEngine(bad);
    EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(engine.status().message(), HasSubstr(std::string("'") + bad + "'"));
  }
}

TEST(SrtpEngineTest, CreateUsesTheEngineSetAtThatTime) {
  EXPECT_EQ(CurrentSrtpEngine(), SrtpEngine::kLibsrtp);  // the default
  const SrtpKey key = Key(SrtpSuite::kAesCm128HmacSha1_80, 1);
  auto lib = SrtpContext::Create(key, Direction::kOutbound);
  SetSrtpEngine(SrtpEngine::kOpenssl);
  EXPECT_EQ(CurrentSrtpEngine(), SrtpEngine::kOpenssl);
  auto ossl = SrtpContext::Create(key, Direction::kOutbound);
  SetSrtpEngine(SrtpEngine::kLibsrtp);
  ASSERT_TRUE(lib.ok() && ossl.ok());
  EXPECT_EQ((*lib)->engine(), SrtpEngine::kLibsrtp);
  EXPECT_EQ((*ossl)->engine(), SrtpEngine::kOpenssl);
  // Only the OpenSSL engine caps the SSRCs of a context: it behaves as its engine says.
  for (uint32_t i = 0; i <= kOpensslMaxSsrcs; ++i) {
    Packet p = Rtp(1, 1000 + i);
    Packet q = p;
    EXPECT_EQ(Protect(**lib, p), SrtpResult::kOk) << i;
    EXPECT_EQ(Protect(**ossl, q), i < kOpensslMaxSsrcs ? SrtpResult::kOk : SrtpResult::kOther) << i;
  }
}

TEST(SrtpEngineTest, OpensslFactoryRefusesBadKeys) {
  auto none = CreateOpensslSrtpContext(SrtpKey{SrtpSuite::kNone, ""}, Direction::kInbound);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  auto short_key = CreateOpensslSrtpContext(
      SrtpKey{SrtpSuite::kAesCm128HmacSha1_80, std::string(29, 'k')}, Direction::kInbound);
  EXPECT_EQ(short_key.status().code(), absl::StatusCode::kInvalidArgument);
}

// --- Key derivation ---------------------------------------------------------------------------

std::string Derive(absl::string_view key_hex, absl::string_view salt_hex, SrtpKeyLabel label,
                   size_t size) {
  std::vector<uint8_t> out(size);
  absl::Status status =
      DeriveSrtpSessionKey(absl::HexStringToBytes(key_hex), absl::HexStringToBytes(salt_hex), label,
                           out.data(), out.size());
  EXPECT_TRUE(status.ok()) << status;
  return Hex(out);
}

TEST(SrtpKeyDerivationTest, MatchesRfc3711AppendixB3) {
  const absl::string_view key = "e1f97a0d3e018be0d64fa32c06de4139";
  const absl::string_view salt = "0ec675ad498afeebb6960b3aabe6";
  EXPECT_EQ(Derive(key, salt, SrtpKeyLabel::kRtpEncryption, 16),
            "c61e7a93744f39ee10734afe3ff7a087");
  EXPECT_EQ(Derive(key, salt, SrtpKeyLabel::kRtpSalt, 14), "30cbbc08863d8c85d49db34a9ae1");
  EXPECT_EQ(Derive(key, salt, SrtpKeyLabel::kRtpAuthentication, 20),
            "cebe321f6ff7716b6fd4ab49af256a156d38baa4");
  // SRTCP labels with the same master key.
  EXPECT_EQ(Derive(key, salt, SrtpKeyLabel::kRtcpEncryption, 16),
            "4c1aa45a81f73d61c800bbb00fbb1eaa");
  EXPECT_EQ(Derive(key, salt, SrtpKeyLabel::kRtcpAuthentication, 20),
            "8d54534feb49ae8e7993a6bd0b844fc323a93dfd");
  EXPECT_EQ(Derive(key, salt, SrtpKeyLabel::kRtcpSalt, 14), "9581c7ad87b3e530bf3e4454a8b3");
}

TEST(SrtpKeyDerivationTest, WrongSizesAreInvalidArgument) {
  uint8_t out[16];
  EXPECT_EQ(DeriveSrtpSessionKey(std::string(15, 'k'), std::string(14, 's'),
                                 SrtpKeyLabel::kRtpEncryption, out, sizeof(out))
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DeriveSrtpSessionKey(std::string(16, 'k'), std::string(12, 's'),
                                 SrtpKeyLabel::kRtpEncryption, out, sizeof(out))
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// --- Differential, per suite ------------------------------------------------------------------

class SrtpDifferentialTest : public ::testing::TestWithParam<SrtpSuite> {
 protected:
  SrtpSuite suite() const { return GetParam(); }
  SrtpKey KeyA() const { return Key(suite(), 1); }
};

// A long call: 70,000 RTP packets of one SSRC crossing two sequence-number wraps, a second SSRC
// interleaved, RTCP every 50 packets from both; on the way out some packets are sent out of
// order, retransmitted or retransmitted too late; on the way in some are lost, delayed (within
// and beyond the replay window), duplicated or tampered with. Both engines must agree on every
// byte and every result, and on the rollover counters at the end.
TEST_P(SrtpDifferentialTest, LongCallWithWrapLossReorderingAndReplays) {
  Twins out(KeyA(), Direction::kOutbound);
  Twins in(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out.ok() && in.ok());
  std::mt19937 gen(20240611 + static_cast<int>(suite()));
  std::uniform_int_distribution<int> percent(0, 999);  // per mille
  std::uniform_int_distribution<int> delay(1, 1500);
  std::uniform_int_distribution<int> recent(1, 30);

  struct Pending {
    int due;
    Packet packet;
    Packet plain;
  };
  std::vector<Pending> delayed;
  std::map<SrtpResult, int> outcomes;
  std::map<SrtpResult, int> protect_outcomes;

  auto deliver = [&](const Packet& packet, const Packet& plain) {
    ++outcomes[UnprotectBoth(in, packet, plain)];
  };
  // Sends one packet through both senders and decides its fate on the way to the receivers.
  auto send = [&](int step, const Packet& plain) {
    Packet sent;
    const SrtpResult r = ProtectBoth(out, plain, &sent);
    ++protect_outcomes[r];
    if (r != SrtpResult::kOk) return;
    const int fate = percent(gen);
    if (fate < 30) return;  // lost
    if (fate < 50) {
      delayed.push_back({step + delay(gen), sent, plain});
      return;
    }
    if (fate < 55) {  // a forged or damaged copy arrives first
      Packet forged = sent;
      forged.buf[std::uniform_int_distribution<size_t>(0, forged.len - 1)(gen)] ^= 0x20;
      deliver(forged, plain);
    }
    deliver(sent, plain);
    if (fate >= 55 && fate < 65) deliver(sent, plain);  // duplicated on the way
    if (fate >= 65 && fate < 70) {
      // A forged copy of a packet already accepted: a replay, found before authentication.
      Packet forged = sent;
      forged.buf[forged.len - 1] ^= 0x01;
      deliver(forged, plain);
    }
  };

  const uint16_t first_seq = 62000;
  uint16_t other_seq = 65500;
  uint32_t rtcp_n = 0;
  constexpr int kPackets = 70000;
  for (int i = 0; i < kPackets; ++i) {
    const uint16_t seq = static_cast<uint16_t>(first_seq + i);
    const int event = percent(gen);
    if (event < 10 && i + 1 < kPackets) {
      // The sender's own reordering: the next packet goes first.
      send(i, Rtp(static_cast<uint16_t>(seq + 1)));
      send(i, Rtp(seq));
      ++i;
    } else {
      send(i, Rtp(seq));
    }
    if (event >= 10 && event < 15 && i > 2100) {
      // A retransmission: recent ones are protected again, identically; one older than the
      // replay window is refused by both senders.
      send(i, Rtp(static_cast<uint16_t>(first_seq + i - recent(gen))));
      if (event == 14) send(i, Rtp(static_cast<uint16_t>(first_seq + i - 1024 - recent(gen))));
    }
    if (i % 3 == 0) send(i, Rtp(other_seq++, kOtherSsrc, 80, 5));
    if (i % 50 == 0) {
      send(i, Rtcp(rtcp_n++));
      send(i, Rtcp(rtcp_n++, kOtherSsrc));
    }
    for (size_t d = 0; d < delayed.size();) {
      if (delayed[d].due <= i) {
        deliver(delayed[d].packet, delayed[d].plain);
        delayed[d] = std::move(delayed.back());
        delayed.pop_back();
      } else {
        ++d;
      }
    }
    if (HasFailure()) FAIL() << "engines diverged at packet " << i << ", sequence number " << seq;
  }
  for (const Pending& p : delayed) deliver(p.packet, p.plain);

  // 62000 + 70000 = 132000: two wraps; the second SSRC wrapped once.
  ExpectSameRoc(out, kSsrc, 2);
  ExpectSameRoc(in, kSsrc, 2);
  ExpectSameRoc(out, kOtherSsrc, 1);
  ExpectSameRoc(in, kOtherSsrc, 1);
  // The run exercised what it is meant to.
  EXPECT_GT(protect_outcomes[SrtpResult::kReplay], 0);
  EXPECT_GT(outcomes[SrtpResult::kOk], 80000);
  EXPECT_GT(outcomes[SrtpResult::kReplay], 1000);
  EXPECT_GT(outcomes[SrtpResult::kAuthFailed], 200);
  EXPECT_EQ(outcomes[SrtpResult::kOther] + outcomes[SrtpResult::kMalformed], 0);

  // A restart of both ends from the persisted rollover counters: fresh contexts of both
  // engines resume the stream, and without the counter neither can.
  const uint32_t roc = in.lib->GetRoc(kSsrc).value();
  Twins restored_out(KeyA(), Direction::kOutbound);
  Twins restored_in(KeyA(), Direction::kInbound);
  Twins fresh_in(KeyA(), Direction::kInbound);
  ASSERT_TRUE(restored_out.ok() && restored_in.ok() && fresh_in.ok());
  for (Twins* t : {&restored_out, &restored_in}) {
    ASSERT_TRUE(t->lib->SetRoc(kSsrc, roc).ok());
    ASSERT_TRUE(t->ossl->SetRoc(kSsrc, roc).ok());
    ExpectSameRoc(*t, kSsrc, roc);
  }
  for (int i = 0; i < 200; ++i) {
    const Packet plain = Rtp(static_cast<uint16_t>(first_seq + kPackets + i));
    Packet sent;
    ASSERT_EQ(ProtectBoth(restored_out, plain, &sent), SrtpResult::kOk);
    EXPECT_EQ(UnprotectBoth(fresh_in, sent, plain), SrtpResult::kAuthFailed);
    EXPECT_EQ(UnprotectBoth(restored_in, sent, plain), SrtpResult::kOk);
    EXPECT_EQ(UnprotectBoth(restored_in, sent, plain), SrtpResult::kReplay);
    if (HasFailure()) FAIL() << "engines diverged after the restart, packet " << i;
  }
  ExpectSameRoc(restored_out, kSsrc, roc);
  ExpectSameRoc(restored_in, kSsrc, roc);
}

// Index estimation far from the highest index seen: a random walk over four rolls of the
// sequence space, with jumps ahead and stale packets around half the space (2^15) away, where
// the rollover counter is guessed one way or the other. One pair of receivers gets packets
// protected in order (so their indexes are right); one pair of senders protects the walk
// itself, estimating indexes across the same jumps, for a second pair of receivers.
TEST_P(SrtpDifferentialTest, IndexEstimationAcrossLargeGapsAndStalePackets) {
  std::mt19937 gen(7 + static_cast<int>(suite()));
  std::uniform_int_distribution<int> coin(0, 9);
  std::uniform_int_distribution<int> near_half(0x7000, 0x8100);
  std::uniform_int_distribution<int> small(1, 3000);
  constexpr int64_t kMaxIndex = 4 * 65536;
  std::vector<int64_t> walk;
  int64_t pos = 1000;
  for (int i = 0; i < 1500; ++i) {
    const int kind = coin(gen);
    const int64_t d = kind < 3 ? near_half(gen) : small(gen);
    const int64_t next = kind % 3 == 0 ? pos - d : pos + d;  // one in three goes back
    if (next >= 0 && next < kMaxIndex) pos = next;
    walk.push_back(pos);
  }
  std::vector<int64_t> wanted = walk;
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());

  // Every index in order, keeping the packets the walk needs.
  Twins in_order(KeyA(), Direction::kOutbound);
  ASSERT_TRUE(in_order.ok());
  std::map<int64_t, std::pair<Packet, Packet>> packets;  // index -> protected, plain
  size_t next_wanted = 0;
  for (int64_t index = 0; next_wanted < wanted.size(); ++index) {
    const Packet plain =
        Rtp(static_cast<uint16_t>(index), kSsrc, 40, static_cast<uint8_t>(index >> 16));
    Packet sent;
    ASSERT_EQ(ProtectBoth(in_order, plain, &sent), SrtpResult::kOk);
    if (index == wanted[next_wanted]) {
      packets[index] = {sent, plain};
      ++next_wanted;
    }
    if (HasFailure()) FAIL() << "senders diverged at index " << index;
  }

  Twins in(KeyA(), Direction::kInbound);
  Twins walking_out(KeyA(), Direction::kOutbound);
  Twins walking_in(KeyA(), Direction::kInbound);
  ASSERT_TRUE(in.ok() && walking_out.ok() && walking_in.ok());
  std::map<SrtpResult, int> outcomes;
  std::map<SrtpResult, int> walking_outcomes;
  for (size_t i = 0; i < walk.size(); ++i) {
    const auto& [sent, plain] = packets[walk[i]];
    ++outcomes[UnprotectBoth(in, sent, plain)];
    Packet walked;
    if (ProtectBoth(walking_out, plain, &walked) == SrtpResult::kOk) {
      ++walking_outcomes[UnprotectBoth(walking_in, walked, plain)];
    }
    ASSERT_EQ(in.lib->GetRoc(kSsrc).ok(), in.ossl->GetRoc(kSsrc).ok());
    if (in.lib->GetRoc(kSsrc).ok()) {
      EXPECT_EQ(in.lib->GetRoc(kSsrc).value(), in.ossl->GetRoc(kSsrc).value());
    }
    if (HasFailure()) FAIL() << "engines diverged at step " << i << ", index " << walk[i];
  }
  ExpectSameRoc(walking_out, kSsrc, walking_out.lib->GetRoc(kSsrc).value());
  ExpectSameRoc(walking_in, kSsrc, walking_in.lib->GetRoc(kSsrc).value());
  EXPECT_GT(outcomes[SrtpResult::kOk], 40);
  EXPECT_GT(outcomes[SrtpResult::kAuthFailed], 100);
  EXPECT_GT(outcomes[SrtpResult::kReplay], 50);
  EXPECT_GT(walking_outcomes[SrtpResult::kOk], 100);
}

// Restored counters with the first packet in either half of the sequence space, and a forged
// first packet before the genuine one.
TEST_P(SrtpDifferentialTest, RestoredRolloverCounterOnFreshContexts) {
  for (uint32_t roc : {1u, 7u, 0x12345u}) {
    for (uint16_t first : {uint16_t{3}, uint16_t{40000}, uint16_t{65530}}) {
      SCOPED_TRACE(testing::Message() << "roc " << roc << ", first seq " << first);
      Twins out(KeyA(), Direction::kOutbound);
      Twins in(KeyA(), Direction::kInbound);
      ASSERT_TRUE(out.ok() && in.ok());
      for (Twins* t : {&out, &in}) {
        ASSERT_TRUE(t->lib->SetRoc(kSsrc, roc).ok());
        ASSERT_TRUE(t->ossl->SetRoc(kSsrc, roc).ok());
        EXPECT_EQ(t->lib->SetRoc(kSsrc, roc).code(), absl::StatusCode::kFailedPrecondition);
        EXPECT_EQ(t->ossl->SetRoc(kSsrc, roc).code(), absl::StatusCode::kFailedPrecondition);
        ExpectSameRoc(*t, kSsrc, roc);
      }
      for (int i = 0; i < 20; ++i) {
        const Packet plain = Rtp(static_cast<uint16_t>(first + i));
        Packet sent;
        ASSERT_EQ(ProtectBoth(out, plain, &sent), SrtpResult::kOk);
        if (i == 0) {
          Packet forged = sent;
          forged.buf[20] ^= 1;
          EXPECT_EQ(UnprotectBoth(in, forged, plain), SrtpResult::kAuthFailed);
          ExpectSameRoc(in, kSsrc, roc);
        }
        if (i == 5) continue;  // lost
        EXPECT_EQ(UnprotectBoth(in, sent, plain), SrtpResult::kOk) << i;
      }
      const uint32_t want = first + 19 > 65535 ? roc + 1 : roc;
      ExpectSameRoc(out, kSsrc, want);
      ExpectSameRoc(in, kSsrc, want);
      if (HasFailure()) return;
    }
  }
}

// SRTCP on its own: the replay window (128 indexes for SRTCP), tampering anywhere, the E flag.
TEST_P(SrtpDifferentialTest, SrtcpReplayWindowTamperingAndEFlag) {
  Twins out(KeyA(), Direction::kOutbound);
  Twins in(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out.ok() && in.ok());
  std::vector<Packet> sent;
  std::vector<Packet> plain;
  for (uint32_t n = 0; n < 601; ++n) {
    plain.push_back(Rtcp(n));
    sent.emplace_back();
    ASSERT_EQ(ProtectBoth(out, plain.back(), &sent.back()), SrtpResult::kOk);
    ASSERT_EQ(sent.back().len, plain.back().len + 14);
  }
  std::map<SrtpResult, int> outcomes;
  // Every third packet (SRTCP indexes 1, 4, ... 601), then others late by various amounts
  // around the edge of the window, then everything again.
  for (size_t i = 0; i < sent.size(); i += 3) ++outcomes[UnprotectBoth(in, sent[i], plain[i])];
  for (size_t i : {599u, 590u, 475u, 474u, 473u, 472u, 471u, 470u, 300u, 1u}) {
    ++outcomes[UnprotectBoth(in, sent[i], plain[i])];
  }
  for (size_t i = 0; i < sent.size(); ++i) ++outcomes[UnprotectBoth(in, sent[i], plain[i])];
  EXPECT_GT(outcomes[SrtpResult::kOk], 200);
  EXPECT_GT(outcomes[SrtpResult::kReplay], 400);

  Packet next;
  const Packet original = Rtcp(1000);
  ASSERT_EQ(ProtectBoth(out, original, &next), SrtpResult::kOk);
  for (size_t at = 0; at < next.len; at += 3) {
    Packet forged = next;
    forged.buf[at] ^= 0x04;
    const SrtpResult r = UnprotectBoth(in, forged, original);
    EXPECT_NE(r, SrtpResult::kOk) << at;
  }
  Packet clear_e = next;
  clear_e.buf[original.len] &= 0x7f;
  EXPECT_EQ(UnprotectBoth(in, clear_e, original), SrtpResult::kOther);  // unencrypted SRTCP
  EXPECT_EQ(UnprotectBoth(in, next, original), SrtpResult::kOk);
}

// Headers of every shape: CSRCs, a header extension, no payload, a large payload.
TEST_P(SrtpDifferentialTest, HeaderShapesAndSizes) {
  Twins out(KeyA(), Direction::kOutbound);
  Twins in(KeyA(), Direction::kInbound);
  ASSERT_TRUE(out.ok() && in.ok());
  uint16_t seq = 100;
  for (uint8_t csrcs : {0, 1, 15}) {
    for (bool extension : {false, true}) {
      for (size_t payload :
           {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{160}, size_t{1200}}) {
        const Packet plain = Rtp(seq++, kSsrc, payload, 9, csrcs, extension);
        Packet sent;
        ASSERT_EQ(ProtectBoth(out, plain, &sent), SrtpResult::kOk);
        EXPECT_EQ(UnprotectBoth(in, sent, plain), SrtpResult::kOk);
      }
    }
  }
}

// Transcrypting between the engines: the relay's inbound context of one engine, its outbound
// context of the other, and the far end on either.
TEST_P(SrtpDifferentialTest, TranscryptsAcrossEnginesAndSuites) {
  const SrtpKey a = KeyA();
  const SrtpKey b = Key(OtherSuite(suite()), 2);
  for (SrtpEngine relay_in : {SrtpEngine::kLibsrtp, SrtpEngine::kOpenssl}) {
    for (SrtpEngine relay_out : {SrtpEngine::kLibsrtp, SrtpEngine::kOpenssl}) {
      auto phone = Make(relay_out, a, Direction::kOutbound);
      auto leg_a = Make(relay_in, a, Direction::kInbound);
      auto leg_b = Make(relay_out, b, Direction::kOutbound);
      auto ipbx = Make(relay_in, b, Direction::kInbound);
      ASSERT_TRUE(phone && leg_a && leg_b && ipbx);
      for (uint16_t seq = 65530; seq != 10; ++seq) {
        for (const Packet& original : {Rtp(seq), Rtcp(seq)}) {
          Packet p = original;
          ASSERT_EQ(Protect(*phone, p), SrtpResult::kOk);
          ASSERT_EQ(Unprotect(*leg_a, p), SrtpResult::kOk);
          EXPECT_EQ(p.bytes(), original.bytes());
          ASSERT_EQ(Protect(*leg_b, p), SrtpResult::kOk);
          ASSERT_EQ(Unprotect(*ipbx, p), SrtpResult::kOk);
          EXPECT_EQ(p.bytes(), original.bytes());
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Suites, SrtpDifferentialTest,
                         ::testing::Values(SrtpSuite::kAesCm128HmacSha1_80,
                                           SrtpSuite::kAesCm128HmacSha1_32),
                         [](const ::testing::TestParamInfo<SrtpSuite>& info) {
                           return info.param == SrtpSuite::kAesCm128HmacSha1_80 ? "Sha1_80"
                                                                                : "Sha1_32";
                         });

// --- The OpenSSL engine's own limits ----------------------------------------------------------

TEST(SrtpOpensslTest, CapsTheSsrcsOfAContext) {
  const SrtpKey key = Key(SrtpSuite::kAesCm128HmacSha1_80, 3);
  auto out = Make(SrtpEngine::kOpenssl, key, Direction::kOutbound);
  auto lib_out = Make(SrtpEngine::kLibsrtp, key, Direction::kOutbound);
  auto in = Make(SrtpEngine::kOpenssl, key, Direction::kInbound);
  ASSERT_TRUE(out && lib_out && in);
  // Forged packets from many SSRCs take no place in an inbound context.
  for (uint32_t ssrc = 5000; ssrc < 5100; ++ssrc) {
    Packet p = Rtp(1, ssrc);
    p.len += 10;
    EXPECT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kAuthFailed);
    Packet r = Rtcp(1, ssrc);
    r.len += 14;
    r.buf[r.len - 14] = 0x80;
    EXPECT_EQ(in->UnprotectRtcp(r.data(), &r.len), SrtpResult::kAuthFailed);
  }
  // Genuine ones do, up to the cap; a restored counter takes one too.
  ASSERT_TRUE(out->SetRoc(100, 4).ok());
  for (uint32_t ssrc = 101; ssrc < 100 + kOpensslMaxSsrcs; ++ssrc) {
    Packet p = Rtp(1, ssrc);
    ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
    EXPECT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk) << ssrc;
  }
  Packet extra = Rtp(1, 999);
  Packet extra_rtcp = Rtcp(1, 999);
  EXPECT_EQ(out->ProtectRtp(extra.data(), &extra.len, kCapacity), SrtpResult::kOther);
  EXPECT_EQ(out->ProtectRtcp(extra_rtcp.data(), &extra_rtcp.len, kCapacity), SrtpResult::kOther);
  EXPECT_EQ(out->SetRoc(999, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(out->GetRoc(100).value(), 4u);
  // The inbound context has room for one more; then it is full too.
  ASSERT_EQ(lib_out->ProtectRtp(extra.data(), &extra.len, kCapacity), SrtpResult::kOk);
  Packet another = Rtp(1, 998);
  ASSERT_EQ(lib_out->ProtectRtp(another.data(), &another.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtp(extra.data(), &extra.len), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtp(another.data(), &another.len), SrtpResult::kOther);
  // Known SSRCs carry on.
  Packet p = Rtp(2, 101);
  ASSERT_EQ(out->ProtectRtp(p.data(), &p.len, kCapacity), SrtpResult::kOk);
  EXPECT_EQ(in->UnprotectRtp(p.data(), &p.len), SrtpResult::kOk);
}

}  // namespace
}  // namespace rwg::media_relay
