#include "services/core/relay_instances.h"

#include <optional>

#include "nlohmann/json.hpp"
#include "services/core/json.h"

namespace rwg::core {

std::string EncodeRelayHeartbeat(const RelayHeartbeat& h) {
  return JsonDump({{"grpc", h.grpc},
                   {"media", h.media},
                   {"ports_free", h.ports_free},
                   {"ports_used", h.ports_used},
                   {"sessions", h.sessions},
                   {"draining", h.draining},
                   {"seen", h.seen_unix}});
}

absl::StatusOr<RelayHeartbeat> DecodeRelayHeartbeat(std::string_view text) {
  std::optional<nlohmann::json> j = JsonObject(text);
  if (!j) return absl::DataLossError("relay heartbeat: not a JSON object");
  RelayHeartbeat h;
  JsonFields f(*j, "relay heartbeat");
  f.Get("grpc", &h.grpc);
  f.Get("media", &h.media);
  f.Get("ports_free", &h.ports_free);
  f.Get("ports_used", &h.ports_used);
  f.Get("sessions", &h.sessions);
  f.Get("draining", &h.draining);
  f.Get("seen", &h.seen_unix);
  if (!f.status().ok()) return f.status();
  return h;
}

}  // namespace rwg::core
