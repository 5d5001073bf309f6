// In-dialog requests of calls and subscriptions (see calls.h; both a Calls::DialogPair): a
// request inside one side's dialog relayed to the other side as a request of that side's dialog
// (re-INVITE, UPDATE, INFO, MESSAGE, NOTIFY, OPTIONS, SUBSCRIBE refreshes, REFER with its Refer-To
// and Replaces mapped), offers through the media relay both ways, and the answer relayed back; BYE;
// CANCEL and the ACK of a 2xx that carried rwg's offer; PRACK on each side (RFC 3262).
//
// Still members of Calls rather than a class of their own: every step needs the call's two
// sides and most of what calls.cc does with them (the relay session, SDP for a side, the
// dialog's requests, Save, Hangup, Release), so a separate class would take nearly all of
// Calls as its interface. What is in flight here is owned by Calls: a relayed request's
// context (Forwarded) by `forwards_` while its transaction is out, by value otherwise.
#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/core/log.h"
#include "services/sip_edge/call_sip.h"
#include "services/sip_edge/call_state.h"
#include "services/sip_edge/calls.h"
#include "services/sip_edge/guard.h"

namespace rwg::sip_edge {

// -- in-dialog requests ----------------------------------------------------------------------

int Calls::InDialog(DialogPair& pair, Side& from, nta_incoming_t* irq, const sip_t* sip) {
  const sip_method_t m = sip->sip_request->rq_method;
  Call* call = pair.AsCall();
  // A NOTIFY may come before the 2xx of its SUBSCRIBE: it gives the dialog its tag.
  if (call == nullptr && !from.uas && from.remote_tag.empty() && m == sip_method_notify &&
      sip->sip_from != nullptr && sip->sip_from->a_tag != nullptr) {
    from.remote_tag = sip->sip_from->a_tag;
  }
  if (sip->sip_from == nullptr || sip->sip_from->a_tag == nullptr ||
      from.remote_tag != sip->sip_from->a_tag ||
      (!from.local_tag.empty() && from.local_tag != sip->sip_to->a_tag)) {
    if (m == sip_method_ack) return 200;
    host_.CountResponse(sip->sip_request->rq_method_name, 481);
    return 481;
  }
  switch (m) {
    case sip_method_ack:
      return 200;  // the ACK for our 200 OK: the dialog on this side is confirmed
    case sip_method_bye:
      if (call != nullptr) {
        call->end_reason = from.set ? "BYE from the phone" : "BYE from the iPBX";
        Hangup(*call, &from, call->end_reason.c_str());
      } else {
        EndSubscription(*pair.AsSubscription());
      }
      host_.CountResponse("BYE", 200);
      return 200;
    case sip_method_invite:
    case sip_method_update:
    case sip_method_info:
    case sip_method_message:
    case sip_method_notify:
    case sip_method_options:
    case sip_method_subscribe:
    case sip_method_refer:
      return Forward(pair, from, irq, sip);
    case sip_method_prack:  // sofia-sip takes those for rwg's reliable answers
      host_.CountResponse("PRACK", 481);
      return 481;
    default:
      host_.CountResponse(sip->sip_request->rq_method_name, 501);
      return 501;
  }
}

// An in-dialog request relayed to the other side as a request of that side's dialog; an offer
// (re-INVITE, UPDATE: hold, resume, new keys) goes through the media relay first.
int Calls::Forward(DialogPair& pair, Side& from, nta_incoming_t* irq, const sip_t* sip) {
  const char* method = sip->sip_request->rq_method_name;
  const sip_method_t m = sip->sip_request->rq_method;
  if (pair.AsCall() == nullptr && (m == sip_method_invite || m == sip_method_update)) {
    // A subscription's dialogs carry no session: nothing to offer, no media relay to go through.
    nta_incoming_treply(irq, SIP_405_METHOD_NOT_ALLOWED, SIPTAG_ALLOW_STR(kSubscriptionAllow),
                        TAG_END());
    host_.CountResponse(method, 405);
    return 405;
  }
  if (pair.state != DialogPair::State::kConfirmed && m == sip_method_invite) {
    host_.CountResponse(method, 491);
    return 491;  // a re-INVITE while the call is still being set up
  }
  Side& to = Other(pair, from);
  const std::string sdp = PayloadOf(sip);
  const bool offer = (m == sip_method_invite || m == sip_method_update) && !sdp.empty();
  if ((m == sip_method_invite) && sdp.empty()) {
    nta_incoming_treply(irq, SIP_488_NOT_ACCEPTABLE,
                        SIPTAG_WARNING_STR("399 rwg \"an SDP offer is required\""), TAG_END());
    host_.CountResponse(method, 488);
    return 488;
  }
  Forwarded f{this, pair.id, to.set, irq, method, 0, offer};
  f.terminates = m == sip_method_notify && sip->sip_subscription_state != nullptr &&
                 sip->sip_subscription_state->ss_substate != nullptr &&
                 absl::EqualsIgnoreCase(sip->sip_subscription_state->ss_substate, "terminated");
  if (!offer) {
    SendForward(pair, to, std::move(f), sip, "");
    return 0;
  }
  Call& call = *pair.AsCall();
  absl::StatusOr<AudioStream> media = ReadFrom(call, from.set, sdp);
  if (!media.ok()) {
    const int st = StatusFor(media.status());
    const std::string warning = absl::StrCat("399 rwg \"", media.status().message(), "\"");
    nta_incoming_treply(irq, st, st == 400 ? "Bad Request" : "Not Acceptable Here",
                        SIPTAG_WARNING_STR(warning.c_str()), TAG_END());
    host_.CountResponse(method, st);
    return st;
  }
  from.media = *media;
  RelayRemote remote = RemoteOf(*media);
  // The copy of the request the relay's answer is waiting for (let go with the callback).
  std::shared_ptr<msg_t> request(nta_incoming_getrequest(irq), &msg_destroy);
  call.relay_busy = true;
  relays_.Update(*call.media, from.set ? &remote : nullptr, from.set ? nullptr : &remote, false,
                 false, [this, f = std::move(f), request, sdp](absl::StatusOr<RelaySession> s) {
                   auto it = calls_.find(f.call);
                   if (it == calls_.end()) {
                     nta_incoming_treply(f.irq, SIP_481_NO_TRANSACTION, TAG_END());
                     nta_incoming_destroy(f.irq);
                     return;
                   }
                   Call& c = *it->second;
                   c.relay_busy = false;
                   Side& to = f.to_set ? c.set : c.icp;
                   int st = 503;
                   std::string ph = "Media Relay Unavailable";
                   std::optional<std::string> out;
                   if (s.ok() && c.state != Call::State::kEnded) {
                     c.media = *s;
                     out = SdpFor(c, to, sdp, true, &st, &ph);
                   }
                   if (!out) {
                     nta_incoming_treply(f.irq, st, ph.c_str(), TAG_END());
                     host_.CountResponse(f.method.c_str(), st);
                     nta_incoming_destroy(f.irq);
                     if (c.state == Call::State::kEnded) Release(c);
                     return;
                   }
                   SendForward(c, to, f, sip_object(request.get()), *out);
                 });
  return 0;
}

void Calls::SendForward(DialogPair& pair, Side& to, Forwarded f, const sip_t* sip,
                        const std::string& sdp) {
  f.cseq = ++to.cseq;
  // A call's record keeps the CSeq another instance would go on from; a BYE ends the call (and
  // its record) itself.
  if (Call* call = pair.AsCall(); call != nullptr && f.method != "BYE") Save(*call);
  const bool target_refresh = f.method == "INVITE" || f.method == "UPDATE";
  // A REFER's Contact is where the referee's NOTIFYs about the transfer go (RFC 3515).
  msg_t* msg = DialogRequest(to, f.method, f.cseq, target_refresh || f.method == "REFER", false);
  sip_t* out = sip_object(msg);
  const std::string timers = target_refresh ? TimerHeaders(sip) : "";
  if (!timers.empty()) sip_add_tl(msg, out, SIPTAG_HEADER_STR(timers.c_str()), TAG_END());
  if (!sdp.empty()) {
    sip_add_tl(msg, out, SIPTAG_CONTENT_TYPE_STR("application/sdp"),
               SIPTAG_PAYLOAD_STR(sdp.c_str()), TAG_END());
  } else if (sip != nullptr) {
    // What the request carries (DTMF in INFO, a message, an event) goes on unchanged.
    sip_add_tl(msg, out, SIPTAG_CONTENT_TYPE(sip->sip_content_type),
               SIPTAG_PAYLOAD(sip->sip_payload), SIPTAG_EVENT(sip->sip_event),
               SIPTAG_SUBSCRIPTION_STATE(sip->sip_subscription_state),
               SIPTAG_EXPIRES(sip->sip_expires), SIPTAG_ACCEPT(sip->sip_accept), TAG_END());
    if (sip->sip_refer_to != nullptr) {
      // A transfer: the target in the other side's terms, the referrer being rwg's identity
      // on that side.
      const std::string refer_to = ReferTarget(to, sip->sip_refer_to->r_url);
      sip_add_tl(msg, out, SIPTAG_REFER_TO_STR(refer_to.c_str()),
                 SIPTAG_REFERRED_BY_STR(to.local_uri.c_str()), TAG_END());
    }
  }
  // The transaction's context, in the table until its final answer (OnForwardResponse).
  Forwarded* magic = forwards_.Add(std::move(f));
  nta_outgoing_t* orq =
      Launch(to, msg, &Calls::OnForwardResponse, reinterpret_cast<nta_outgoing_magic_t*>(magic));
  if (orq == nullptr) {
    nta_incoming_treply(magic->irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
    host_.CountResponse(magic->method.c_str(), 503);
    nta_incoming_destroy(magic->irq);
    forwards_.Remove(magic);
  }
}

// The Refer-To of a transfer relayed toward `to`: the target's user at the other side's host
// (the iPBX for a phone's transfer, rwg's public name for the iPBX's). An attended transfer's
// Replaces names a dialog of the referrer's side; it becomes the matching dialog on `to`'s side.
std::string Calls::ReferTarget(const Side& to, const url_t* u) {
  auto view = host_.Config();
  const std::string host = to.set ? view->public_name : view->icp_host;
  std::string out = absl::StrCat("sip:", u->url_user ? u->url_user : "", "@", host);
  absl::string_view headers = u->url_headers ? u->url_headers : "";
  std::string replaces;
  for (absl::string_view h : absl::StrSplit(headers, '&')) {
    if (absl::ConsumePrefix(&h, "Replaces=") || absl::ConsumePrefix(&h, "replaces=")) {
      replaces = PercentDecode(h);
    }
  }
  if (!replaces.empty()) {
    // "<call-id>;to-tag=<x>;from-tag=<y>" of a call through rwg, on the referrer's side.
    std::vector<std::string> parts = absl::StrSplit(replaces, ';');
    // The referrer's side of that call is the side opposite `to`.
    // The referrer names the dialog by Call-ID and both tags; one of them is rwg's.
    DialogPair* found = nullptr;
    for (size_t i = 1; i < parts.size() && found == nullptr; ++i) {
      absl::string_view tag = parts[i];
      if (!absl::ConsumePrefix(&tag, "to-tag=") && !absl::ConsumePrefix(&tag, "from-tag=")) {
        continue;
      }
      auto it = by_dialog_.find(DialogKey(!to.set, parts[0], tag));
      if (it != by_dialog_.end()) found = it->second;
    }
    if (found != nullptr && found->AsCall() != nullptr) {
      // On `to`'s side the party to be replaced is that dialog's remote end.
      const Side& theirs = to.set ? found->set : found->icp;
      const std::string mapped = absl::StrCat(theirs.call_id, ";to-tag=", theirs.remote_tag,
                                              ";from-tag=", theirs.local_tag);
      absl::StrAppend(&out, "?Replaces=", PercentEncode(mapped));
    }
  }
  return absl::StrCat("<", out, ">");
}

int Calls::OnForwardResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip) {
  return Guard("OnForwardResponse", 0, [&]() -> int {
    auto* in_flight = reinterpret_cast<Forwarded*>(magic);
    const int status = sip ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200) return 0;  // provisional answers of a re-INVITE stay here
    // The final answer ends the relayed transaction: its context leaves the table here (the
    // one place it does once sent), a value from now on.
    Calls* self = in_flight->calls;
    const Forwarded f = std::move(*in_flight);
    self->forwards_.Remove(in_flight);
    const std::string phrase = sip && sip->sip_status->st_phrase ? sip->sip_status->st_phrase : "";
    const std::string sdp = PayloadOf(sip);
    DialogPair* pair = self->FindPair(f.call);
    if (pair == nullptr) {
      nta_outgoing_destroy(orq);
      nta_incoming_treply(f.irq, SIP_481_NO_TRANSACTION, TAG_END());
      nta_incoming_destroy(f.irq);
      return 0;
    }
    Call* call = pair->AsCall();
    Subscription* sub = pair->AsSubscription();
    Side& to = f.to_set ? pair->set : pair->icp;
    Side& from = self->Other(*pair, to);
    if (call != nullptr && f.method == "INVITE" && status < 300) {
      self->SendRequest(*call, to, "ACK", f.cseq);
    }
    if (sip && sip->sip_contact && status < 300 && (f.method == "INVITE" || f.method == "UPDATE")) {
      su_home_t home[1] = {SU_HOME_INIT(home)};
      to.remote_target = UrlText(home, sip->sip_contact->m_url);
      su_home_deinit(home);
    }
    const std::string timers =
        f.method == "INVITE" || f.method == "UPDATE" ? TimerHeaders(sip) : "";
    // What the iPBX granted a SUBSCRIBE, read like the rest before the transaction (which owns
    // the answer) is destroyed.
    const bool has_expires = sip != nullptr && sip->sip_expires != nullptr;
    const int expires_granted =
        has_expires ? static_cast<int>(std::min<sip_time_t>(sip->sip_expires->ex_delta, INT_MAX))
                    : 0;
    nta_outgoing_destroy(orq);
    auto finish = [self, &from, &f, &timers](int st, const char* ph, const std::string& body) {
      const bool with_contact = st < 300 && (f.method == "INVITE" || f.method == "UPDATE");
      nta_incoming_treply(f.irq, st, ph,
                          TAG_IF(with_contact, SIPTAG_CONTACT_STR(from.contact.c_str())),
                          TAG_IF(!timers.empty(), SIPTAG_HEADER_STR(timers.c_str())),
                          TAG_IF(!body.empty(), SIPTAG_CONTENT_TYPE_STR("application/sdp")),
                          TAG_IF(!body.empty(), SIPTAG_PAYLOAD_STR(body.c_str())), TAG_END());
      self->host_.CountResponse(f.method.c_str(), st);
      nta_incoming_destroy(f.irq);
    };
    if (!f.offer || call == nullptr || status >= 300 || sdp.empty()) {
      if (f.method == "SUBSCRIBE" && status < 300) {
        // A refresh (or an unsubscribe, Expires: 0): the phone learns what the iPBX granted.
        const int granted = has_expires ? expires_granted : sub != nullptr ? sub->expires : 0;
        if (sub != nullptr) sub->expires_at = self->clock_.Now() + absl::Seconds(granted);
        const std::string expires = std::to_string(granted);
        nta_incoming_treply(f.irq, status, phrase.c_str(), SIPTAG_CONTACT_STR(from.contact.c_str()),
                            SIPTAG_EXPIRES_STR(expires.c_str()), TAG_END());
        self->host_.CountResponse("SUBSCRIBE", status);
        nta_incoming_destroy(f.irq);
        return 0;
      }
      finish(status, phrase.c_str(), "");
      if (sub != nullptr && f.terminates) self->EndSubscription(*sub);
      return 0;
    }
    absl::StatusOr<AudioStream> answer = self->ReadFrom(*call, to.set, sdp);
    if (!answer.ok()) {
      finish(488, "Not Acceptable Here", "");
      return 0;
    }
    to.media = *answer;
    RelayRemote remote = RemoteOf(*answer);
    call->relay_busy = true;
    self->relays_.Update(
        *call->media, to.set ? &remote : nullptr, to.set ? nullptr : &remote, false, false,
        [self, f, status, phrase, sdp](absl::StatusOr<RelaySession> s) {
          auto it = self->calls_.find(f.call);
          std::optional<std::string> out;
          int st = 503;
          std::string ph = "Media Relay Unavailable";
          if (it != self->calls_.end()) {
            Call& c = *it->second;
            c.relay_busy = false;
            Side& to = f.to_set ? c.set : c.icp;
            Side& from = self->Other(c, to);
            if (s.ok()) {
              c.media = *s;
              out = self->SdpFor(c, from, sdp, false, &st, &ph);
            }
            nta_incoming_treply(
                f.irq, out ? status : st, out ? phrase.c_str() : ph.c_str(),
                SIPTAG_CONTACT_STR(from.contact.c_str()),
                TAG_IF(out.has_value(), SIPTAG_CONTENT_TYPE_STR("application/sdp")),
                TAG_IF(out.has_value(), SIPTAG_PAYLOAD_STR(out ? out->c_str() : "")), TAG_END());
            self->host_.CountResponse(f.method.c_str(), out ? status : st);
            nta_incoming_destroy(f.irq);
            if (c.state == Call::State::kEnded) self->Release(c);
            return;
          }
          nta_incoming_treply(f.irq, SIP_481_NO_TRANSACTION, TAG_END());
          nta_incoming_destroy(f.irq);
        });
    return 0;
  });
}

int Calls::OnCancel(nta_incoming_magic_t* magic, nta_incoming_t* irq, const sip_t* sip) {
  return Guard("OnCancel", 0, [&]() -> int {
    auto* self = reinterpret_cast<Calls*>(magic);
    // After a 2xx with rwg's offer, the INVITE's ACK (or its absence) comes here too.
    if (sip == nullptr || sip->sip_request->rq_method == sip_method_ack) {
      self->OnAck(irq, sip);
      return 0;
    }
    core::log::Debug("CANCEL received", {});
    auto [c, side] = self->ByInvite(irq, false);
    if (c == nullptr) return 0;
    c->end_reason = side->set ? "cancelled by the phone" : "cancelled by the iPBX";
    self->Answer(*c, *side, 487, "Request Terminated", "");
    self->Hangup(*c, side, c->end_reason.c_str());
    return 0;
  });
}

// The call and side whose INVITE `irq` is, found by its Call-ID (the INVITE came from either
// side); `ack`: among the INVITEs answered with rwg's offer and kept for their ACK.
std::pair<Calls::Call*, Calls::Side*> Calls::ByInvite(nta_incoming_t* irq, bool ack) {
  msg_t* request = nta_incoming_getrequest(irq);
  const sip_t* invite = request ? sip_object(request) : nullptr;
  const std::string call_id = invite && invite->sip_call_id ? invite->sip_call_id->i_id : "";
  msg_destroy(request);
  for (bool set_side : {true, false}) {
    for (DialogPair* pair : WithCallId(set_side, call_id)) {
      Call* c = pair->AsCall();
      if (c == nullptr) continue;  // a SUBSCRIBE: no CANCEL nor ACK of rwg's concern
      Side* side = set_side ? &c->set : &c->icp;
      if ((ack ? side->ack_irq : side->irq) == irq) return {c, side};
    }
  }
  return {nullptr, nullptr};
}

// The caller's ACK of a 2xx that carried rwg's offer (delayed offer): its answer goes to the
// relay. No usable answer, or no ACK at all (sip null: 32 s passed), ends the call.
void Calls::OnAck(nta_incoming_t* irq, const sip_t* sip) {
  auto [found, side] = ByInvite(irq, true);
  if (found == nullptr) {
    // An INVITE rwg has not answered yet, which sofia-sip answered itself (487 after a CANCEL
    // no call matched, or 500 when its transaction timed out): the call is over on that
    // side. The transaction stays rwg's until the call lets it go.
    auto [pending, pending_side] = ByInvite(irq, false);
    if (pending != nullptr) {
      pending_side->irq = nullptr;
      nta_incoming_destroy(irq);
      if (pending->state != Call::State::kEnded) {
        pending->end_reason =
            pending_side->set ? "cancelled by the phone" : "cancelled by the iPBX";
        Hangup(*pending, pending_side, pending->end_reason.c_str());
      }
      return;
    }
    nta_incoming_destroy(irq);
    return;
  }
  nta_incoming_destroy(irq);
  Call& c = *found;
  side->ack_irq = nullptr;
  if (c.state == Call::State::kEnded) return;
  const std::string sdp = PayloadOf(sip);
  absl::StatusOr<AudioStream> answer = sip == nullptr ? absl::DeadlineExceededError("no ACK")
                                       : sdp.empty()
                                           ? absl::InvalidArgumentError("sdp: no answer in the ACK")
                                           : ReadFrom(c, side->set, sdp);
  if (!answer.ok()) {
    core::log::Info("answer refused",
                    {{"call", c.id}, {"error", std::string(answer.status().message())}});
    c.bye_reason = "SIP;cause=488;text=\"no usable answer in the ACK\"";
    c.end_reason = "no usable answer in the ACK";
    return Hangup(c, nullptr, c.end_reason.c_str());
  }
  side->media = *answer;
  RelayRemote remote = RemoteOf(*answer);
  const std::string id = c.id;
  c.relay_busy = true;
  relays_.Update(*c.media, side->set ? &remote : nullptr, side->set ? nullptr : &remote, false,
                 false, [this, id](absl::StatusOr<RelaySession> s) {
                   auto it = calls_.find(id);
                   if (it == calls_.end()) return;
                   Call& c = *it->second;
                   c.relay_busy = false;
                   if (c.state == Call::State::kEnded) return Release(c);
                   if (!s.ok()) {
                     c.end_reason = "media";
                     return Hangup(c, nullptr, "media");
                   }
                   c.media = *s;
                 });
}

// A PRACK for one of rwg's reliable provisional answers (matched by sofia-sip). rwg's
// provisionals carry answers, never offers: a PRACK bringing an offer is refused.
int Calls::OnPrack(nta_reliable_magic_t* magic, nta_reliable_t*, nta_incoming_t* prack,
                   const sip_t* sip) {
  return Guard("OnPrack", 500, [&]() -> int {
    auto* self = reinterpret_cast<Calls*>(magic);
    if (sip != nullptr && sip->sip_payload != nullptr && sip->sip_payload->pl_len > 0) {
      nta_incoming_treply(prack, SIP_488_NOT_ACCEPTABLE,
                          SIPTAG_WARNING_STR("399 rwg \"no offer in PRACK\""), TAG_END());
      nta_incoming_destroy(prack);
      self->host_.CountResponse("PRACK", 488);
      return 0;
    }
    self->host_.CountResponse("PRACK", 200);
    return 200;
  });
}

// Acknowledges a reliable provisional answer to rwg's INVITE on `to` (RFC 3262); false for a
// retransmission of one already acknowledged (dropped: relayed once).
bool Calls::Prack(Side& to, const sip_t* sip) {
  if (sip->sip_rseq == nullptr || !RequiresOption(sip, "100rel")) return true;
  const uint32_t rseq = sip->sip_rseq->rs_response;
  if (to.rseq != 0 && rseq <= to.rseq) return false;
  to.rseq = rseq;
  msg_t* msg = DialogRequest(to, "PRACK", ++to.cseq, false, false);
  const std::string rack = absl::StrCat(rseq, " ", to.invite_cseq, " INVITE");
  sip_add_tl(msg, sip_object(msg), SIPTAG_RACK_STR(rack.c_str()), TAG_END());
  nta_outgoing_t* orq = Launch(to, msg, nullptr, nullptr);
  if (orq != nullptr) nta_outgoing_destroy(orq);
  return true;
}

}  // namespace rwg::sip_edge
