// The media relays' heartbeats as sip-edge reads them from Redis (core::DecodeRelayHeartbeat,
// UsableRelays): a damaged or hostile record must be skipped, never crash the SIP thread.
// Property: a heartbeat that decodes is written again (EncodeRelayHeartbeat) as one that
// decodes to the same. The input is split into name/value rows at NUL bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "services/core/relay_instances.h"
#include "services/sip_edge/media_relays.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts = absl::StrSplit(text, '\0');
  std::vector<std::pair<std::string, std::string>> rows;
  for (size_t i = 0; i + 1 < parts.size(); i += 2) rows.emplace_back(parts[i], parts[i + 1]);
  if (parts.size() % 2 == 1) rows.emplace_back("relay-0", parts.back());
  for (const auto& [name, value] : rows) {
    absl::StatusOr<rwg::core::RelayHeartbeat> h = rwg::core::DecodeRelayHeartbeat(value);
    if (!h.ok()) {
      RWG_FUZZ_CHECK("relay_heartbeat", h.status().code() == absl::StatusCode::kDataLoss);
      continue;
    }
    absl::StatusOr<rwg::core::RelayHeartbeat> again =
        rwg::core::DecodeRelayHeartbeat(rwg::core::EncodeRelayHeartbeat(*h));
    RWG_FUZZ_CHECK("relay_heartbeat", again.ok() && *again == *h);
  }
  std::vector<rwg::sip_edge::RelayCandidate> c =
      rwg::sip_edge::UsableRelays(rows, absl::FromUnixSeconds(1'800'000'000), absl::Seconds(15));
  RWG_FUZZ_CHECK("relay_heartbeat", c.size() <= rows.size());
  (void)rwg::sip_edge::LeastLoaded(c);
  return 0;
}
