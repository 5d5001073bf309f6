// A session record read back at a relay's restart, through the whole restore of each leg but
// its ports: SessionRecordFromJson, then RestoreLegState (keys opened with the relay's secret
// box, SRTP contexts built from whatever suite and key the record gives, rollover counters and
// SRTCP indexes applied). Each input is tried twice: as it is (its sealed keys, fuzzed bytes,
// meet SecretBox::Open) and with the text of each sealed key sealed properly first, so that key
// bytes of any length and content reach the SRTP contexts. SRTCP counts are capped at 64 here:
// only the length of a loop depends on them (the record's own limit is checked by
// relay_session_record_fuzz). Properties: a restored leg has its outbound SRTP context, and
// its inbound one exactly when it can decrypt (plain RTP, or the peer's key known: a session
// restored between offer and answer has none yet, and its packets are dropped until the key
// comes); one that fails is an error, never an exception or a crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "services/core/crypto.h"
#include "services/media_relay/relay.h"
#include "services/media_relay/relay_internal.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::media_relay;

namespace {

const rwg::core::SecretBox& Box() {
  static rwg::fuzz::FixedRandom rng;
  static const std::unique_ptr<rwg::core::SecretBox> box =
      *rwg::core::SecretBox::Create(std::string(32, '\x6b'), rng);
  return *box;
}

void Restore(const LegRecord& lr, const std::string& context) {
  Leg leg;
  absl::Status st = RestoreLegState(lr, Box(), context, leg, [](uint32_t, const absl::Status&) {});
  if (!st.ok()) return;
  RWG_FUZZ_CHECK("relay_restore", leg.outbound != nullptr);
  RWG_FUZZ_CHECK("relay_restore", (leg.inbound != nullptr) ==
                                      (lr.suite == SrtpSuite::kNone || !leg.remote_key.empty()));
  RWG_FUZZ_CHECK("relay_restore", leg.suite == lr.suite);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<SessionRecord> rec = SessionRecordFromJson(json);
  if (!rec.ok()) return 0;
  for (int l = 0; l < 2; ++l) {
    LegRecord lr = rec->legs[l];
    for (auto* slots : {&lr.in, &lr.out}) {
      for (SsrcState& st : *slots) st.srtcp_sent = std::min<uint64_t>(st.srtcp_sent, 64);
    }
    const std::string context = absl::StrCat("relay:fuzz:", kLegNames[l]);
    Restore(lr, context);
    for (auto [sealed, which] :
         {std::pair{&lr.sealed_local_key, ":local"}, std::pair{&lr.sealed_remote_key, ":remote"}}) {
      if (sealed->has_value()) *sealed = Box().Seal(**sealed, context + which);
    }
    Restore(lr, context);
  }
  return 0;
}
