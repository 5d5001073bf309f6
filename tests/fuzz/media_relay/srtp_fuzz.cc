// SRTP and SRTCP from the network with a fixed key, on both engines (libsrtp2 and rwg's own on
// OpenSSL), which must agree packet for packet:
//   - unprotect of arbitrary bytes (what a phone or attacker sends to a relay port): same
//     result and, when accepted, same plaintext from both engines;
//   - protect of arbitrary RTP/RTCP (what the other leg sends): same protected bytes from
//     both engines, which each engine's inbound context then takes back to the original, once
//     (a second time is a replay);
//   - the SDES pieces from SDP (ParseSuite, DecodeInlineKey) and a resumed rollover counter.
// The first input byte chooses the suite, RTP or RTCP, and the rollover counter to resume at.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "services/media_relay/rtp.h"
#include "services/media_relay/srtp.h"
#include "services/media_relay/srtp_openssl.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::media_relay;

namespace {

constexpr char kHarness[] = "srtp";
using Dir = SrtpContext::Direction;

std::unique_ptr<SrtpContext> Make(bool openssl, const SrtpKey& key, Dir d) {
  absl::StatusOr<std::unique_ptr<SrtpContext>> c =
      openssl ? CreateOpensslSrtpContext(key, d) : SrtpContext::Create(key, d);
  if (!c.ok()) rwg::fuzz::Fail(kHarness, "cannot create a context with a valid key");
  return *std::move(c);
}

// A 4-byte aligned packet buffer with room for a trailer.
struct Packet {
  explicit Packet(const uint8_t* data, size_t n) : words((n + kMaxTrailer + 3) / 4 + 1, 0), len(n) {
    if (n > 0) std::memcpy(bytes(), data, n);
  }
  uint8_t* bytes() { return reinterpret_cast<uint8_t*>(words.data()); }
  size_t capacity() const { return words.size() * 4; }
  bool Same(const Packet& o) const {
    return len == o.len && std::memcmp(words.data(), o.words.data(), len) == 0;
  }
  std::vector<uint32_t> words;
  size_t len;
};

SrtpResult Unprotect(SrtpContext& c, bool rtcp, Packet& p) {
  return rtcp ? c.UnprotectRtcp(p.bytes(), &p.len) : c.UnprotectRtp(p.bytes(), &p.len);
}
SrtpResult Protect(SrtpContext& c, bool rtcp, Packet& p) {
  return rtcp ? c.ProtectRtcp(p.bytes(), &p.len, p.capacity())
              : c.ProtectRtp(p.bytes(), &p.len, p.capacity());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > kMaxPacketSize) return 0;
  const uint8_t mode = data[0];
  ++data;
  --size;
  const bool rtcp = mode & 1;
  const SrtpSuite suite =
      (mode & 2) ? SrtpSuite::kAesCm128HmacSha1_32 : SrtpSuite::kAesCm128HmacSha1_80;
  const SrtpKey key{suite, std::string("0123456789abcdef0123456789abcd")};
  // Debian's libsrtp2 runs on NSS, which it sets up with its first context and tears down with
  // its last (loading and unloading NSS's modules); one context kept for the whole run keeps
  // that out of every input's cost.
  static const std::unique_ptr<SrtpContext> keep = Make(false, key, Dir::kInbound);

  if ((mode & 0xc0) == 0xc0) {  // the SDES pieces of an a=crypto line
    const std::string text(reinterpret_cast<const char*>(data), size);
    absl::StatusOr<SrtpSuite> s = ParseSuite(text);
    if (s.ok()) RWG_FUZZ_CHECK(kHarness, SuiteName(*s) == text);
    absl::StatusOr<std::string> k = DecodeInlineKey(text);
    if (k.ok()) {
      RWG_FUZZ_CHECK(kHarness, k->size() == kKeyMaterialSize);
      RWG_FUZZ_CHECK(kHarness, ValidateKey({SrtpSuite::kAesCm128HmacSha1_80, *k}).ok());
    }
    return 0;
  }

  // Unprotect of whatever arrives, on both engines.
  {
    std::unique_ptr<SrtpContext> a = Make(false, key, Dir::kInbound);
    std::unique_ptr<SrtpContext> b = Make(true, key, Dir::kInbound);
    if (!rtcp && (mode & 4) && size >= 12) {  // a stream resumed after a restart
      uint32_t ssrc;
      std::memcpy(&ssrc, data + 8, 4);
      ssrc = __builtin_bswap32(ssrc);
      const uint32_t roc = mode >> 3;
      RWG_FUZZ_CHECK(kHarness, a->SetRoc(ssrc, roc).ok() == b->SetRoc(ssrc, roc).ok());
    }
    Packet pa(data, size), pb(data, size);
    const SrtpResult ra = Unprotect(*a, rtcp, pa);
    const SrtpResult rb = Unprotect(*b, rtcp, pb);
    RWG_FUZZ_CHECK(kHarness, ra == rb);
    if (ra == SrtpResult::kOk) RWG_FUZZ_CHECK(kHarness, pa.Same(pb));
  }

  // Protect on both engines, then back.
  std::unique_ptr<SrtpContext> out_a = Make(false, key, Dir::kOutbound);
  std::unique_ptr<SrtpContext> out_b = Make(true, key, Dir::kOutbound);
  Packet original(data, size), pa(data, size), pb(data, size);
  const SrtpResult ra = Protect(*out_a, rtcp, pa);
  const SrtpResult rb = Protect(*out_b, rtcp, pb);
  RWG_FUZZ_CHECK(kHarness, ra == rb);
  if (ra != SrtpResult::kOk) return 0;
  RWG_FUZZ_CHECK(kHarness, pa.Same(pb));
  for (bool openssl : {false, true}) {
    std::unique_ptr<SrtpContext> in = Make(openssl, key, Dir::kInbound);
    Packet p = pa;
    RWG_FUZZ_CHECK(kHarness, Unprotect(*in, rtcp, p) == SrtpResult::kOk);
    RWG_FUZZ_CHECK(kHarness, p.Same(original));
    Packet again = pa;
    RWG_FUZZ_CHECK(kHarness, Unprotect(*in, rtcp, again) == SrtpResult::kReplay);
  }
  return 0;
}
