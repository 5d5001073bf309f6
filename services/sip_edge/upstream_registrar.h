// Registration toward the iPBX (R-SIP): rwg's REGISTER for a device with its ICP-side identity,
// answering the iPBX's 401/407 challenges with the ICP-side credentials (twice at most). Each
// device keeps one Call-ID with a rising CSeq across its registrations, refreshes and removal.
// The Contact is the device's ICP-side user at the listener the iPBX sends requests to. SIP
// thread only.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <sofia-sip/nta.h>

#include <functional>
#include <map>
#include <string>

#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/devices.h"
#include "services/core/random.h"
#include "services/sip_edge/gateway_config.h"
#include "services/sip_edge/in_flight.h"

namespace rwg::sip_edge {

// How long after the iPBX granted `granted_seconds` rwg refreshes that registration: at 80%
// of it, but at least 3 s early (the housekeeping tick is 1 s, and a registrar counts expiry in
// whole seconds) and never before half of it.
absl::Duration UpstreamRefreshDelay(int granted_seconds);

struct UpstreamRegistration {
  core::DeviceSecrets device;
  int expires = 0;             // asked of the iPBX; 0 removes the registration
  std::string stale_contact;   // another instance's Contact for the device, removed along
  bool phone_waiting = false;  // a phone's REGISTER waits for this one (its latency is measured)
};

// How a registration toward the iPBX ended: 200 (`granted`: the seconds the iPBX granted, at
// least 1, or 0 for a removal), 403 (refused, or a challenge rwg cannot answer) or 503 (not
// sent, or no usable answer).
struct UpstreamResult {
  int status = 503;
  const char* phrase = "iPBX unreachable";
  int granted = 0;
};

class UpstreamRegistrar {
 public:
  using Done = std::function<void(const UpstreamResult&)>;

  // `contact_host`: host:port of the listener the iPBX sends requests to. `latency` observes
  // the time to each answer of the registrations a phone waits for; `results` counts them by
  // result (ok, refused, failed).
  UpstreamRegistrar(nta_agent_t* icp_agent, GatewayConfigWatcher& config, std::string contact_host,
                    core::Clock& clock, core::Random& rng, prometheus::Histogram& latency,
                    prometheus::Family<prometheus::Counter>& results);

  // Sends the REGISTER; `done` is called once with the outcome (at once when it cannot be
  // sent). Not called for a registration still waiting when the agent is destroyed.
  void Register(UpstreamRegistration registration, Done done);

  // Frees what waited for answers when the agent was destroyed without calling back.
  void Clear() { in_flight_.Clear(); }

 private:
  struct Pending {
    UpstreamRegistrar* self = nullptr;
    UpstreamRegistration registration;
    Done done;
    int attempts = 0;  // challenges answered
    absl::Time started;
  };
  struct Dialog {
    std::string call_id;
    std::string from_tag;
    uint32_t cseq = 0;
  };

  // Sends (or sends again, with credentials) the REGISTER of `p`.
  bool Send(Pending* p, const char* authorization, bool proxy);
  static int OnResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip);
  void HandleResponse(Pending* p, nta_outgoing_t* orq, const sip_t* sip);
  void Finish(Pending* p, UpstreamResult result, const char* counted_as);

  nta_agent_t* agent_;
  GatewayConfigWatcher& config_;
  std::string contact_host_;
  core::Clock& clock_;
  core::Random& rng_;
  prometheus::Histogram& latency_;
  prometheus::Family<prometheus::Counter>& results_;
  InFlight<Pending> in_flight_;
  std::map<std::string, Dialog> dialogs_;  // by set-side username
};

}  // namespace rwg::sip_edge
