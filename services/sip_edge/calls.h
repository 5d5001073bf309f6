// Calls through the gateway (R-SIP, R-MEDIA; SIP edge part 2): a back-to-back user agent with
// one dialog toward the phone (set side) and one toward the iPBX (ICP side). A phone's INVITE
// goes to the iPBX with the device's ICP-side identity (rwg answers the iPBX's challenges with
// the ICP-side credentials); an iPBX INVITE for an ICP-side user goes to the phone over the
// phone's own connection. Every offer and answer goes through a media relay session: the
// phone sees the relay's set-side address and SRTP key, the iPBX the relay's ICP-side address
// (RTP/AVP with an a=crypto key by default, plain RTP when the iPBX answers so).
//
// Phones' subscriptions (SUBSCRIBE/NOTIFY) go through a pair of dialogs the same way, without
// media (Calls::Subscription; a call and a subscription are each a Calls::DialogPair).
//
// Runs on the SIP thread. The two dialogs share nothing but the call: Call-IDs, tags,
// Contacts and Via/Record-Route of one side never reach the other.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/tport.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "services/core/calls.h"
#include "services/core/clock.h"
#include "services/core/devices.h"
#include "services/core/emergency.h"
#include "services/core/log.h"
#include "services/core/random.h"
#include "services/sip_edge/gateway_config.h"
#include "services/sip_edge/in_flight.h"
#include "services/sip_edge/media_relays.h"
#include "services/sip_edge/sdp.h"

namespace rwg::sip_edge {

// A registered phone whose connection this instance holds.
struct CallPhone {
  core::DeviceSecrets device;
  tport_t* tport = nullptr;  // its connection (not referenced here)
  std::string contact;       // its registered Contact URI
  std::string route;         // UDP: its source as a SIP URI; empty otherwise
};

// A parsed header's value as text ("" for none).
std::string HeaderText(const void* header);

// What calls need from the rest of the edge.
class CallHost {
 public:
  virtual ~CallHost() = default;
  // The phone registered through `tport` as `set_username`, when that is so.
  // `source` is the request's source address ("ip:port").
  virtual std::optional<CallPhone> PhoneOnConnection(tport_t* tport,
                                                     const std::string& set_username,
                                                     const std::string& source) = 0;
  // The reachable phone of an ICP-side user whose connection this instance holds.
  virtual std::optional<CallPhone> PhoneForIcpUser(const std::string& icp_username) = 0;
  // The connection (and, over UDP, the source URI) a device's phone is reachable through on
  // this instance now; no lookup of the device itself.
  virtual std::optional<std::pair<tport_t*, std::string>> PhoneConnection(
      const std::string& set_username) = 0;
  // A new call from the iPBX for an ICP-side user whose phone another instance holds: the
  // INVITE is proxied there (0), or the status to answer it with (480: no instance holds it).
  virtual int ProxyInvite(nta_incoming_t* irq, const sip_t* sip,
                          const std::string& icp_username) = 0;
  virtual std::shared_ptr<const GatewayView> Config() = 0;
  // host:port of the listener the iPBX sends requests to (the ICP-side Contact).
  virtual std::string IcpContactHost() = 0;
  // The set-side Contact URI for a call over `tport` (the phone's in-dialog requests).
  virtual std::string SetContact(tport_t* tport) = 0;
  // Counts a final answer sent (for the edge's response metrics).
  virtual void CountResponse(const char* method, int status) = 0;
  // The emergency route for a call from `location` to `number` (R-EMERG), if it is one.
  virtual std::optional<core::EmergencyRoute> Emergency(const std::string& location,
                                                        const std::string& number) = 0;
  // Whether `number` is an emergency number for some location.
  virtual bool IsEmergencyNumber(const std::string& number) = 0;
  // An emergency INVITE from a connection no phone registered through: the caller proves its
  // identity by digest (407). Either returns the device, or answers the INVITE itself (status
  // in `answered`: the challenge, 403, 503), or takes the INVITE (`answered` 0) while the
  // device is read from Redis, and then starts the call itself (Calls::NewEmergencyCall).
  virtual std::optional<CallPhone> AuthenticateEmergencyCaller(nta_incoming_t* irq,
                                                               const sip_t* sip, tport_t* tport,
                                                               const std::string& source,
                                                               int* answered) = 0;
  // Keeps (and forgets) a call's record in Redis (services/core/calls.h); `first`: the call
  // is not in the set of calls yet.
  virtual void SaveCall(const std::string& id, const std::string& record, bool first) = 0;
  virtual void DropCall(const std::string& id) = 0;
  virtual std::string Instance() = 0;
};

struct CallOptions {
  // The SRTP suite rwg offers when the gateway configuration names none (R-MEDIA:
  // AES_CM_128_HMAC_SHA1_80 by default). Profiles, policies and addresses come from the
  // gateway configuration (GatewayView).
  std::string set_suite = "AES_CM_128_HMAC_SHA1_80";
  // At most this many calls and subscriptions of one device at a time (each call holds a
  // relay session, two ports on each side): a phone cannot take the relay's ports alone.
  int max_calls_per_device = 8;
  int max_subscriptions_per_device = 200;
};

// Where requests for a phone registered over UDP go: its source ("ip:port") as a SIP URI.
std::string UdpRoute(const std::string& source);

class Calls {
 public:
  Calls(CallOptions options, CallHost& host, nta_agent_t* set_agent, nta_agent_t* icp_agent,
        MediaRelays& relays, core::Clock& clock, core::Random& rng, prometheus::Registry& registry);
  ~Calls();

  // Requests that belong to calls: INVITE, ACK, BYE, CANCEL (and in-dialog requests).
  // INVITE, ACK, BYE and CANCEL; and in-dialog UPDATE, INFO, MESSAGE, NOTIFY and OPTIONS of a
  // call (`to_tag` set) go to calls too.
  static bool IsCallMethod(sip_method_t m);
  // Whether `sip` is a request inside one of the calls' dialogs on that side.
  bool Owns(const sip_t* sip, bool set_side) const;

  // A call request from a phone (its connection is `tport`); returns what a leg callback
  // returns (0: answered later).
  int OnPhoneRequest(nta_incoming_t* irq, const sip_t* sip, tport_t* tport,
                     const std::string& source);
  // The emergency INVITE of a caller CallHost::AuthenticateEmergencyCaller authenticated
  // after a device lookup: the call as OnPhoneRequest would have started it (0: it owns
  // `irq` now; otherwise the status answered).
  int NewEmergencyCall(nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone);
  // A call request from the iPBX (`forwarded`: an INVITE another instance proxied here).
  int OnIcpRequest(nta_incoming_t* irq, const sip_t* sip, bool forwarded = false);

  // The media relay found `session` idle (no packet for its idle timeout): the call ends on
  // both sides, with a Reason.
  void OnMediaIdle(const std::string& session);
  // `rwgctl call hangup`: ends the call on both sides; false when this instance has no such
  // call.
  bool HangupById(const std::string& id);
  // Ends a call of an instance that died, from its record in Redis: BYE to the iPBX, and to
  // the phone when it is connected here now; the relay session and the record are deleted.
  void EndOrphan(const core::CallRecord& record);

  // Active calls, for `rwgctl call list`.
  nlohmann::json List() const;
  // Forgets subscriptions the phone stopped refreshing, and ended calls whose last answers
  // never came; called every second.
  void Sweep();
  // Ends every call and subscription (shutdown).
  void HangupAll(const char* reason);

  struct DialogPair;
  struct Call;
  struct Subscription;
  struct Side;
  struct Pending;
  struct Forwarded;

 private:
  // Answers a new INVITE with a failure, `why` in a Warning when given; returns `status`.
  int RefuseInvite(nta_incoming_t* irq, int status, const char* phrase, const std::string& why);
  int NewCallFromPhone(nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone);
  int NewCallFromIcp(nta_incoming_t* irq, const sip_t* sip, bool forwarded);
  int NewSubscriptionFromPhone(nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone);
  // The phone's side of a dialog it opens with `sip` (rwg its UAS).
  void PhoneSide(Side& s, nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone);
  // The iPBX's side of a dialog rwg opens toward `user` as the device's ICP-side user.
  void IcpSideTo(Side& s, const CallPhone& phone, const std::string& user, const GatewayView& view);
  // rwg's SUBSCRIBE toward the iPBX (again with credentials after a challenge).
  void SendSubscribe(Subscription& sub, const char* authorization, bool proxy_auth);
  void OnSubscribeResponse(Subscription& sub, Side& to, nta_outgoing_t* orq, const sip_t* sip,
                           int status, const std::string& phrase);
  // Lets a subscription go (it ended, or the phone stopped refreshing it).
  void EndSubscription(Subscription& sub);
  int InDialog(DialogPair& pair, Side& from, nta_incoming_t* irq, const sip_t* sip);
  int Forward(DialogPair& pair, Side& from, nta_incoming_t* irq, const sip_t* sip);
  // Relays `f`'s request (`sip`, with `sdp` for its body when not empty) toward `to`.
  void SendForward(DialogPair& pair, Side& to, Forwarded f, const sip_t* sip,
                   const std::string& sdp);
  static int OnForwardResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip);
  // Launches `msg`, rwg's INVITE or SUBSCRIBE opening `to`'s dialog of `pair`; false when it
  // could not be sent.
  bool LaunchFirst(DialogPair& pair, Side& to, msg_t* msg);
  void SendInvite(Call& call, Side& to, const std::string& sdp, const char* authorization,
                  bool proxy_auth);
  msg_t* DialogRequest(const Side& to, const std::string& method, uint32_t cseq, bool with_contact,
                       bool first);
  // Sends toward `to` (a phone's side first follows the phone to the connection it registers
  // through now, FollowPhone).
  nta_outgoing_t* Launch(Side& to, msg_t* msg, nta_response_f* callback,
                         nta_outgoing_magic_t* magic);
  void FollowPhone(Side& to);
  void SendRequest(const Call& call, Side& to, const char* method, uint32_t cseq);
  // A response to rwg's INVITE (or SUBSCRIBE) on `to`, in steps: what it says of the dialog,
  // then a provisional answer, the iPBX's challenge, a refusal or the acceptance.
  void OnInviteResponse(Call& call, Side& to, nta_outgoing_t* orq, const sip_t* sip);
  // A 101-299 answer gives the dialog its remote tag, target and route set.
  void LearnDialog(Side& to, const sip_t* sip, int status);
  void OnProvisional(Call& call, Side& to, const sip_t* sip, int status, const std::string& phrase,
                     const std::string& sdp);
  // The relay took the early media of a provisional answer (`relayed`): the caller gets it.
  void OnEarlyMediaRelayed(const std::string& id, int status, const std::string& phrase,
                           const std::string& sdp, bool relayed);
  // What the relay's answer about the callee's media finds first: the call `id` with its relay
  // request done and its callee's (`to`) and caller's (`from`) sides; none when the call is
  // gone, or ended (released now).
  Call* CalleeRelayed(const std::string& id, Side** to, Side** from);
  void OnIcpChallenge(Call& call, Side& to, nta_outgoing_t* orq, const sip_t* sip, int status);
  void OnInviteRefused(Call& call, Side& to, int status, const std::string& phrase,
                       const std::string& timers);
  void OnInviteAccepted(Call& call, Side& to, const std::string& sdp, const std::string& timers);
  // The relay took the callee's answer (`relayed`): the caller gets the 200, or both sides end.
  void OnAnswerRelayed(const std::string& id, const std::string& sdp, const std::string& timers,
                       bool relayed);
  void Answer(Call& call, Side& side, int status, const char* phrase, const std::string& sdp,
              const std::string& headers = "");
  void Hangup(Call& call, Side* except, const char* why);
  void Forget(Call& call);
  void Release(Call& call);
  static void Uncount(std::map<std::string, int>& counts, const std::string& device);
  void DropInvites(DialogPair& pair);
  std::optional<std::string> SdpFor(Call& call, Side& side, const std::string& other_sdp,
                                    bool offer, int* status, std::string* phrase);
  // What one side sent, within that side's inbound policy (R-CFG).
  absl::StatusOr<AudioStream> ReadFrom(const Call& call, bool set_side, absl::string_view sdp);
  // The relay leg of a side rwg offers to (suite and no remote yet), per its outbound policy.
  RelayRemote OfferedLeg(bool set_side);
  static Side& Other(DialogPair& pair, Side& side);
  std::string ReferTarget(const Side& to, const url_t* refer_to);
  void Adopt(std::unique_ptr<Call> call);
  void AllocateAndInvite(Call& call, const RelayRemote& set, const RelayRemote& icp,
                         const std::string& sdp);
  std::optional<std::string> AnswerIcpChallenge(const DialogPair& pair, const Side& to,
                                                const sip_t* sip, int status, const char* method);
  static std::string DialogKey(bool set_side, absl::string_view call_id,
                               absl::string_view local_tag);
  void Index(DialogPair& pair);
  void Unindex(DialogPair& pair);
  DialogPair* FindDialog(bool set_side, const sip_t* sip) const;
  std::vector<DialogPair*> WithCallId(bool set_side, absl::string_view call_id) const;
  // The call or subscription of that id (a Pending's or a Forwarded's), if still there.
  DialogPair* FindPair(const std::string& id) const;
  void Save(Call& call);

  static int OnCancel(nta_incoming_magic_t* magic, nta_incoming_t* irq, const sip_t* sip);
  void OnAck(nta_incoming_t* irq, const sip_t* sip);
  std::pair<Call*, Side*> ByInvite(nta_incoming_t* irq, bool ack);
  static int OnPrack(nta_reliable_magic_t* magic, nta_reliable_t* rel, nta_incoming_t* prack,
                     const sip_t* sip);
  bool Prack(Side& to, const sip_t* sip);
  static int OnOutgoing(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip);

  CallOptions options_;
  CallHost& host_;
  nta_agent_t* set_agent_;
  nta_agent_t* icp_agent_;
  MediaRelays& relays_;
  core::Clock& clock_;
  core::Random& rng_;
  // Failures that repeat for every call while a relay or the iPBX is overloaded.
  core::log::Limiter no_relay_log_{clock_};
  core::log::Limiter challenge_log_{clock_};
  std::map<std::string, std::unique_ptr<Call>> calls_;                  // by rwg call id
  std::map<std::string, std::unique_ptr<Subscription>> subscriptions_;  // by rwg id
  std::map<std::string, int> calls_of_;                                 // device -> its calls here
  std::map<std::string, int> subscriptions_of_;  // device -> its subscriptions here
  // "s|" / "i|" + Call-ID + "|" + rwg's tag on that side.
  std::map<std::string, DialogPair*> by_dialog_;
  // The magic of rwg's INVITEs and relayed requests in flight (sofia-sip's callbacks get it).
  InFlight<Pending> invites_;
  InFlight<Forwarded> forwards_;

  prometheus::Gauge& active_;
  prometheus::Family<prometheus::Counter>& attempts_;
  prometheus::Family<prometheus::Counter>& outcomes_;
  prometheus::Histogram& setup_time_;
  prometheus::Counter& emergency_;
  prometheus::Gauge& active_subscriptions_;
  prometheus::Counter& media_timeouts_;
};

}  // namespace rwg::sip_edge
