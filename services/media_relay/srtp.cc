#include "services/media_relay/srtp.h"

#include <arpa/inet.h>
#include <srtp2/srtp.h>
#include <string.h>  // explicit_bzero

#include <algorithm>
#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "services/media_relay/rtp.h"
#include "services/media_relay/srtp_openssl.h"

namespace rwg::media_relay {
namespace {

static_assert(kKeyMaterialSize == SRTP_AES_ICM_128_KEY_LEN_WSALT);
static_assert(kMaxTrailer >= SRTP_MAX_TRAILER_LEN + 4, "SRTCP adds the E flag and index");
static_assert(kMaxPacketSize + kMaxTrailer < static_cast<size_t>(INT32_MAX));

constexpr absl::string_view kName80 = "AES_CM_128_HMAC_SHA1_80";
constexpr absl::string_view kName32 = "AES_CM_128_HMAC_SHA1_32";
// Packets that arrive up to this many indexes late are still accepted (once each).
constexpr unsigned long kReplayWindow = 1024;

absl::Status InitLibsrtp() {
  static std::once_flag once;
  static srtp_err_status_t status = srtp_err_status_ok;
  std::call_once(once, [] { status = srtp_init(); });
  if (status != srtp_err_status_ok) {
    return absl::InternalError(absl::StrCat("srtp_init failed: libsrtp error ", status));
  }
  return absl::OkStatus();
}

SrtpResult FromLibsrtp(srtp_err_status_t status) {
  switch (status) {
    case srtp_err_status_ok:
      return SrtpResult::kOk;
    case srtp_err_status_auth_fail:
      return SrtpResult::kAuthFailed;
    case srtp_err_status_replay_fail:
    case srtp_err_status_replay_old:
    case srtp_err_status_pkt_idx_old:
      return SrtpResult::kReplay;
    case srtp_err_status_parse_err:
    case srtp_err_status_bad_param:
      return SrtpResult::kMalformed;
    default:
      return SrtpResult::kOther;
  }
}

// The libsrtp policy for `key` applied to `ssrc` (a wildcard or one stream). `key.master`
// must outlive the policy.
srtp_policy_t MakePolicy(const SrtpKey& key, srtp_ssrc_t ssrc, SrtpContext::Direction direction) {
  srtp_policy_t policy{};
  if (key.suite == SrtpSuite::kAesCm128HmacSha1_32) {
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp);
  } else {
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
  }
  // SRTCP keeps the 80-bit tag with both suites.
  srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
  policy.ssrc = ssrc;
  // libsrtp only reads the key, through a non-const pointer.
  policy.key = reinterpret_cast<unsigned char*>(const_cast<char*>(key.master.data()));
  policy.window_size = kReplayWindow;
  // A retransmission the relay forwards unchanged (same index, same payload) is protected
  // again rather than dropped; inbound duplicates are always replays.
  policy.allow_repeat_tx = direction == SrtpContext::Direction::kOutbound ? 1 : 0;
  policy.next = nullptr;
  return policy;
}

std::atomic<SrtpEngine> g_engine{SrtpEngine::kLibsrtp};

// A kNone context: the base class checks headers and passes packets through; nothing here is
// ever called.
class PlainContext final : public SrtpContext {
 public:
  explicit PlainContext(Direction direction)
      : SrtpContext(SrtpKey{SrtpSuite::kNone, ""}, direction, CurrentSrtpEngine()) {}

 private:
  SrtpResult DoProtectRtp(uint8_t*, size_t*) override { return SrtpResult::kOk; }
  SrtpResult DoUnprotectRtp(uint8_t*, size_t*) override { return SrtpResult::kOk; }
  SrtpResult DoProtectRtcp(uint8_t*, size_t*) override { return SrtpResult::kOk; }
  SrtpResult DoUnprotectRtcp(uint8_t*, size_t*) override { return SrtpResult::kOk; }
  absl::StatusOr<uint32_t> DoGetRoc(uint32_t) const override {
    return absl::FailedPreconditionError("plain RTP has no rollover counter");
  }
  absl::Status DoSetRoc(uint32_t, uint32_t) override {
    return absl::FailedPreconditionError("plain RTP has no rollover counter");
  }
};

// A context on libsrtp2: one session with a wildcard stream for the direction, plus one
// stream per SSRC whose rollover counter was restored.
class LibsrtpContext final : public SrtpContext {
 public:
  static absl::StatusOr<std::unique_ptr<SrtpContext>> Create(const SrtpKey& key, Direction d) {
    if (absl::Status status = InitLibsrtp(); !status.ok()) return status;
    std::unique_ptr<LibsrtpContext> ctx(new LibsrtpContext(key, d));
    const srtp_ssrc_t any{d == Direction::kInbound ? ssrc_any_inbound : ssrc_any_outbound, 0};
    const srtp_policy_t policy = MakePolicy(ctx->key(), any, d);
    if (srtp_err_status_t status = srtp_create(&ctx->session_, &policy);
        status != srtp_err_status_ok) {
      ctx->session_ = nullptr;
      return absl::InternalError(absl::StrCat("srtp_create failed: libsrtp error ", status));
    }
    return ctx;
  }

  ~LibsrtpContext() override {
    if (session_ != nullptr) srtp_dealloc(session_);
  }

 private:
  LibsrtpContext(const SrtpKey& key, Direction d) : SrtpContext(key, d, SrtpEngine::kLibsrtp) {}

  SrtpResult DoProtectRtp(uint8_t* buf, size_t* len) override {
    return Run(srtp_protect, buf, len);
  }
  SrtpResult DoUnprotectRtp(uint8_t* buf, size_t* len) override {
    return Run(srtp_unprotect, buf, len);
  }
  SrtpResult DoProtectRtcp(uint8_t* buf, size_t* len) override {
    return Run(srtp_protect_rtcp, buf, len);
  }
  SrtpResult DoUnprotectRtcp(uint8_t* buf, size_t* len) override {
    return Run(srtp_unprotect_rtcp, buf, len);
  }

  SrtpResult Run(srtp_err_status_t (*fn)(srtp_t, void*, int*), uint8_t* buf, size_t* len) {
    int n = static_cast<int>(*len);
    const SrtpResult result = FromLibsrtp(fn(session_, buf, &n));
    if (result == SrtpResult::kOk) *len = static_cast<size_t>(n);
    return result;
  }

  absl::StatusOr<uint32_t> DoGetRoc(uint32_t ssrc) const override {
    uint32_t roc = 0;
    if (srtp_get_stream_roc(session_, ssrc, &roc) != srtp_err_status_ok) {
      return absl::NotFoundError(absl::StrCat("no SRTP stream for SSRC ", ssrc));
    }
    // A restored counter takes effect with the stream's first packet; until then libsrtp
    // reports 0. Counters only grow, so the larger of the two is the stream's.
    for (const auto& [restored_ssrc, restored_roc] : restored_) {
      if (restored_ssrc == ssrc) roc = std::max(roc, restored_roc);
    }
    return roc;
  }

  absl::Status DoSetRoc(uint32_t ssrc, uint32_t roc) override {
    uint32_t current = 0;
    if (srtp_get_stream_roc(session_, ssrc, &current) == srtp_err_status_ok) {
      return absl::FailedPreconditionError(
          absl::StrCat("SSRC ", ssrc,
                       " already has SRTP state in this context; its rollover counter can "
                       "only be set before its first packet"));
    }
    // Wildcard policies create a stream on the first packet, with ROC 0; a stream for this
    // SSRC created now can carry the restored counter instead.
    const srtp_policy_t policy = MakePolicy(key(), srtp_ssrc_t{ssrc_specific, ssrc}, direction());
    if (srtp_err_status_t status = srtp_add_stream(session_, &policy);
        status != srtp_err_status_ok) {
      return absl::InternalError(absl::StrCat("srtp_add_stream failed: libsrtp error ", status));
    }
    if (srtp_err_status_t status = srtp_set_stream_roc(session_, ssrc, roc);
        status != srtp_err_status_ok) {
      srtp_remove_stream(session_, htonl(ssrc));  // this one takes network order
      return absl::InternalError(
          absl::StrCat("srtp_set_stream_roc failed: libsrtp error ", status));
    }
    restored_.emplace_back(ssrc, roc);
    return absl::OkStatus();
  }

  srtp_t session_ = nullptr;
  // Rollover counters given to SetRoc, reported by GetRoc until the stream's first packet.
  std::vector<std::pair<uint32_t, uint32_t>> restored_;
};

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

absl::StatusOr<SrtpSuite> ParseSuite(absl::string_view name) {
  if (name == kName80) return SrtpSuite::kAesCm128HmacSha1_80;
  if (name == kName32) return SrtpSuite::kAesCm128HmacSha1_32;
  return absl::InvalidArgumentError(absl::StrCat("unsupported SRTP crypto suite '",
                                                 absl::CHexEscape(name), "' (supported: ", kName80,
                                                 ", ", kName32, ")"));
}

std::string SuiteName(SrtpSuite suite) {
  switch (suite) {
    case SrtpSuite::kNone:
      return "NONE";
    case SrtpSuite::kAesCm128HmacSha1_80:
      return std::string(kName80);
    case SrtpSuite::kAesCm128HmacSha1_32:
      return std::string(kName32);
  }
  return "UNKNOWN";
}

size_t RtpTrailerSize(SrtpSuite suite) {
  switch (suite) {
    case SrtpSuite::kAesCm128HmacSha1_80:
      return 10;
    case SrtpSuite::kAesCm128HmacSha1_32:
      return 4;
    case SrtpSuite::kNone:
      break;
  }
  return 0;
}

size_t RtcpTrailerSize(SrtpSuite suite) { return suite == SrtpSuite::kNone ? 0 : 4 + 10; }

absl::Status ValidateKey(const SrtpKey& key) {
  switch (key.suite) {
    case SrtpSuite::kNone:
      if (!key.master.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "plain RTP (NONE) takes no key material, got ", key.master.size(), " bytes"));
      }
      return absl::OkStatus();
    case SrtpSuite::kAesCm128HmacSha1_80:
    case SrtpSuite::kAesCm128HmacSha1_32:
      if (key.master.size() != kKeyMaterialSize) {
        return absl::InvalidArgumentError(
            absl::StrCat(SuiteName(key.suite), " key material must be ", kKeyMaterialSize,
                         " bytes (", kMasterKeySize, "-byte master key + ", kMasterSaltSize,
                         "-byte master salt), got ", key.master.size()));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown SRTP suite value ", static_cast<int>(key.suite)));
}

std::string EncodeInlineKey(const std::string& master) { return absl::Base64Escape(master); }

absl::StatusOr<std::string> DecodeInlineKey(absl::string_view b64) {
  if (b64.empty()) return absl::InvalidArgumentError("inline key is empty");
  size_t padding = 0;
  for (size_t i = 0; i < b64.size(); ++i) {
    const char c = b64[i];
    if (c == '=') {
      ++padding;
    } else if (padding > 0 || !IsBase64Char(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("inline key is not valid base64: unexpected character '",
                       absl::CHexEscape(absl::string_view(&c, 1)), "' at offset ", i));
    }
  }
  if (padding > 2 || b64.size() % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("inline key is not valid base64: ", b64.size(),
                                                   " characters with ", padding, " of padding"));
  }
  std::string master;
  if (!absl::Base64Unescape(b64, &master)) {
    return absl::InvalidArgumentError("inline key is not valid base64");
  }
  if (master.size() != kKeyMaterialSize) {
    const size_t size = master.size();
    explicit_bzero(master.data(), master.size());
    return absl::InvalidArgumentError(
        absl::StrCat("inline key decodes to ", size, " bytes, want ", kKeyMaterialSize, " (",
                     kMasterKeySize, "-byte master key + ", kMasterSaltSize, "-byte master salt)"));
  }
  return master;
}

SrtpKey GenerateKey(SrtpSuite suite, core::Random& rng) {
  if (suite == SrtpSuite::kNone) return SrtpKey{SrtpSuite::kNone, ""};
  return SrtpKey{suite, rng.Bytes(kKeyMaterialSize)};
}

absl::string_view SrtpResultName(SrtpResult result) {
  switch (result) {
    case SrtpResult::kOk:
      return "ok";
    case SrtpResult::kAuthFailed:
      return "auth_failed";
    case SrtpResult::kReplay:
      return "replay";
    case SrtpResult::kMalformed:
      return "malformed";
    case SrtpResult::kOther:
      break;
  }
  return "other";
}

absl::Status ToStatus(SrtpResult result) {
  switch (result) {
    case SrtpResult::kOk:
      return absl::OkStatus();
    case SrtpResult::kAuthFailed:
      return absl::DataLossError("SRTP authentication failed");
    case SrtpResult::kReplay:
      return absl::AlreadyExistsError("SRTP replay: packet index already seen or too old");
    case SrtpResult::kMalformed:
      return absl::InvalidArgumentError("malformed RTP/RTCP packet");
    case SrtpResult::kOther:
      break;
  }
  return absl::InternalError("SRTP processing failed");
}

void SetSrtpEngine(SrtpEngine engine) { g_engine.store(engine, std::memory_order_relaxed); }

SrtpEngine CurrentSrtpEngine() { return g_engine.load(std::memory_order_relaxed); }

absl::StatusOr<SrtpEngine> ParseSrtpEngine(absl::string_view name) {
  if (name == "libsrtp") return SrtpEngine::kLibsrtp;
  if (name == "openssl") return SrtpEngine::kOpenssl;
  return absl::InvalidArgumentError(absl::StrCat("unknown SRTP engine '", absl::CHexEscape(name),
                                                 "' (supported: libsrtp, openssl)"));
}

absl::string_view SrtpEngineName(SrtpEngine engine) {
  return engine == SrtpEngine::kOpenssl ? "openssl" : "libsrtp";
}

absl::StatusOr<std::unique_ptr<SrtpContext>> SrtpContext::Create(const SrtpKey& key, Direction d) {
  if (absl::Status status = ValidateKey(key); !status.ok()) return status;
  if (key.suite == SrtpSuite::kNone) return std::make_unique<PlainContext>(d);
  if (CurrentSrtpEngine() == SrtpEngine::kOpenssl) return CreateOpensslSrtpContext(key, d);
  return LibsrtpContext::Create(key, d);
}

SrtpContext::~SrtpContext() { explicit_bzero(key_.master.data(), key_.master.size()); }

SrtpResult SrtpContext::ProtectRtp(uint8_t* buf, size_t* len, size_t capacity) {
  if (len == nullptr || *len > kMaxPacketSize || !IsValidRtp(buf, *len)) {
    return SrtpResult::kMalformed;
  }
  if (direction_ != Direction::kOutbound) return SrtpResult::kOther;
  if (key_.suite == SrtpSuite::kNone) return SrtpResult::kOk;
  if (capacity < *len + kMaxTrailer) return SrtpResult::kOther;
  return DoProtectRtp(buf, len);
}

SrtpResult SrtpContext::UnprotectRtp(uint8_t* buf, size_t* len) {
  const size_t trailer = RtpTrailerSize(key_.suite);
  if (len == nullptr || *len > kMaxPacketSize || *len < trailer ||
      !IsValidRtp(buf, *len - trailer)) {
    return SrtpResult::kMalformed;
  }
  if (direction_ != Direction::kInbound) return SrtpResult::kOther;
  if (key_.suite == SrtpSuite::kNone) return SrtpResult::kOk;
  return DoUnprotectRtp(buf, len);
}

SrtpResult SrtpContext::ProtectRtcp(uint8_t* buf, size_t* len, size_t capacity) {
  if (len == nullptr || *len > kMaxPacketSize || !IsValidRtcp(buf, *len)) {
    return SrtpResult::kMalformed;
  }
  if (direction_ != Direction::kOutbound) return SrtpResult::kOther;
  if (key_.suite == SrtpSuite::kNone) return SrtpResult::kOk;
  if (capacity < *len + kMaxTrailer) return SrtpResult::kOther;
  return DoProtectRtcp(buf, len);
}

SrtpResult SrtpContext::UnprotectRtcp(uint8_t* buf, size_t* len) {
  const size_t trailer = RtcpTrailerSize(key_.suite);
  if (len == nullptr || *len > kMaxPacketSize || *len < trailer ||
      !IsValidRtcp(buf, *len - trailer)) {
    return SrtpResult::kMalformed;
  }
  if (direction_ != Direction::kInbound) return SrtpResult::kOther;
  if (key_.suite == SrtpSuite::kNone) return SrtpResult::kOk;
  return DoUnprotectRtcp(buf, len);
}

absl::StatusOr<uint32_t> SrtpContext::GetRoc(uint32_t ssrc) const {
  if (key_.suite == SrtpSuite::kNone) {
    return absl::FailedPreconditionError("plain RTP has no rollover counter");
  }
  return DoGetRoc(ssrc);
}

absl::Status SrtpContext::SetRoc(uint32_t ssrc, uint32_t roc) {
  if (key_.suite == SrtpSuite::kNone) {
    return absl::FailedPreconditionError("plain RTP has no rollover counter");
  }
  return DoSetRoc(ssrc, roc);
}

}  // namespace rwg::media_relay
