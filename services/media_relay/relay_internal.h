// What relay.cc (sessions, the API, housekeeping) and relay_redis.cc (the sessions' Redis
// records, restore after a restart, the heartbeat) share: Redis key names, the legs' names,
// SRTP suite labels, building a leg's SRTP contexts, and the relay's metrics. Internal to
// the relay's library.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "services/core/crypto.h"
#include "services/core/keys.h"
#include "services/media_relay/relay.h"
#include "services/media_relay/session.h"
#include "services/media_relay/srtp.h"
#include "services/media_relay/worker.h"

namespace rwg::media_relay {

// SRTCP packets a restored outbound stream may have sent: 12 days of one report a second.
// Beyond, the record is damaged (the index is restored by protecting that many packets).
inline constexpr uint64_t kMaxRestoredSrtcp = uint64_t{1} << 20;

inline constexpr const char* kLegNames[2] = {"set", "icp"};

inline absl::StatusOr<SrtpSuite> SuiteOf(const std::string& s) {
  if (s.empty() || s == "RTP") return SrtpSuite::kNone;
  return ParseSuite(s);
}
inline std::string SuiteLabel(SrtpSuite s) { return s == SrtpSuite::kNone ? "RTP" : SuiteName(s); }

// New SRTP contexts for a leg from its keys (plain legs get pass-through contexts).
absl::Status BuildContexts(Leg& leg, bool inbound, bool outbound);

// A leg as Relay::Restore takes it back from its record (`context`: "relay:<id>:<leg name>",
// what its keys were sealed with), without its ports: the keys opened, the addresses, new SRTP
// contexts, each used stream's rollover counter (`roc_failed` hears of one the context refuses;
// the stream then starts at 0) and SRTCP index (advanced by protecting that many packets).
// DataLoss naming the key that does not open; BuildContexts' error for keys it refuses.
absl::Status RestoreLegState(const LegRecord& lr, const core::SecretBox& box,
                             const std::string& context, Leg& leg,
                             const std::function<void(uint32_t, const absl::Status&)>& roc_failed);

struct RelayMetrics {
  prometheus::Gauge& sessions;
  prometheus::Gauge& ports_free;
  prometheus::Gauge& ports_used;
  prometheus::Family<prometheus::Counter>& packets;
  prometheus::Family<prometheus::Counter>& bytes;
  prometheus::Family<prometheus::Counter>& drops;
  prometheus::Counter& auth_failures;
  prometheus::Counter& idle;
  prometheus::Counter& internal_errors;
  prometheus::Counter& redis_write_failures;
  // The children of the families, looked up once: [leg][direction] and [leg][reason].
  std::array<std::array<prometheus::Counter*, 2>, 2> packets_by{}, bytes_by{};
  std::array<std::array<prometheus::Counter*, kDropReasons>, 2> drops_by{};

  explicit RelayMetrics(prometheus::Registry& r)
      : sessions(prometheus::BuildGauge()
                     .Name("rwg_media_relay_sessions")
                     .Help("Relay sessions on this instance")
                     .Register(r)
                     .Add({})),
        ports_free(prometheus::BuildGauge()
                       .Name("rwg_media_relay_ports_free")
                       .Help("UDP ports of the pool not in use")
                       .Register(r)
                       .Add({})),
        ports_used(prometheus::BuildGauge()
                       .Name("rwg_media_relay_ports_used")
                       .Help("UDP ports of the pool in use (RTP and RTCP)")
                       .Register(r)
                       .Add({})),
        packets(prometheus::BuildCounter()
                    .Name("rwg_media_relay_packets_total")
                    .Help("Packets relayed, by leg (set, icp) and direction (in, out)")
                    .Register(r)),
        bytes(prometheus::BuildCounter()
                  .Name("rwg_media_relay_bytes_total")
                  .Help("Bytes relayed, by leg and direction")
                  .Register(r)),
        drops(prometheus::BuildCounter()
                  .Name("rwg_media_relay_dropped_total")
                  .Help("Packets dropped, by leg and reason")
                  .Register(r)),
        auth_failures(prometheus::BuildCounter()
                          .Name("rwg_media_relay_srtp_auth_failures_total")
                          .Help("SRTP/SRTCP packets that failed authentication")
                          .Register(r)
                          .Add({})),
        idle(prometheus::BuildCounter()
                 .Name("rwg_media_relay_idle_sessions_total")
                 .Help("Sessions that went idle (no packet for the idle timeout)")
                 .Register(r)
                 .Add({})),
        internal_errors(prometheus::BuildCounter()
                            .Name("rwg_media_relay_internal_errors_total")
                            .Help("Exceptions caught on the packet path (the packet dropped) or "
                                  "in an API handler (answered INTERNAL); should stay 0")
                            .Register(r)
                            .Add({})),
        redis_write_failures(prometheus::BuildCounter()
                                 .Name("rwg_media_relay_redis_write_failures_total")
                                 .Help("Redis writes that failed: a session's removal, an idle "
                                       "event, the heartbeat (tried again every second)")
                                 .Register(r)
                                 .Add({})) {
    SetPacketPathErrorCounter(&internal_errors);
    for (int l = 0; l < 2; ++l) {
      for (int d = 0; d < 2; ++d) {
        const char* dir = d == 0 ? "in" : "out";
        packets_by[l][d] = &packets.Add({{"leg", kLegNames[l]}, {"direction", dir}});
        bytes_by[l][d] = &bytes.Add({{"leg", kLegNames[l]}, {"direction", dir}});
      }
      for (int r = 0; r < kDropReasons; ++r) {
        drops_by[l][r] =
            &drops.Add({{"leg", kLegNames[l]}, {"reason", DropName(static_cast<Drop>(r))}});
      }
    }
  }

  // Adds what a counter grew by since it was last counted.
  static void Feed(prometheus::Counter& c, uint64_t& counted, uint64_t value) {
    if (value > counted) c.Increment(static_cast<double>(value - counted));
    counted = value;
  }
};

}  // namespace rwg::media_relay
