#include "services/sip_edge/housekeeping.h"

#include <thread>
#include <unordered_set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/calls.h"
#include "services/core/keys.h"
#include "services/core/log.h"
#include "services/sip_edge/media_relays.h"

namespace rwg::sip_edge {

void MergeFreshBans(const FreshBans& fresh, Protection& protection, std::deque<core::Ban>& recent) {
  protection.SetBans(fresh.bans);
  for (auto it = recent.begin(); it != recent.end();) {
    if (it->since <= fresh.read_at) {
      it = recent.erase(it);
    } else {
      protection.AddBan(*it++);
    }
  }
}

std::optional<absl::StatusOr<core::CallRecord>> OrphanCall(
    const std::string& id, const std::string& record, const std::string& self,
    const std::function<bool(const std::string&)>& alive) {
  absl::StatusOr<core::CallRecord> r = core::DecodeCallRecord(record);
  // A damaged record still names its instance, mostly: a live instance's stays.
  const std::string owner = r.ok() ? r->instance : core::CallRecordOwner(record);
  if (owner.empty() || owner == self || alive(owner)) return std::nullopt;
  if (r.ok() && r->id.empty()) r->id = id;
  return r;
}

namespace {

class HousekeepingThread final : public Housekeeping {
 public:
  HousekeepingThread(HousekeepingOptions options, core::RedisClient& redis,
                     core::DeviceDirectory& devices, GatewayConfigWatcher& config,
                     core::BindingStore& bindings, core::BanStore& banstore,
                     InstanceDirectory& instances, core::Clock& clock, HousekeepingGauges gauges,
                     std::function<void(core::CallRecord)> end_orphan)
      : options_(std::move(options)),
        redis_(redis),
        devices_(devices),
        config_(config),
        bindings_(bindings),
        banstore_(banstore),
        instances_(instances),
        clock_(clock),
        gauges_(gauges),
        end_orphan_(std::move(end_orphan)) {
    thread_ = std::thread([this] { Run(); });
  }

  ~HousekeepingThread() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  std::shared_ptr<const std::vector<core::EmergencyRoute>> EmergencyRoutes() override {
    absl::MutexLock lock(&mu_);
    return emergency_routes_;
  }

  std::optional<FreshBans> TakeFreshBans() override {
    absl::MutexLock lock(&mu_);
    std::optional<FreshBans> out = std::move(fresh_bans_);
    fresh_bans_.reset();
    return out;
  }

  void AddOwnCall(const std::string& id) override {
    absl::MutexLock lock(&own_calls_mu_);
    own_calls_.insert(id);
  }

  void DropOwnCall(const std::string& id) override {
    absl::MutexLock lock(&own_calls_mu_);
    own_calls_.erase(id);
  }

 private:
  void Run() {
    while (true) {
      Round();
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.period)) return;
    }
  }

  void Round() {
    if (absl::Status s = instances_.Advertise(); s.ok() != advertised_) {
      advertised_ = s.ok();
      // Said once per change: the round is every second, rwg_sip_edge_redis_up tells the rest.
      if (!advertised_) {
        core::log::Warn("cannot advertise this instance", {{"error", std::string(s.message())}});
      }
    }
    UpdateRegisteredGauge();
    if (absl::Status s = devices_.Revalidate(); !s.ok()) {
      core::log::Warn("cannot check devices for changes", {{"error", std::string(s.message())}});
    }
    const absl::Time read_at = clock_.Now();
    absl::StatusOr<std::vector<core::Ban>> bans = banstore_.List();
    const bool redis_up = instances_.Refresh().ok();
    gauges_.redis_up.Set(redis_up ? 1 : 0);
    if (std::shared_ptr<const GatewayView> view = config_.Get()) {
      gauges_.licences.Set(static_cast<double>(view->licences));
    }
    if (redis_up) {
      UpdateRelaysGauge();
      if (++orphan_round_ % options_.orphan_every == 0) EndOrphanCalls();
    }
    std::optional<std::vector<core::EmergencyRoute>> routes = ReadEmergencyTable();
    absl::MutexLock lock(&mu_);
    if (routes) {
      emergency_routes_ =
          std::make_shared<const std::vector<core::EmergencyRoute>>(*std::move(routes));
    }
    if (bans.ok()) fresh_bans_ = FreshBans{*std::move(bans), read_at};
  }

  void UpdateRegisteredGauge() {
    absl::StatusOr<int64_t> n = bindings_.CountActive(clock_.Now());
    if (n.ok()) gauges_.registered.Set(static_cast<double>(*n));
  }

  // How many media relays new calls could use now, as the relay client would pick them.
  void UpdateRelaysGauge() {
    absl::StatusOr<core::RedisReply> r = redis_.Command({"HGETALL", core::kRelayInstancesKey});
    if (!r.ok()) return;  // the last count stays; rwg_sip_edge_redis_up says why
    std::vector<std::pair<std::string, std::string>> rows;
    rows.reserve(r->elements.size() / 2);
    for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
      rows.emplace_back(r->elements[i].str, r->elements[i + 1].str);
    }
    gauges_.usable_relays.Set(
        static_cast<double>(UsableRelays(rows, clock_.Now(), options_.relay_stale_after).size()));
  }

  // The emergency table, read again whenever its revision changes; nullopt when unchanged
  // (or unreadable).
  std::optional<std::vector<core::EmergencyRoute>> ReadEmergencyTable() {
    absl::StatusOr<core::RedisReply> rev = redis_.Command({"GET", core::kEmergencyRevisionKey});
    if (!rev.ok() || (emergency_revision_ && *emergency_revision_ == rev->str)) {
      return std::nullopt;
    }
    absl::StatusOr<core::EmergencyTable> list = core::EmergencyStore(redis_).List();
    if (!list.ok()) {
      core::log::Warn("cannot read the emergency numbers",
                      {{"error", std::string(list.status().message())}});
      return std::nullopt;
    }
    // Once per revision: the damaged routes are left out, the others work.
    for (const core::DamagedEmergencyRoute& d : list->damaged) {
      core::log::Error("emergency route damaged; calls to its number are not routed by it",
                       {{"location", d.location}, {"number", d.number}, {"error", d.error}});
    }
    emergency_revision_ = rev->str;
    return std::move(list->routes);
  }

  // Calls of instances that stopped advertising themselves (dead): one surviving instance
  // takes each over and ends it (BYE to the iPBX, and to the phone if it is connected here).
  void EndOrphanCalls() {
    const absl::Time now = clock_.Now();
    absl::StatusOr<core::RedisReply> ids = redis_.Command({"SMEMBERS", core::kCallsKey});
    if (!ids.ok()) return;
    // This instance's own calls are not read back; the others' records come in batches.
    std::vector<std::string> others;
    {
      absl::MutexLock lock(&own_calls_mu_);
      for (const core::RedisReply& e : ids->elements) {
        if (!own_calls_.contains(e.str)) others.push_back(e.str);
      }
    }
    absl::StatusOr<std::vector<core::RedisReply>> recs = core::ReadCallRecords(redis_, others);
    if (!recs.ok()) return;
    const auto alive = [&](const std::string& owner) { return instances_.Alive(owner, now); };
    for (size_t i = 0; i < others.size(); ++i) {
      const std::string& id = others[i];
      if ((*recs)[i].is_nil()) {
        // Expired: a failure leaves the id in the set for the next look.
        if (absl::Status s = redis_.Command({"SREM", core::kCallsKey, id}).status(); !s.ok()) {
          core::log::Debug("cannot forget an expired call", {{"call", id}});
        }
        continue;
      }
      std::optional<absl::StatusOr<core::CallRecord>> orphan =
          OrphanCall(id, (*recs)[i].str, options_.instance, alive);
      if (!orphan) continue;
      absl::StatusOr<core::RedisReply> claim = redis_.Command(
          {"SET", absl::StrCat(core::CallKey(id), ":end"), options_.instance, "NX", "EX", "60"});
      if (!claim.ok() || claim->is_nil()) continue;  // another instance took it
      if (orphan->ok()) {
        end_orphan_(**std::move(orphan));
      } else {
        DropDamagedCall(id, orphan->status());
      }
    }
  }

  // Nothing can be sent for a damaged record of a dead instance's call: it goes.
  void DropDamagedCall(const std::string& id, const absl::Status& damage) {
    core::log::Warn("damaged call record dropped",
                    {{"call", id}, {"error", std::string(damage.message())}});
    absl::Status s =
        redis_.Command({"DEL", core::CallKey(id), absl::StrCat(core::CallKey(id), ":end")})
            .status();
    if (s.ok()) s = redis_.Command({"SREM", core::kCallsKey, id}).status();
    if (!s.ok()) {
      core::log::Debug("cannot drop a damaged call record",
                       {{"call", id}, {"error", std::string(s.message())}});
    }
  }

  const HousekeepingOptions options_;
  core::RedisClient& redis_;
  core::DeviceDirectory& devices_;
  GatewayConfigWatcher& config_;
  core::BindingStore& bindings_;
  core::BanStore& banstore_;
  InstanceDirectory& instances_;
  core::Clock& clock_;
  const HousekeepingGauges gauges_;
  const std::function<void(core::CallRecord)> end_orphan_;

  // The housekeeping thread's own.
  bool advertised_ = true;
  uint64_t orphan_round_ = 0;
  std::optional<std::string> emergency_revision_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<FreshBans> fresh_bans_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<core::EmergencyRoute>> emergency_routes_ ABSL_GUARDED_BY(mu_);
  absl::Mutex own_calls_mu_;  // the SIP thread writes, the housekeeping thread reads
  std::unordered_set<std::string> own_calls_ ABSL_GUARDED_BY(own_calls_mu_);

  std::thread thread_;  // last: starts once the rest is in place
};

}  // namespace

std::unique_ptr<Housekeeping> StartHousekeeping(
    HousekeepingOptions options, core::RedisClient& redis, core::DeviceDirectory& devices,
    GatewayConfigWatcher& config, core::BindingStore& bindings, core::BanStore& banstore,
    InstanceDirectory& instances, core::Clock& clock, HousekeepingGauges gauges,
    std::function<void(core::CallRecord)> end_orphan) {
  return std::make_unique<HousekeepingThread>(std::move(options), redis, devices, config, bindings,
                                              banstore, instances, clock, gauges,
                                              std::move(end_orphan));
}

}  // namespace rwg::sip_edge
