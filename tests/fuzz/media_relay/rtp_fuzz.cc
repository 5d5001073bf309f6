// RTP/RTCP header checks on any datagram a relay port receives. Properties: a valid RTP
// header lies within the packet; the fixed-header fields are there exactly when the packet
// holds a fixed header.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "services/media_relay/rtp.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::media_relay;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy, so that any read past the packet is caught.
  std::unique_ptr<uint8_t[]> buf(new uint8_t[size]);
  if (size > 0) std::memcpy(buf.get(), data, size);
  const uint8_t* p = buf.get();
  (void)IsRtcp(p, size);
  std::optional<size_t> h = RtpHeaderSize(p, size);
  if (h) RWG_FUZZ_CHECK("rtp", *h >= kRtpHeaderSize && *h <= size);
  RWG_FUZZ_CHECK("rtp", IsValidRtp(p, size) == h.has_value());
  (void)IsValidRtcp(p, size);
  RWG_FUZZ_CHECK("rtp", RtpSequence(p, size).has_value() == (size >= kRtpHeaderSize));
  (void)RtpTimestamp(p, size);
  (void)RtpSsrc(p, size);
  (void)RtpPayloadType(p, size);
  RWG_FUZZ_CHECK("rtp", RtcpSsrc(p, size).has_value() == (size >= kRtcpHeaderSize));
  return 0;
}
