// The TLS keep-alive framing (PingDetector) on the plaintext of a phone's TLS connection.
// Property: the pings counted do not depend on how the stream is cut into reads.
#include <cstddef>
#include <cstdint>
#include <string>

#include "services/sip_edge/tls_keepalive.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t cut = 1 + data[0] % 64;
  const std::string stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  rwg::sip_edge::PingDetector whole;
  const int pings = whole.Feed(stream);

  rwg::sip_edge::PingDetector pieces;
  int counted = 0;
  for (size_t i = 0; i < stream.size(); i += cut) counted += pieces.Feed(stream.substr(i, cut));
  RWG_FUZZ_CHECK("ping_detector", counted == pings);
  RWG_FUZZ_CHECK("ping_detector", whole.AtMessageBoundary() == pieces.AtMessageBoundary());
  return 0;
}
