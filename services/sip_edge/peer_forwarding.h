// The signed forwarding between the SIP edge's instances: a request from the iPBX for a phone
// whose connection another instance holds goes to that instance (its ICP-side address from
// the instance directory, instances.h), with a mark (ForwardMarks) the other instance checks
// before taking it as the iPBX's. Out-of-dialog requests are relayed and their final answer
// relayed back; a new call's INVITE is proxied (stateful) and the call is the holder's.
// SIP thread only.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

#include <functional>
#include <optional>
#include <string>

#include "services/core/clock.h"
#include "services/core/registrations.h"
#include "services/sip_edge/in_flight.h"
#include "services/sip_edge/instances.h"

namespace rwg::sip_edge {

class PeerForwarder {
 public:
  // `icp_agent`: the transaction agent toward the iPBX and the other instances; `responses`
  // counts the final answers given to the iPBX (by method and code).
  // `redis`: the SIP thread's (bindings are read without blocking it).
  PeerForwarder(std::string instance, std::string forward_key, nta_agent_t* icp_agent,
                core::AsyncRedisCommands& redis, InstanceDirectory& instances, core::Clock& clock,
                prometheus::Family<prometheus::Counter>& responses);
  // Frees what sofia-sip dropped without calling back: after the agent is destroyed.
  ~PeerForwarder();
  PeerForwarder(const PeerForwarder&) = delete;
  PeerForwarder& operator=(const PeerForwarder&) = delete;

  // True when `sip` carries a valid, fresh mark of another instance not taken before (the
  // first X-Rwg-Forwarded header decides).
  bool ForwardedByPeer(const sip_t* sip);

  // The out-of-dialog request `irq` for `icp_user`, whose phone this instance does not hold:
  // relayed to the instance holding it, whose final answer is relayed to the iPBX; answered
  // 480 when none does. Returns what a request handler returns (the status answered, or 0:
  // it is answered later, the binding read from Redis first).
  int Forward(nta_incoming_t* irq, const sip_t* sip, const std::string& icp_user);

  // A new call from the iPBX for a phone another instance holds: this instance proxies the
  // INVITE there (stateful, signed) and the call is that instance's. The iPBX's Via, Contact
  // and Record-Route go along, so its answers carry the holder's Contact and the rest of the
  // dialog (ACK of a 2xx, PRACK, BYE, re-INVITE) goes to the holder directly; a CANCEL comes
  // here and is passed on. Returns 0 when taken (proxied, or answered here once the binding is
  // read from Redis), else the status to answer.
  int ProxyInvite(nta_incoming_t* irq, const sip_t* sip, const std::string& icp_user);

 private:
  struct PendingRelay {
    PeerForwarder* self;
    nta_incoming_t* irq;
    std::string method;
  };
  struct ProxiedInvite {
    PeerForwarder* self;
    nta_incoming_t* irq;
    nta_outgoing_t* orq;
  };
  // Where the reachable phone of `icp_user` is held when another instance holds it.
  struct Holder {
    std::string device;
    std::string instance;
    std::string address;
  };

  // Hands `done` where another instance holds the reachable phone of `icp_user` (nullopt: none
  // does, or Redis cannot tell), once Redis answered.
  void PeerHolding(const std::string& icp_user, std::function<void(std::optional<Holder>)> done);
  int ForwardTo(nta_incoming_t* irq, const sip_t* sip, const std::string& icp_user,
                const std::optional<Holder>& holder);
  int ProxyTo(nta_incoming_t* irq, const sip_t* sip, const std::string& icp_user,
              const std::optional<Holder>& holder);
  // The X-Rwg-Forwarded header line for `sip`, marked now.
  std::string Mark(const sip_t* sip) const;
  void CountResponse(const char* method, int status);

  static int OnRelayResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip);
  static int OnProxiedCancel(nta_incoming_magic_t* magic, nta_incoming_t* irq, const sip_t* sip);
  static int OnProxiedResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip);

  const std::string instance_;
  nta_agent_t* const icp_agent_;
  core::AsyncRedisCommands& redis_;
  InstanceDirectory& instances_;
  core::Clock& clock_;
  prometheus::Family<prometheus::Counter>& responses_;
  ForwardMarks marks_;
  InFlight<PendingRelay> relays_in_flight_;
  InFlight<ProxiedInvite> proxied_in_flight_;
};

}  // namespace rwg::sip_edge
