// SRTP for the media relay: SDES key material (RFC 4568 a=crypto) and the per-direction
// crypto contexts (RFC 3711, on libsrtp2) that turn SRTP from a phone into RTP or SRTP for the
// iPBX and back.
//
// Each direction of each leg has its own SrtpContext: an inbound one unprotects what the relay
// receives on that leg, an outbound one protects what it sends. Transcrypting a packet from
// leg A to leg B is UnprotectRtp on A's inbound context, then ProtectRtp on B's outbound
// context, in place in one buffer. A key change (re-INVITE) replaces the context with one
// built from the new key; the RTP stream itself carries on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/core/random.h"

struct srtp_ctx_t_;

namespace rwg::media_relay {

enum class SrtpSuite {
  kNone,  // plain RTP/AVP: no key, packets pass through unchanged
  kAesCm128HmacSha1_80,
  kAesCm128HmacSha1_32,
};

// Parses an SDES crypto-suite name ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32").
// Anything else, "NONE" included, is INVALID_ARGUMENT naming the suite.
absl::StatusOr<SrtpSuite> ParseSuite(absl::string_view name);
// The SDES name of `suite`; "NONE" for kNone.
std::string SuiteName(SrtpSuite suite);

// Octets the suite appends to an RTP packet (the authentication tag): 10, 4, or 0 for kNone.
size_t RtpTrailerSize(SrtpSuite suite);
// Octets the suite appends to an RTCP packet: E flag and SRTCP index (4) plus an 80-bit tag,
// for both suites (RFC 4568 §6.2); 0 for kNone.
size_t RtcpTrailerSize(SrtpSuite suite);

// SDES key material of both AES_CM_128 suites: 16-byte master key then 14-byte master salt.
inline constexpr size_t kMasterKeySize = 16;
inline constexpr size_t kMasterSaltSize = 14;
inline constexpr size_t kKeyMaterialSize = kMasterKeySize + kMasterSaltSize;

struct SrtpKey {
  SrtpSuite suite = SrtpSuite::kNone;
  std::string master;  // kKeyMaterialSize raw bytes; empty for kNone
};

// INVALID_ARGUMENT when the key material does not fit the suite (wrong length, or any key
// material with kNone).
absl::Status ValidateKey(const SrtpKey& key);
// Base64 of the key material, as in "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<here>".
std::string EncodeInlineKey(const std::string& master);
// The key material from the base64 of an inline key (without "|lifetime" or "|MKI:len",
// which the SDP layer splits off). INVALID_ARGUMENT saying what is wrong: not base64, or not
// kKeyMaterialSize bytes.
absl::StatusOr<std::string> DecodeInlineKey(absl::string_view b64);
// Fresh key material for `suite` (none for kNone).
SrtpKey GenerateKey(SrtpSuite suite, core::Random& rng);

// Outcome of one packet, allocation-free, for the relay's per-stream counters.
enum class SrtpResult : uint8_t {
  kOk,
  kAuthFailed,  // authentication tag mismatch: tampered, or another key
  kReplay,      // packet index already accepted, or older than the replay window
  kMalformed,   // too short, not version 2, header longer than the packet
  kOther,       // wrong direction, buffer too small, or a libsrtp failure
};
// Short lower-case name for metric labels: "ok", "auth_failed", "replay", "malformed", "other".
absl::string_view SrtpResultName(SrtpResult result);
// The result as a status, for logs and control-plane callers (allocates; not for each packet).
absl::Status ToStatus(SrtpResult result);

// Room a caller must leave after a packet it protects: libsrtp's largest trailer (tag and
// MKI) plus the SRTCP E flag and index.
inline constexpr size_t kMaxTrailer = 16 + 128 + 4;

// One direction of one leg. Not thread-safe: a relay session drives its contexts from one
// thread. Buffers should be 4-byte aligned, as libsrtp reads headers as 32-bit words.
class SrtpContext {
 public:
  enum class Direction { kInbound, kOutbound };

  // INVALID_ARGUMENT for a key that fails ValidateKey. A kNone key gives a pass-through
  // context that only checks headers.
  static absl::StatusOr<std::unique_ptr<SrtpContext>> Create(const SrtpKey& key, Direction d);
  ~SrtpContext();
  SrtpContext(const SrtpContext&) = delete;
  SrtpContext& operator=(const SrtpContext&) = delete;

  SrtpSuite suite() const { return key_.suite; }
  Direction direction() const { return direction_; }

  // In place; `len` is updated only on kOk. Protect needs `capacity` >= *len + kMaxTrailer.
  // Protect on an inbound context, or unprotect on an outbound one, is kOther. The first
  // packet of a new SSRC allocates that stream's state once; later packets allocate nothing.
  SrtpResult ProtectRtp(uint8_t* buf, size_t* len, size_t capacity);
  SrtpResult UnprotectRtp(uint8_t* buf, size_t* len);
  SrtpResult ProtectRtcp(uint8_t* buf, size_t* len, size_t capacity);
  SrtpResult UnprotectRtcp(uint8_t* buf, size_t* len);

  // Rollover counter of the RTP stream with this SSRC, to persist a session's state.
  // NOT_FOUND for an SSRC this context has not seen; FAILED_PRECONDITION for kNone.
  absl::StatusOr<uint32_t> GetRoc(uint32_t ssrc) const;
  // Resumes a stream at `roc` after a restart: must come before the SSRC's first packet in
  // this context (FAILED_PRECONDITION otherwise, and for kNone). The stream's first packet
  // then has index roc * 65536 + its sequence number; the replay window starts there.
  absl::Status SetRoc(uint32_t ssrc, uint32_t roc);

 private:
  SrtpContext(const SrtpKey& key, Direction direction) : key_(key), direction_(direction) {}

  SrtpKey key_;
  Direction direction_;
  srtp_ctx_t_* session_ = nullptr;  // null for kNone
  // Rollover counters given to SetRoc, reported by GetRoc until the stream's first packet.
  std::vector<std::pair<uint32_t, uint32_t>> restored_;
};

}  // namespace rwg::media_relay
