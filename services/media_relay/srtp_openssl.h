// rwg's SRTP engine (SrtpEngine::kOpenssl): RFC 3711 with AES_CM_128_HMAC_SHA1_80 and _32 on
// OpenSSL 3, for SrtpContext. Packets, results, replay protection and rollover counters are
// those of the libsrtp engine, byte for byte; what differs is the cost: each context owns its
// cipher and MAC state, so a packet costs the same whatever the number of contexts in the
// process, and nothing is allocated per packet.
//
// Each context keeps state for at most kOpensslMaxSsrcs SSRCs (RTP and RTCP of one SSRC share
// one entry); packets of further SSRCs are kOther, and SetRoc for one is RESOURCE_EXHAUSTED.
// An inbound context takes an SSRC on only after one of its packets authenticates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/media_relay/srtp.h"

namespace rwg::media_relay {

inline constexpr size_t kOpensslMaxSsrcs = 16;

// A context of the OpenSSL engine, whatever CurrentSrtpEngine() says. INVALID_ARGUMENT for a
// key that fails ValidateKey or is kNone (SrtpContext::Create handles kNone itself); INTERNAL
// when OpenSSL cannot set up AES-128-CTR or HMAC-SHA1.
absl::StatusOr<std::unique_ptr<SrtpContext>> CreateOpensslSrtpContext(
    const SrtpKey& key, SrtpContext::Direction direction);

// Labels of the session keys derived from a master key (RFC 3711 §4.3.1, §4.3.2).
enum class SrtpKeyLabel : uint8_t {
  kRtpEncryption = 0,
  kRtpAuthentication = 1,
  kRtpSalt = 2,
  kRtcpEncryption = 3,
  kRtcpAuthentication = 4,
  kRtcpSalt = 5,
};

// Fills out[0, out_len) with the session key `label` of a kMasterKeySize-byte master key and
// kMasterSaltSize-byte master salt, with the AES-CM PRF and a key derivation rate of 0 (SDES
// has no other). INVALID_ARGUMENT for wrong sizes, INTERNAL for an OpenSSL failure.
absl::Status DeriveSrtpSessionKey(absl::string_view master_key, absl::string_view master_salt,
                                  SrtpKeyLabel label, uint8_t* out, size_t out_len);

}  // namespace rwg::media_relay
