// Emergency numbers by location (R-EMERG): remote workers share one public address, so an
// emergency call is routed by the caller's location, not by where it comes from. The admin
// keeps a table (rwgctl emergency ...) of special numbers per location and the number to dial
// for each; the SIP edge rewrites a phone's call to a special number for the phone's device
// location. Locations are administrative paths ("FR/Paris/15e"); a route for "FR" serves
// every location under FR that has none of its own, and "*" serves every location.
//
// Redis: hash rwg:emergency, field "<location>\n<number>", value JSON; rwg:emergency:rev is
// incremented by every write so that readers can cache the table.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/core/keys.h"
#include "services/core/redis.h"

namespace rwg::core {

inline constexpr char kAnyLocation[] = "*";

struct EmergencyRoute {
  std::string location;  // "*" or segments joined by "/"
  std::string number;    // what the phone dials, e.g. 112
  std::string dial;      // what rwg sends to the iPBX instead
  std::string description;

  bool operator==(const EmergencyRoute&) const = default;
};

// Every problem with `r`, as "field: message" strings (empty when valid). Trims first.
std::vector<std::pair<std::string, std::string>> NormalizeEmergencyRoute(EmergencyRoute& r);

// The route that applies to a call from `location` to `number`: the route of the location
// itself, else of its nearest parent, else of "*"; none when no route matches.
std::optional<EmergencyRoute> ResolveEmergency(const std::vector<EmergencyRoute>& routes,
                                               absl::string_view location,
                                               absl::string_view number);

// A stored route that cannot be used: its record is not JSON, has a field of the wrong type, or
// fails NormalizeEmergencyRoute (what a phone dials must never reach the iPBX unchecked).
struct DamagedEmergencyRoute {
  std::string location;  // from the record's key, as far as it can be read
  std::string number;
  std::string error;
};

// The whole table: the usable routes (sorted by location then number) and the damaged ones,
// which routing leaves out; one damaged record does not take the others with it.
struct EmergencyTable {
  std::vector<EmergencyRoute> routes;
  std::vector<DamagedEmergencyRoute> damaged;
};

class EmergencyStore {
 public:
  explicit EmergencyStore(RedisClient& redis) : redis_(redis) {}
  // Adds or replaces the route for (location, number).
  absl::Status Put(const EmergencyRoute& r);
  // False when there was no such route.
  absl::StatusOr<bool> Remove(const std::string& location, const std::string& number);
  // Every route.
  absl::StatusOr<EmergencyTable> List();

 private:
  RedisClient& redis_;
};

}  // namespace rwg::core
