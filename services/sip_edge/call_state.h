// The state of one call through the gateway and of one subscription (each a pair of dialogs, one
// per side), and the contexts of their requests in flight: what services/sip_edge/calls.cc,
// forwarding.cc, call_records.cc and subscriptions.cc share. Internal to the SIP edge's calls;
// SIP thread only.
#pragma once

#include <sofia-sip/nta.h>
#include <sofia-sip/tport.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "services/core/devices.h"
#include "services/sip_edge/calls.h"
#include "services/sip_edge/media_relays.h"
#include "services/sip_edge/sdp.h"

namespace rwg::sip_edge {

// The methods rwg takes within a call (PRACK answered on each side, the others relayed).
inline constexpr char kAllow[] =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY, SUBSCRIBE, MESSAGE";
// Within a subscription's dialogs: no offer, hence no INVITE, UPDATE or PRACK.
inline constexpr char kSubscriptionAllow[] =
    "ACK, BYE, OPTIONS, INFO, REFER, NOTIFY, SUBSCRIBE, MESSAGE";

// Which call (or subscription) and side an outgoing INVITE (or SUBSCRIBE) of rwg's belongs to:
// its callback's magic, owned by Calls::invites_ until its final answer or until the call
// drops it.
struct Calls::Pending {
  Calls* calls;
  std::string call;  // the id of the call or subscription
  bool to_set;
};

// An in-dialog request relayed to the other side as a request of that side's dialog; an offer
// (re-INVITE, UPDATE: hold, resume, new keys) goes through the media relay both ways. A plain
// value, copied into the relay's callbacks; while its relayed transaction is out it is owned by
// Calls::forwards_ (the transaction's magic).
struct Calls::Forwarded {
  Calls* calls;
  std::string call;  // the id of the call or subscription
  bool to_set;
  nta_incoming_t* irq;  // the request relayed, answered once the other side answered
  std::string method;
  uint32_t cseq;
  bool offer;
  bool terminates = false;  // a NOTIFY that ends its subscription
};

struct Calls::Side {
  bool set = false;  // the phone's side
  bool uas = false;  // this side sent the INVITE that began the call
  std::string call_id;
  std::string local_uri;  // name-addr without tag
  std::string remote_uri;
  std::string local_tag;
  std::string remote_tag;
  uint32_t cseq = 0;         // our last CSeq on this side
  uint32_t invite_cseq = 0;  // our INVITE's CSeq (its ACK carries it)
  std::string remote_target;
  std::vector<std::string> route;  // Route header values for our in-dialog requests
  std::string contact;             // our Contact on this side
  nta_incoming_t* irq = nullptr;   // the INVITE this side sent, until it is answered
  nta_outgoing_t* orq = nullptr;   // our INVITE on this side, until its final answer
  int auth_attempts = 0;
  tport_t* tport = nullptr;          // set side: the phone's connection (referenced)
  std::string route_url;             // set side over UDP: the phone's source
  std::optional<AudioStream> media;  // what this side's last SDP said
  std::string user;                  // set side: device; ICP side: the ICP-side username
  std::string offer;                 // the SDP of our INVITE on this side
  Pending* pending = nullptr;        // what `orq`'s callback gets (Calls::invites_ owns it)
  // Reliable provisional answers (RFC 3262), each side on its own: `reliable` when this
  // side's INVITE required 100rel (rwg's provisionals to it go reliably, its PRACKs are
  // answered by sofia-sip); `rseq` the last RSeq rwg acknowledged with a PRACK on this side.
  bool reliable = false;
  uint32_t rseq = 0;
  // The caller's INVITE after rwg's 2xx carrying an offer (delayed offer): kept for its ACK,
  // which brings the answer.
  nta_incoming_t* ack_irq = nullptr;
};

// The two dialogs rwg keeps for what a phone or the iPBX opens through it, one toward each end:
// a call or a subscription. What is relayed within the dialogs (forwarding.cc) takes either.
struct Calls::DialogPair {
  enum class Kind { kCall, kSubscription };
  enum class State { kSetup, kEarly, kConfirmed, kEnded };
  explicit DialogPair(Kind k) : kind(k) {}
  DialogPair(const DialogPair&) = delete;
  DialogPair& operator=(const DialogPair&) = delete;

  // The call or subscription this is; nullptr when it is the other.
  Call* AsCall();
  Subscription* AsSubscription();

  const Kind kind;
  std::string id;
  core::DeviceSecrets device;
  Side set;
  Side icp;
  State state = State::kSetup;
  absl::Time started;
};

struct Calls::Call : DialogPair {
  Call() : DialogPair(Kind::kCall) {}
  bool from_phone = true;  // outbound: phone -> iPBX
  std::string number;      // dialled (outbound) or calling (inbound)
  std::optional<RelaySession> media;
  absl::Time answered;
  absl::Time ended_at;
  std::string end_reason;
  std::string bye_reason;     // Reason header of the BYEs rwg sends, if any
  bool relay_busy = false;    // a media relay request is in flight
  bool recorded = false;      // its record is in Redis (and its id in the set of calls)
  std::string timer_headers;  // the caller's session timer headers (TimerHeaders)
  bool rel100 = false;        // the caller supports 100rel: rwg's INVITE on the other side too
  // The caller's INVITE had no offer: rwg offers on both sides (its own offer to the callee,
  // the callee's codecs to the caller in the 2xx) and the caller answers in its ACK.
  bool delayed_offer = false;
};

// A subscription of a phone (SUBSCRIBE/NOTIFY: message waiting, BLF, ...) relayed to the iPBX:
// no media; rwg's SUBSCRIBE opens the ICP side as an INVITE would.
struct Calls::Subscription : DialogPair {
  Subscription() : DialogPair(Kind::kSubscription) {}
  std::string resource;  // the user subscribed to, at the iPBX
  std::string event;     // the SUBSCRIBE's Event and Accept
  std::string accept;
  int expires = 0;        // asked by the phone
  absl::Time expires_at;  // when it runs out unless refreshed
};

inline Calls::Call* Calls::DialogPair::AsCall() {
  return kind == Kind::kCall ? static_cast<Call*>(this) : nullptr;
}

inline Calls::Subscription* Calls::DialogPair::AsSubscription() {
  return kind == Kind::kSubscription ? static_cast<Subscription*>(this) : nullptr;
}

}  // namespace rwg::sip_edge
