// The registration state machine (R-SIP): a phone's authenticated REGISTER reserves a licence
// (Redis), registers the device at the iPBX (UpstreamRegistrar), stores its binding and is
// answered. The bindings whose phone's connection this instance holds are kept here: the
// iPBX's registration is refreshed before it runs out for as long as the phone's binding lasts,
// a lost connection marks the phone unreachable, and an expired binding is removed (from the
// iPBX too). SIP thread only.
#pragma once

#include <prometheus/counter.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/tport.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/devices.h"
#include "services/core/log.h"
#include "services/core/registrations.h"
#include "services/sip_edge/async_redis.h"
#include "services/sip_edge/gateway_config.h"
#include "services/sip_edge/in_flight.h"
#include "services/sip_edge/upstream_registrar.h"

namespace rwg::sip_edge {

struct RegistrarOptions {
  std::string instance;
  int min_expires = 60;
  int max_expires = 3600;
  int default_expires = 600;
  int upstream_timeout_ms = 8000;
  int upstream_expires = 0;  // asked of the iPBX at most; 0: the phone's
};

// A phone registered through this instance.
struct LocalBinding {
  tport_t* tport = nullptr;  // referenced
  std::vector<std::string> contacts;
  std::string icp_username;
  absl::Time expires_at;
  bool reachable = true;
  absl::Time upstream_expires_at;  // when the iPBX's registration runs out
  absl::Time upstream_refresh_at;  // when rwg refreshes it (if the phone's binding lasts)
  bool refreshing = false;         // an rwg refresh is waiting for the iPBX
  std::string connection;          // the binding's connection id in Redis
  absl::Time since;                // when the phone first registered (kept across refreshes)
  std::string route;               // UDP: where the phone's REGISTER came from (its NAT)
  // The device as of the registration, or as last read since (UpdateDevice): what calls use
  // while the device cache misses, so that no call waits on Redis.
  core::DeviceSecrets device;
  bool device_removed = false;  // control removed the device since the registration
};

// What the registrar needs from the rest of the edge.
class RegistrarHost {
 public:
  virtual ~RegistrarHost() = default;
  // Counts a final answer sent.
  virtual void CountResponse(const char* method, int status) = 0;
  // Refuses a REGISTER with 403 as a failed authentication (counted toward a ban).
  virtual int Forbidden(nta_incoming_t* irq, const std::string& ip, const std::string& user,
                        const std::string& source, const char* why) = 0;
  // Where another instance takes requests from the iPBX ("" when not known).
  virtual std::string InstanceIcpAddress(const std::string& instance) = 0;
};

class Registrar {
 public:
  // `icp_contact_host`: host:port of this instance's listener for the iPBX.
  Registrar(RegistrarOptions options, RegistrarHost& host, UpstreamRegistrar& upstream,
            AsyncRedis& redis, core::DeviceDirectory& devices, GatewayConfigWatcher& config,
            core::Clock& clock, std::string icp_contact_host, prometheus::Counter& licence_refusals,
            prometheus::Family<prometheus::Counter>& refreshes);
  ~Registrar();

  // A REGISTER whose digest credentials (of `user`) were accepted for `device`, from `ip`
  // (`source`: ip:port). Returns the status answered, or 0 when it is answered later.
  int OnRegister(nta_incoming_t* irq, const sip_t* sip, const std::string& user,
                 const core::DeviceSecrets& device, const std::string& ip,
                 const std::string& source);

  // Once a second: expired bindings go (and their iPBX registrations), a phone whose
  // connection closed is marked unreachable (here and in Redis).
  void ExpireBindings(absl::Time now);
  // Once a second: refreshes the iPBX registrations that are about to run out.
  void RefreshUpstream(absl::Time now);

  // The binding of a phone registered here, by set-side username (nullptr: none).
  const LocalBinding* Find(const std::string& set_username) const;
  // The set-side username of the phone registered here as ICP-side user `icp_username`.
  std::optional<std::string> SetUsernameOf(const std::string& icp_username) const;

  // What a read of the device of `set_username` found (nullopt: control removed it), for the
  // binding's copy.
  void UpdateDevice(const std::string& set_username,
                    const std::optional<core::DeviceSecrets>& device);

  // Lets go of the phones' connections (shutdown).
  void ReleaseConnections();

 private:
  // A phone's REGISTER waiting for Redis and the iPBX.
  struct PendingRegister {
    nta_incoming_t* irq = nullptr;
    tport_t* tport = nullptr;  // referenced
    core::DeviceSecrets device;
    std::vector<std::string> contacts;
    int expires = 0;           // granted to the phone
    int upstream_expires = 0;  // asked of the iPBX, then granted by it
    bool new_reservation = false;
    absl::Time started;
    std::string source;
    std::string transport;
    std::string stale_contact;  // the iPBX-side contact of another instance, to remove
    absl::Time previous_since;  // when the binding that this one refreshes began
    std::string route;          // UDP: the phone's source address as a SIP URI
  };

  int Reply(nta_incoming_t* irq, int status, const char* phrase, tag_type_t tag, tag_value_t value,
            ...);
  void ReplyFailure(nta_incoming_t* irq, int status, const char* phrase);
  void Done(PendingRegister* p);
  void Abandon(PendingRegister* p, int status, const char* phrase);
  void OnReserved(PendingRegister* p, uint32_t licences,
                  absl::StatusOr<core::BindingStore::Reserved> r);
  int UpstreamExpires(int phone_expires) const;
  void RegisterUpstreamInBackground(const std::string& user, int expires);
  int ReplyBindings(nta_incoming_t* irq, const core::DeviceSecrets& dev);
  std::string ContactList(const std::vector<std::string>& contacts, absl::Time expires_at);
  void FinishBackgroundRegister(const std::string& user, int expires, const UpstreamResult& r);
  void FinishRegister(PendingRegister* p, int status, const char* phrase);
  void OnStored(PendingRegister* p, const core::Binding& b, const absl::Status& put);
  void DropLocal(const std::string& user);

  RegistrarOptions options_;
  RegistrarHost& host_;
  UpstreamRegistrar& upstream_;
  AsyncRedis& redis_;
  core::DeviceDirectory& devices_;
  GatewayConfigWatcher& config_;
  core::Clock& clock_;
  // Failures that repeat for every REGISTER while Redis or the iPBX is failing.
  core::log::Limiter licence_log_{clock_};
  core::log::Limiter store_log_{clock_};
  core::log::Limiter refresh_log_{clock_};
  std::string icp_contact_host_;
  prometheus::Counter& licence_refusals_;
  prometheus::Family<prometheus::Counter>& refreshes_;  // rwg's own refreshes, by result
  InFlight<PendingRegister> in_flight_;
  std::map<std::string, LocalBinding> local_;        // by set_username
  std::map<std::string, std::string> local_by_icp_;  // icp_username -> set_username
  uint64_t next_connection_ = 1;
};

}  // namespace rwg::sip_edge
