// SDP offers and answers from phones and the iPBX: ReadAudio (with and without SRTP required),
// ParseCrypto on the a=crypto values, and RewriteAudio toward the other side. Property: what
// RewriteAudio writes from an SDP that ReadAudio took reads back with the relay's address,
// port (0 when the stream was refused) and key (none when refused), and the same payload
// types.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "services/sip_edge/sdp.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::sip_edge;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string sdp(reinterpret_cast<const char*>(data) + 1, size - 1);

  (void)ParseCrypto(sdp);  // the value of one a=crypto line
  absl::StatusOr<AudioStream> plain = ReadAudio(sdp, false);
  absl::StatusOr<AudioStream> secure = ReadAudio(sdp, true);
  if (secure.ok()) RWG_FUZZ_CHECK("sdp", plain.ok() && secure->secure);

  const bool ipv6 = mode & 1;
  const std::string address = ipv6 ? "2001:db8::10" : "192.0.2.10";
  const int port = 20000 + 2 * (mode >> 4);
  std::optional<SdesCrypto> key;
  if (mode & 2) {
    key = SdesCrypto{1 + ((mode >> 2) & 1),
                     (mode & 8) ? "AES_CM_128_HMAC_SHA1_32" : "AES_CM_128_HMAC_SHA1_80",
                     std::string(30, '\x42')};
  }
  const bool avp_with_crypto = mode & 4;
  absl::StatusOr<std::string> out = RewriteAudio(sdp, address, port, key, avp_with_crypto);
  if (!plain.ok() || !out.ok()) return 0;

  absl::StatusOr<AudioStream> back = ReadAudio(*out, false);
  RWG_FUZZ_CHECK("sdp", back.ok());
  RWG_FUZZ_CHECK("sdp", back->address == address);
  const int expected_port = plain->port == 0 ? 0 : port;  // a refused stream stays refused
  RWG_FUZZ_CHECK("sdp", back->port == expected_port);
  RWG_FUZZ_CHECK("sdp", back->rtcp_port == (expected_port == 0 ? 0 : port + 1));
  RWG_FUZZ_CHECK("sdp", back->payload_types == plain->payload_types);
  RWG_FUZZ_CHECK("sdp", back->secure == (key.has_value() && !avp_with_crypto));
  if (key && expected_port != 0) {
    RWG_FUZZ_CHECK("sdp", back->crypto.size() == 1 && back->crypto[0] == *key);
  } else {
    RWG_FUZZ_CHECK("sdp", back->crypto.empty());
  }
  return 0;
}
