#include "services/media_relay/srtp_openssl.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/core/openssl_error.h"
#include "services/media_relay/rtp.h"

namespace rwg::media_relay {
namespace {

using Direction = SrtpContext::Direction;

constexpr size_t kSessionKeySize = 16;   // AES-128
constexpr size_t kSessionSaltSize = 14;  // 112 bits
constexpr size_t kAuthKeySize = 20;      // HMAC-SHA1, RFC 3711 §8.2
constexpr size_t kSha1Size = 20;
constexpr size_t kAesBlockSize = 16;
constexpr size_t kSrtcpIndexSize = 4;  // E flag and 31-bit SRTCP index
constexpr size_t kSrtcpTagSize = 10;   // HMAC-SHA1-80 with both suites (RFC 4568 §6.2)
constexpr uint32_t kSrtcpEFlag = 0x80000000u;
constexpr uint32_t kMaxSrtcpIndex = 0x7fffffffu;
// Replay windows, in packet indexes: as many as libsrtp keeps (its RTP window is the size the
// relay configures it with, its SRTCP window is fixed).
constexpr size_t kRtpReplayWindow = 1024;
constexpr size_t kRtcpReplayWindow = 128;

static_assert(kSessionKeySize == kMasterKeySize && kSessionSaltSize == kMasterSaltSize);
static_assert(kMaxTrailer >= kSrtcpIndexSize + kSrtcpTagSize);

uint16_t LoadBe16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

uint32_t LoadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void StoreBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Algorithms fetched once for the process; null when the provider lacks them.
const EVP_CIPHER* Aes128Ctr() {
  static EVP_CIPHER* const cipher = EVP_CIPHER_fetch(nullptr, "AES-128-CTR", nullptr);
  return cipher;
}

EVP_MAC* Hmac() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using MacCtx = std::unique_ptr<EVP_MAC_CTX, MacCtxFree>;

absl::Status OpensslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, " failed: ", core::OpenSslError()));
}

// Acceptance of packet indexes already seen: `top` is the highest index accepted, and bit `age`
// of the window says whether index top - age was accepted, for ages below kBits. Indexes older
// than that are refused outright.
template <size_t kBits>
class ReplayWindow {
 public:
  enum class Verdict { kNew, kSeen, kTooOld };

  uint64_t top() const { return top_; }

  Verdict Check(uint64_t index) const {
    if (index > top_) return Verdict::kNew;
    const uint64_t age = top_ - index;
    if (age >= kBits) return Verdict::kTooOld;
    return Bit(age) ? Verdict::kSeen : Verdict::kNew;
  }

  // Records `index` as accepted; Check must have said kNew.
  void Accept(uint64_t index) {
    if (index > top_) {
      Advance(index - top_);
      top_ = index;
      SetBit(0);
    } else {
      SetBit(top_ - index);
    }
  }

  // Forgets everything and accepts `index`, for a stream resumed at a restored index.
  void Restart(uint64_t index) {
    words_.fill(0);
    top_ = index;
    SetBit(0);
  }

 private:
  static_assert(kBits % 64 == 0);
  static constexpr size_t kWords = kBits / 64;

  bool Bit(uint64_t age) const { return (words_[age / 64] >> (age % 64)) & 1; }
  void SetBit(uint64_t age) { words_[age / 64] |= uint64_t{1} << (age % 64); }

  // Ages every accepted index by `n`.
  void Advance(uint64_t n) {
    if (n >= kBits) {
      words_.fill(0);
      return;
    }
    const size_t word_shift = n / 64;
    const unsigned bit_shift = n % 64;
    for (size_t i = kWords; i-- > 0;) {
      uint64_t v = 0;
      if (i >= word_shift) {
        v = words_[i - word_shift] << bit_shift;
        if (bit_shift != 0 && i > word_shift) {
          v |= words_[i - word_shift - 1] >> (64 - bit_shift);
        }
      }
      words_[i] = v;
    }
  }

  uint64_t top_ = 0;
  std::array<uint64_t, kWords> words_{};
};

// What a context knows of one SSRC.
struct Stream {
  uint32_t ssrc = 0;
  // A rollover counter from SetRoc, applied to the stream's first RTP packet; 0 when none.
  uint32_t pending_roc = 0;
  // SRTP: top() is the highest packet index (ROC * 2^16 + SEQ) accepted or sent.
  ReplayWindow<kRtpReplayWindow> rtp;
  // SRTCP, inbound: indexes received.
  ReplayWindow<kRtcpReplayWindow> rtcp;
  // SRTCP, outbound: the last index sent (the first packet carries 1).
  uint32_t srtcp_sent = 0;
};

// The estimated packet index of an RTP packet with sequence number `seq` (RFC 3711 §3.3.1,
// Appendix A), and whether it starts the stream over at a restored rollover counter.
struct IndexEstimate {
  uint64_t index;
  bool restart;
};

IndexEstimate EstimateIndex(const Stream* stream, uint16_t seq) {
  // A new stream, or one not yet past 2^15 packets, is in its first roll: its index is SEQ.
  if (stream == nullptr) return {seq, false};
  if (stream->pending_roc != 0) return {(uint64_t{stream->pending_roc} << 16) | seq, true};
  const uint64_t top = stream->rtp.top();
  const uint64_t roc = top >> 16;
  const int s_l = static_cast<int>(top & 0xffff);
  uint64_t v = roc;
  if (s_l < 0x8000) {
    if (seq - s_l > 0x8000 && roc > 0) v = roc - 1;
  } else if (s_l - 0x8000 > seq) {
    v = roc + 1;
  }
  return {(v << 16) | seq, false};
}

// The keys of one of SRTP and SRTCP, with their OpenSSL state set up once.
class SessionKeys {
 public:
  absl::Status Init(absl::string_view master_key, absl::string_view master_salt,
                    SrtpKeyLabel encryption, SrtpKeyLabel authentication, SrtpKeyLabel salt) {
    uint8_t k_e[kSessionKeySize];
    uint8_t k_a[kAuthKeySize];
    absl::Status status =
        DeriveSrtpSessionKey(master_key, master_salt, encryption, k_e, sizeof(k_e));
    if (status.ok()) {
      status = DeriveSrtpSessionKey(master_key, master_salt, authentication, k_a, sizeof(k_a));
    }
    if (status.ok()) {
      status = DeriveSrtpSessionKey(master_key, master_salt, salt, salt_, sizeof(salt_));
    }
    if (status.ok()) status = SetUp(k_e, k_a);
    OPENSSL_cleanse(k_e, sizeof(k_e));
    OPENSSL_cleanse(k_a, sizeof(k_a));
    return status;
  }

  ~SessionKeys() { OPENSSL_cleanse(salt_, sizeof(salt_)); }

  // XORs the AES-CM keystream of packet `index` of `ssrc` into data[0, len) (RFC 3711 §4.1.1).
  bool Crypt(uint32_t ssrc, uint64_t index, uint8_t* data, size_t len) {
    if (len == 0) return true;
    // IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
    uint8_t iv[kAesBlockSize] = {};
    std::memcpy(iv, salt_, kSessionSaltSize);
    for (int i = 0; i < 4; ++i) iv[4 + i] ^= static_cast<uint8_t>(ssrc >> (24 - 8 * i));
    for (int i = 0; i < 6; ++i) iv[8 + i] ^= static_cast<uint8_t>(index >> (40 - 8 * i));
    int out_len = 0;
    return EVP_EncryptInit_ex2(cipher_.get(), nullptr, nullptr, iv, nullptr) == 1 &&
           EVP_EncryptUpdate(cipher_.get(), data, &out_len, data, static_cast<int>(len)) == 1;
  }

  // HMAC-SHA1 of data[0, len) followed by extra[0, extra_len).
  bool Mac(const uint8_t* data, size_t len, const uint8_t* extra, size_t extra_len,
           uint8_t (&out)[kSha1Size]) {
    size_t out_len = 0;
    return EVP_MAC_init(mac_.get(), nullptr, 0, nullptr) == 1 &&
           EVP_MAC_update(mac_.get(), data, len) == 1 &&
           (extra_len == 0 || EVP_MAC_update(mac_.get(), extra, extra_len) == 1) &&
           EVP_MAC_final(mac_.get(), out, &out_len, sizeof(out)) == 1 && out_len == sizeof(out);
  }

 private:
  absl::Status SetUp(const uint8_t* k_e, const uint8_t* k_a) {
    if (Aes128Ctr() == nullptr) return OpensslError("fetching AES-128-CTR");
    if (Hmac() == nullptr) return OpensslError("fetching HMAC");
    cipher_.reset(EVP_CIPHER_CTX_new());
    const uint8_t zero_iv[kAesBlockSize] = {};
    if (cipher_ == nullptr ||
        EVP_EncryptInit_ex2(cipher_.get(), Aes128Ctr(), k_e, zero_iv, nullptr) != 1) {
      return OpensslError("setting up AES-128-CTR");
    }
    mac_.reset(EVP_MAC_CTX_new(Hmac()));
    char digest[] = "SHA1";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (mac_ == nullptr || EVP_MAC_init(mac_.get(), k_a, kAuthKeySize, params) != 1) {
      return OpensslError("setting up HMAC-SHA1");
    }
    return absl::OkStatus();
  }

  CipherCtx cipher_;
  MacCtx mac_;
  uint8_t salt_[kSessionSaltSize] = {};
};

class OpensslContext final : public SrtpContext {
 public:
  OpensslContext(const SrtpKey& key, Direction direction)
      : SrtpContext(key, direction, SrtpEngine::kOpenssl),
        rtp_tag_size_(RtpTrailerSize(key.suite)) {}

  absl::Status Init() {
    const absl::string_view master(key().master);
    const absl::string_view master_key = master.substr(0, kMasterKeySize);
    const absl::string_view master_salt = master.substr(kMasterKeySize, kMasterSaltSize);
    absl::Status status = rtp_.Init(master_key, master_salt, SrtpKeyLabel::kRtpEncryption,
                                    SrtpKeyLabel::kRtpAuthentication, SrtpKeyLabel::kRtpSalt);
    if (!status.ok()) return status;
    return rtcp_.Init(master_key, master_salt, SrtpKeyLabel::kRtcpEncryption,
                      SrtpKeyLabel::kRtcpAuthentication, SrtpKeyLabel::kRtcpSalt);
  }

 private:
  SrtpResult DoProtectRtp(uint8_t* buf, size_t* len) override {
    const size_t n = *len;
    const uint32_t ssrc = LoadBe32(buf + 8);
    Stream* stream = Find(ssrc);
    if (stream == nullptr) stream = Add(ssrc);
    if (stream == nullptr) return SrtpResult::kOther;
    const IndexEstimate est = EstimateIndex(stream, LoadBe16(buf + 2));
    if (est.restart) {
      stream->rtp.Restart(est.index);
      stream->pending_roc = 0;
    } else {
      switch (stream->rtp.Check(est.index)) {
        case ReplayWindow<kRtpReplayWindow>::Verdict::kNew:
          stream->rtp.Accept(est.index);
          break;
        case ReplayWindow<kRtpReplayWindow>::Verdict::kSeen:
          // The relay forwards retransmissions as they come: the same index protects to the
          // same packet again.
          break;
        case ReplayWindow<kRtpReplayWindow>::Verdict::kTooOld:
          return SrtpResult::kReplay;
      }
    }
    const size_t header = RtpHeaderSize(buf, n).value_or(n);
    uint8_t roc[4];
    StoreBe32(roc, static_cast<uint32_t>(est.index >> 16));
    uint8_t tag[kSha1Size];
    if (!rtp_.Crypt(ssrc, est.index, buf + header, n - header) ||
        !rtp_.Mac(buf, n, roc, sizeof(roc), tag)) {
      return Failed();
    }
    std::memcpy(buf + n, tag, rtp_tag_size_);
    *len = n + rtp_tag_size_;
    return SrtpResult::kOk;
  }

  SrtpResult DoUnprotectRtp(uint8_t* buf, size_t* len) override {
    const size_t n = *len - rtp_tag_size_;
    const uint32_t ssrc = LoadBe32(buf + 8);
    Stream* stream = Find(ssrc);
    if (stream == nullptr && streams_.size() >= kOpensslMaxSsrcs) return SrtpResult::kOther;
    const IndexEstimate est = EstimateIndex(stream, LoadBe16(buf + 2));
    if (stream != nullptr && !est.restart &&
        stream->rtp.Check(est.index) != ReplayWindow<kRtpReplayWindow>::Verdict::kNew) {
      return SrtpResult::kReplay;
    }
    uint8_t roc[4];
    StoreBe32(roc, static_cast<uint32_t>(est.index >> 16));
    uint8_t tag[kSha1Size];
    if (!rtp_.Mac(buf, n, roc, sizeof(roc), tag)) return Failed();
    if (CRYPTO_memcmp(tag, buf + n, rtp_tag_size_) != 0) return SrtpResult::kAuthFailed;
    const size_t header = RtpHeaderSize(buf, n).value_or(n);
    if (!rtp_.Crypt(ssrc, est.index, buf + header, n - header)) return Failed();
    if (stream == nullptr) stream = Add(ssrc);
    if (est.restart) {
      stream->rtp.Restart(est.index);
      stream->pending_roc = 0;
    } else {
      stream->rtp.Accept(est.index);
    }
    *len = n;
    return SrtpResult::kOk;
  }

  SrtpResult DoProtectRtcp(uint8_t* buf, size_t* len) override {
    const size_t n = *len;
    const uint32_t ssrc = LoadBe32(buf + 4);
    Stream* stream = Find(ssrc);
    if (stream == nullptr) stream = Add(ssrc);
    if (stream == nullptr || stream->srtcp_sent >= kMaxSrtcpIndex) return SrtpResult::kOther;
    const uint32_t index = ++stream->srtcp_sent;
    StoreBe32(buf + n, kSrtcpEFlag | index);
    uint8_t tag[kSha1Size];
    if (!rtcp_.Crypt(ssrc, index, buf + kRtcpHeaderSize, n - kRtcpHeaderSize) ||
        !rtcp_.Mac(buf, n + kSrtcpIndexSize, nullptr, 0, tag)) {
      return Failed();
    }
    std::memcpy(buf + n + kSrtcpIndexSize, tag, kSrtcpTagSize);
    *len = n + kSrtcpIndexSize + kSrtcpTagSize;
    return SrtpResult::kOk;
  }

  SrtpResult DoUnprotectRtcp(uint8_t* buf, size_t* len) override {
    const size_t n = *len - kSrtcpIndexSize - kSrtcpTagSize;
    const uint32_t e_and_index = LoadBe32(buf + n);
    // Unencrypted SRTCP is not what these suites send; like libsrtp, refuse to check it.
    if ((e_and_index & kSrtcpEFlag) == 0) return SrtpResult::kOther;
    const uint32_t index = e_and_index & kMaxSrtcpIndex;
    const uint32_t ssrc = LoadBe32(buf + 4);
    Stream* stream = Find(ssrc);
    if (stream == nullptr && streams_.size() >= kOpensslMaxSsrcs) return SrtpResult::kOther;
    if (stream != nullptr &&
        stream->rtcp.Check(index) != ReplayWindow<kRtcpReplayWindow>::Verdict::kNew) {
      return SrtpResult::kReplay;
    }
    uint8_t tag[kSha1Size];
    if (!rtcp_.Mac(buf, n + kSrtcpIndexSize, nullptr, 0, tag)) return Failed();
    if (CRYPTO_memcmp(tag, buf + n + kSrtcpIndexSize, kSrtcpTagSize) != 0) {
      return SrtpResult::kAuthFailed;
    }
    if (!rtcp_.Crypt(ssrc, index, buf + kRtcpHeaderSize, n - kRtcpHeaderSize)) return Failed();
    if (stream == nullptr) stream = Add(ssrc);
    stream->rtcp.Accept(index);
    *len = n;
    return SrtpResult::kOk;
  }

  absl::StatusOr<uint32_t> DoGetRoc(uint32_t ssrc) const override {
    const Stream* stream = Find(ssrc);
    if (stream == nullptr) {
      return absl::NotFoundError(absl::StrCat("no SRTP stream for SSRC ", ssrc));
    }
    if (stream->pending_roc != 0) return stream->pending_roc;
    return static_cast<uint32_t>(stream->rtp.top() >> 16);
  }

  absl::Status DoSetRoc(uint32_t ssrc, uint32_t roc) override {
    if (Find(ssrc) != nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("SSRC ", ssrc,
                       " already has SRTP state in this context; its rollover counter can "
                       "only be set before its first packet"));
    }
    Stream* stream = Add(ssrc);
    if (stream == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "SRTP context already tracks ", kOpensslMaxSsrcs, " SSRCs; cannot add SSRC ", ssrc));
    }
    stream->pending_roc = roc;
    return absl::OkStatus();
  }

  const Stream* Find(uint32_t ssrc) const {
    for (const Stream& s : streams_) {
      if (s.ssrc == ssrc) return &s;
    }
    return nullptr;
  }
  Stream* Find(uint32_t ssrc) {
    return const_cast<Stream*>(static_cast<const OpensslContext*>(this)->Find(ssrc));
  }

  // A new stream for `ssrc`, or null when the context tracks as many as it may.
  Stream* Add(uint32_t ssrc) {
    if (streams_.size() >= kOpensslMaxSsrcs) return nullptr;
    streams_.emplace_back();
    streams_.back().ssrc = ssrc;
    return &streams_.back();
  }

  // An OpenSSL call failed on a packet: leave the thread's error queue empty for the next one.
  static SrtpResult Failed() {
    ERR_clear_error();
    return SrtpResult::kOther;
  }

  const size_t rtp_tag_size_;
  SessionKeys rtp_;
  SessionKeys rtcp_;
  std::vector<Stream> streams_;
};

}  // namespace

absl::Status DeriveSrtpSessionKey(absl::string_view master_key, absl::string_view master_salt,
                                  SrtpKeyLabel label, uint8_t* out, size_t out_len) {
  if (master_key.size() != kMasterKeySize || master_salt.size() != kMasterSaltSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("SRTP master key and salt must be ", kMasterKeySize, " and ", kMasterSaltSize,
                     " bytes, got ", master_key.size(), " and ", master_salt.size()));
  }
  if (Aes128Ctr() == nullptr) return OpensslError("fetching AES-128-CTR");
  // x = (label || r) XOR master salt, with r = index DIV kdr = 0: the label lands on the
  // eighth octet of the salt. The PRF output is the AES-CM keystream from IV x * 2^16.
  uint8_t iv[kAesBlockSize] = {};
  std::memcpy(iv, master_salt.data(), kMasterSaltSize);
  iv[7] ^= static_cast<uint8_t>(label);
  std::memset(out, 0, out_len);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int written = 0;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex2(ctx.get(), Aes128Ctr(),
                          reinterpret_cast<const uint8_t*>(master_key.data()), iv, nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out, &written, out, static_cast<int>(out_len)) != 1) {
    return OpensslError("SRTP key derivation");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SrtpContext>> CreateOpensslSrtpContext(const SrtpKey& key,
                                                                      Direction direction) {
  if (absl::Status status = ValidateKey(key); !status.ok()) return status;
  if (key.suite == SrtpSuite::kNone) {
    return absl::InvalidArgumentError("plain RTP (NONE) needs no SRTP engine");
  }
  auto ctx = std::make_unique<OpensslContext>(key, direction);
  if (absl::Status status = ctx->Init(); !status.ok()) return status;
  return ctx;
}

}  // namespace rwg::media_relay
