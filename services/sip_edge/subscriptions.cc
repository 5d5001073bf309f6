// Subscriptions of phones (SUBSCRIBE/NOTIFY: message waiting, BLF, ...), relayed to the iPBX
// through a pair of dialogs like a call's (Calls::DialogPair, services/sip_edge/call_state.h)
// but without media: the SUBSCRIBE goes out like a new call's INVITE, and its NOTIFYs and
// refreshes are relayed in the dialogs (forwarding.cc: Forward, OnForwardResponse).
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"
#include "services/sip_edge/call_state.h"
#include "services/sip_edge/calls.h"

namespace rwg::sip_edge {

int Calls::NewSubscriptionFromPhone(nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone) {
  auto view = host_.Config();
  const char* target = sip->sip_request->rq_url->url_user;
  auto reply = [&](int status, const char* phrase) {
    nta_incoming_treply(irq, status, phrase, TAG_END());
    host_.CountResponse("SUBSCRIBE", status);
    return status;
  };
  if (target == nullptr || *target == '\0') return reply(SIP_404_NOT_FOUND);
  if (sip->sip_event == nullptr) return reply(SIP_489_BAD_EVENT);
  if (subscriptions_of_[phone.device.set_username] >= options_.max_subscriptions_per_device) {
    nta_incoming_treply(irq, SIP_403_FORBIDDEN,
                        SIPTAG_WARNING_STR("399 rwg \"too many subscriptions for this device\""),
                        TAG_END());
    host_.CountResponse("SUBSCRIBE", 403);
    return 403;
  }
  if (view->icp_host.empty()) return reply(SIP_503_SERVICE_UNAVAILABLE);
  // The phone's own user (message waiting for itself) is its ICP-side user at the iPBX.
  std::string resource = target;
  if (resource == phone.device.set_username) resource = phone.device.icp_username;
  auto owned = std::make_unique<Subscription>();
  Subscription& sub = *owned;
  sub.id = core::RandomHex(rng_, 8);
  sub.device = phone.device;
  sub.resource = resource;
  sub.started = clock_.Now();
  sub.event = HeaderText(sip->sip_event);
  sub.accept = HeaderText(sip->sip_accept);
  sub.expires = sip->sip_expires ? static_cast<int>(sip->sip_expires->ex_delta) : 3600;
  sub.expires_at = clock_.Now() + absl::Seconds(sub.expires);
  PhoneSide(sub.set, irq, sip, phone);
  IcpSideTo(sub.icp, phone, resource, *view);
  Index(sub);
  ++subscriptions_of_[sub.device.set_username];
  active_subscriptions_.Increment();
  core::log::Debug("subscription", {{"id", sub.id},
                                    {"device", sub.device.set_username},
                                    {"resource", resource},
                                    {"event", sub.event}});
  subscriptions_[sub.id] = std::move(owned);
  SendSubscribe(sub, nullptr, false);
  return 0;
}

void Calls::SendSubscribe(Subscription& sub, const char* authorization, bool proxy_auth) {
  Side& to = sub.icp;
  to.invite_cseq = ++to.cseq;
  const std::string expires = std::to_string(sub.expires);
  msg_t* msg = DialogRequest(to, "SUBSCRIBE", to.invite_cseq, true, true);
  sip_add_tl(msg, sip_object(msg), SIPTAG_ALLOW_STR(kAllow),
             TAG_IF(authorization && !proxy_auth, SIPTAG_AUTHORIZATION_STR(authorization)),
             TAG_IF(authorization && proxy_auth, SIPTAG_PROXY_AUTHORIZATION_STR(authorization)),
             SIPTAG_EVENT_STR(sub.event.c_str()),
             TAG_IF(!sub.accept.empty(), SIPTAG_ACCEPT_STR(sub.accept.c_str())),
             SIPTAG_EXPIRES_STR(expires.c_str()), TAG_END());
  if (LaunchFirst(sub, to, msg)) return;
  Side& from = sub.set;
  if (from.irq != nullptr) {
    nta_incoming_treply(from.irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
    host_.CountResponse("SUBSCRIBE", 503);
    nta_incoming_destroy(from.irq);
    from.irq = nullptr;
  }
  EndSubscription(sub);
}

void Calls::OnSubscribeResponse(Subscription& sub, Side& to, nta_outgoing_t* orq, const sip_t* sip,
                                int status, const std::string& phrase) {
  if (status < 200) return;
  Side& from = Other(sub, to);
  // Read from the response before its transaction (which owns `sip`) is destroyed below.
  int granted = sub.expires;
  if (sip && sip->sip_expires) granted = static_cast<int>(sip->sip_expires->ex_delta);
  if ((status == 401 || status == 407) && sip != nullptr && to.auth_attempts < 2) {
    ++to.auth_attempts;
    std::optional<std::string> auth = AnswerIcpChallenge(sub, to, sip, status, "SUBSCRIBE");
    nta_outgoing_destroy(orq);
    to.orq = nullptr;
    if (auth) return SendSubscribe(sub, auth->c_str(), status == 407);
  } else {
    nta_outgoing_destroy(orq);
    to.orq = nullptr;
  }
  int st = status;
  if (status == 401 || status == 407) st = 403;
  const std::string expires = std::to_string(granted);
  if (from.irq != nullptr) {
    nta_incoming_treply(from.irq, st, phrase.c_str(),
                        TAG_IF(st < 300, SIPTAG_CONTACT_STR(from.contact.c_str())),
                        TAG_IF(st < 300, SIPTAG_EXPIRES_STR(expires.c_str())), TAG_END());
    host_.CountResponse("SUBSCRIBE", st);
    nta_incoming_destroy(from.irq);
    from.irq = nullptr;
  }
  // Refused (or ended meanwhile): gone. An unsubscribe (0 s) stays for its final NOTIFY.
  if (st >= 300 || sub.state == Subscription::State::kEnded) return EndSubscription(sub);
  sub.state = Subscription::State::kConfirmed;
  sub.expires_at = clock_.Now() + absl::Seconds(granted);
}

void Calls::EndSubscription(Subscription& sub) {
  Unindex(sub);
  if (sub.set.tport) tport_unref(sub.set.tport);
  if (sub.set.irq) {
    nta_incoming_treply(sub.set.irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
    nta_incoming_destroy(sub.set.irq);
  }
  DropInvites(sub);
  Uncount(subscriptions_of_, sub.device.set_username);
  active_subscriptions_.Decrement();
  core::log::Debug("subscription ended", {{"id", sub.id}});
  subscriptions_.erase(sub.id);
}

}  // namespace rwg::sip_edge
