// SDP for calls through the gateway (R-MEDIA, SIP edge part 2): reading the audio stream of
// an offer or answer with its SDES keys (RFC 4568 a=crypto), and writing the SDP one side
// sees, with the media relay's address, port, profile and key in place of the other side's.
// Parsing and printing are sofia-sip's SDP library; the a=crypto grammar is checked here.
//
// Errors say what a SIP answer should say: InvalidArgument for SDP that does not parse or
// an a=crypto line that is malformed (400 Bad Request), FailedPrecondition for a well-formed
// offer rwg cannot accept, e.g. plain RTP where SRTP is required or no usable crypto suite
// (488 Not Acceptable Here). The message names the line and field.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::sip_edge {

// One SDES key as rwg uses it: a suite it supports and a 30-byte master key + salt.
struct SdesCrypto {
  int tag = 1;
  std::string suite;  // AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32
  std::string key;    // 30 bytes: 16 of master key, 14 of salt

  bool operator==(const SdesCrypto&) const = default;
};

// Parses the value of an a=crypto attribute ("1 AES_CM_128_HMAC_SHA1_80 inline:...").
// InvalidArgument when it is malformed; FailedPrecondition when it is well formed but not
// usable here (unknown suite, several keys, MKI, session parameters rwg does not apply).
absl::StatusOr<SdesCrypto> ParseCrypto(absl::string_view value);
// The a=crypto value for `c` (without "a=crypto:").
std::string FormatCrypto(const SdesCrypto& c);

// The first audio stream of a session description.
struct AudioStream {
  std::string address;             // media-level c= or else session-level c=
  int port = 0;                    // 0: the stream is refused
  int rtcp_port = 0;               // a=rtcp, else port + 1
  bool secure = false;             // RTP/SAVP (RTP/AVP otherwise)
  std::vector<SdesCrypto> crypto;  // usable a=crypto lines, in the order given
  std::string mode;                // sendrecv, sendonly, recvonly or inactive
  std::vector<int> payload_types;
};

// Reads the first audio stream. With `require_srtp`, an offer without RTP/SAVP and a usable
// key is refused (FailedPrecondition, for a 488).
absl::StatusOr<AudioStream> ReadAudio(absl::string_view sdp, bool require_srtp);

// The session description for the other side: the same codecs and direction, the first audio
// stream at `address`:`port` (RTCP on port + 1), RTP/SAVP with `crypto` or RTP/AVP without,
// the origin's address replaced and its version increased, no other stream's address kept.
// An audio stream refused with port 0 stays refused (port 0).
// `avp_with_crypto`: RTP/AVP with the a=crypto line (best-effort SRTP: the answerer may take
// the key or answer plain RTP), the MiVoice way toward the iPBX.
absl::StatusOr<std::string> RewriteAudio(absl::string_view sdp, const std::string& address,
                                         int port, const std::optional<SdesCrypto>& crypto,
                                         bool avp_with_crypto = false);

// rwg's own offer, for a call whose caller sent none (a delayed offer: the caller answers in
// its ACK): one audio stream with G.711 µ-law and A-law, G.722 and telephone-event, at
// 0.0.0.0 until RewriteAudio puts the relay's address in.
std::string OwnOffer();

}  // namespace rwg::sip_edge
