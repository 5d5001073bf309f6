// The SIP edge's housekeeping: Redis work that runs once a second on a thread of its own, so
// that a slow or hung Redis never holds up the SIP thread. Each round advertises this instance
// and reads the others' (instances.h), sets the gauges (registered devices, usable media
// relays, licences, Redis up), checks devices for changes, reads the bans (handed to the SIP
// thread: TakeFreshBans, MergeFreshBans) and the emergency table when its revision changed;
// every fifth round it ends the calls of dead instances (one surviving instance takes each).
// The thread starts with the object and stops with it.
#pragma once

#include <prometheus/gauge.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/core/bans.h"
#include "services/core/calls.h"
#include "services/core/clock.h"
#include "services/core/devices.h"
#include "services/core/emergency.h"
#include "services/core/redis.h"
#include "services/core/registrations.h"
#include "services/sip_edge/gateway_config.h"
#include "services/sip_edge/instances.h"
#include "services/sip_edge/protection.h"

namespace rwg::sip_edge {

// Bans as read from Redis, and when that read began.
struct FreshBans {
  std::vector<core::Ban> bans;
  absl::Time read_at;
};

// Puts `fresh` in force on the SIP thread. Bans this instance imposed (`recent`) after that
// read began are not in it yet and are kept in force; older ones are in it (or were lifted by
// an admin since) and are forgotten.
void MergeFreshBans(const FreshBans& fresh, Protection& protection, std::deque<core::Ban>& recent);

// What to do with the record of the call `id` (`record`, as stored) another instance wrote,
// when that instance is dead (`alive` says it is not): end the call here (the record decoded;
// its id the key's when it has none), or drop the record when it is damaged (DataLoss). Nullopt
// when the call is no orphan: `self`'s, its instance alive, or no instance can be read from it.
std::optional<absl::StatusOr<core::CallRecord>> OrphanCall(
    const std::string& id, const std::string& record, const std::string& self,
    const std::function<bool(const std::string&)>& alive);

struct HousekeepingGauges {
  prometheus::Gauge& redis_up;
  prometheus::Gauge& licences;
  prometheus::Gauge& registered;
  prometheus::Gauge& usable_relays;
};

struct HousekeepingOptions {
  std::string instance;
  absl::Duration period = absl::Seconds(1);
  absl::Duration relay_stale_after = absl::Seconds(15);
  int orphan_every = 5;  // rounds between two looks for orphan calls
};

class Housekeeping {
 public:
  virtual ~Housekeeping() = default;
  // The emergency table as last read (none before the first read).
  virtual std::shared_ptr<const std::vector<core::EmergencyRoute>> EmergencyRoutes() = 0;
  // The bans read since the last call, if any.
  virtual std::optional<FreshBans> TakeFreshBans() = 0;
  // This instance's calls recorded in Redis: not read back when looking for orphans.
  virtual void AddOwnCall(const std::string& id) = 0;
  virtual void DropOwnCall(const std::string& id) = 0;
};

// Starts the housekeeping thread. `end_orphan` gets the record of each call of a dead instance
// this instance took over, on the housekeeping thread; a damaged record of a dead instance is
// dropped there, with a warning.
std::unique_ptr<Housekeeping> StartHousekeeping(
    HousekeepingOptions options, core::RedisClient& redis, core::DeviceDirectory& devices,
    GatewayConfigWatcher& config, core::BindingStore& bindings, core::BanStore& banstore,
    InstanceDirectory& instances, core::Clock& clock, HousekeepingGauges gauges,
    std::function<void(core::CallRecord)> end_orphan);

}  // namespace rwg::sip_edge
