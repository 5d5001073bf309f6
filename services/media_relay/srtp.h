// SRTP for the media relay: SDES key material (RFC 4568 a=crypto) and the per-direction
// crypto contexts (RFC 3711) that turn SRTP from a phone into RTP or SRTP for the iPBX and
// back. Two engines implement the contexts, with identical packets and results: libsrtp2, and
// rwg's own on OpenSSL (srtp_openssl.h), whose cost per packet does not grow with the number
// of contexts in the process.
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
  kOther,       // wrong direction, buffer too small, an SSRC beyond what the context
                // tracks (openssl engine), or a failure inside the engine
};
// Short lower-case name for metric labels: "ok", "auth_failed", "replay", "malformed", "other".
absl::string_view SrtpResultName(SrtpResult result);
// The result as a status, for logs and control-plane callers (allocates; not for each packet).
absl::Status ToStatus(SrtpResult result);

// Room a caller must leave after a packet it protects: libsrtp's largest trailer (tag and
// MKI) plus the SRTCP E flag and index.
inline constexpr size_t kMaxTrailer = 16 + 128 + 4;

// The implementation behind the SrtpContexts created from now on, for the whole process.
enum class SrtpEngine {
  kLibsrtp,  // libsrtp2 (the default)
  kOpenssl,  // rwg's RFC 3711 implementation on OpenSSL 3
};
// Sets the engine of contexts created after the call; existing contexts keep theirs. Meant to
// be called once at startup, from an option.
void SetSrtpEngine(SrtpEngine engine);
SrtpEngine CurrentSrtpEngine();
// Parses an engine name: "libsrtp" or "openssl". Anything else is INVALID_ARGUMENT naming it.
absl::StatusOr<SrtpEngine> ParseSrtpEngine(absl::string_view name);
// "libsrtp" or "openssl".
absl::string_view SrtpEngineName(SrtpEngine engine);

// One direction of one leg. Not thread-safe: a relay session drives its contexts from one
// thread. Buffers should be 4-byte aligned, as libsrtp reads headers as 32-bit words.
class SrtpContext {
 public:
  enum class Direction { kInbound, kOutbound };

  // INVALID_ARGUMENT for a key that fails ValidateKey. A kNone key gives a pass-through
  // context that only checks headers. The context uses CurrentSrtpEngine().
  static absl::StatusOr<std::unique_ptr<SrtpContext>> Create(const SrtpKey& key, Direction d);
  virtual ~SrtpContext();
  SrtpContext(const SrtpContext&) = delete;
  SrtpContext& operator=(const SrtpContext&) = delete;

  SrtpSuite suite() const { return key_.suite; }
  Direction direction() const { return direction_; }
  // The engine this context was created with.
  SrtpEngine engine() const { return engine_; }

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

 protected:
  SrtpContext(const SrtpKey& key, Direction direction, SrtpEngine engine)
      : key_(key), direction_(direction), engine_(engine) {}
  const SrtpKey& key() const { return key_; }

 private:
  // What each engine does once the public methods above have checked the packet's header and
  // length, the direction and the room for the trailer; never called for kNone. `len` is
  // updated only on kOk.
  virtual SrtpResult DoProtectRtp(uint8_t* buf, size_t* len) = 0;
  virtual SrtpResult DoUnprotectRtp(uint8_t* buf, size_t* len) = 0;
  virtual SrtpResult DoProtectRtcp(uint8_t* buf, size_t* len) = 0;
  virtual SrtpResult DoUnprotectRtcp(uint8_t* buf, size_t* len) = 0;
  virtual absl::StatusOr<uint32_t> DoGetRoc(uint32_t ssrc) const = 0;
  virtual absl::Status DoSetRoc(uint32_t ssrc, uint32_t roc) = 0;

  SrtpKey key_;
  Direction direction_;
  SrtpEngine engine_;
};

}  // namespace rwg::media_relay
