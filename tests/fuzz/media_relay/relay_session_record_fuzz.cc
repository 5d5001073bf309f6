// A media relay session record as Relay::Restore reads it back from Redis at a restart
// (SessionRecordFromJson: the JSON-to-fields part, without ports, sockets, SRTP contexts or
// the secret key): a damaged record must be an error, never a crash. Properties: each
// direction's used SSRC slots come first; no restored SRTCP count is above the restore limit
// (the relay protects that many packets at the start).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "services/media_relay/relay.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<rwg::media_relay::SessionRecord> r = rwg::media_relay::SessionRecordFromJson(json);
  if (!r.ok()) return 0;
  for (const rwg::media_relay::LegRecord& leg : r->legs) {
    for (const auto* slots : {&leg.in, &leg.out}) {
      bool unused_seen = false;
      for (const rwg::media_relay::SsrcState& st : *slots) {
        RWG_FUZZ_CHECK("relay_session_record", !(st.used && unused_seen));
        unused_seen = unused_seen || !st.used;
        RWG_FUZZ_CHECK("relay_session_record", st.srtcp_sent <= (uint64_t{1} << 20));
      }
    }
  }
  return 0;
}
