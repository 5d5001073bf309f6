// The small part of SDP (RFC 4566, RFC 4568 a=crypto, RFC 3605 a=rtcp) that rwg-media-peer
// needs to talk to an SDP-driven relay: one audio stream with PCMU and optional SDES keys.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::media_peer {

struct SdpCrypto {
  int tag = 1;
  std::string suite;       // e.g. "AES_CM_128_HMAC_SHA1_80"
  std::string inline_key;  // base64 key material, without "|lifetime" or "|MKI:len"
};

struct SdpAudio {
  std::string address;  // connection address (media-level c=, else session-level)
  uint16_t port = 0;    // RTP port from m=audio
  std::string proto;    // "RTP/AVP", "RTP/SAVP", ...
  std::vector<int> formats;
  uint16_t rtcp_port = 0;    // a=rtcp, 0 when absent (RTP port + 1)
  std::string rtcp_address;  // a=rtcp address when given
  std::vector<SdpCrypto> cryptos;
};

// An SDP body (CRLF line ends) offering or answering `audio` with PCMU/8000, 20 ms packets.
// a=rtcp is written when audio.rtcp_port is not 0.
std::string BuildAudioSdp(const SdpAudio& audio, uint64_t session_id);

// The first m=audio stream of `sdp`. INVALID_ARGUMENT when there is none, or it has no
// connection address or a bad port.
absl::StatusOr<SdpAudio> ParseAudioSdp(absl::string_view sdp);

}  // namespace rwg::media_peer
