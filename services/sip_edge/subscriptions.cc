// Subscriptions of phones (SUBSCRIBE/NOTIFY: message waiting, BLF, ...), relayed to the iPBX
// through the same two dialogs as a call (services/sip_edge/call_state.h) but without media:
// the SUBSCRIBE goes out like a new call's INVITE, and its NOTIFYs and refreshes are relayed
// in the dialog (forwarding.cc: Forward).
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
  auto call = std::make_unique<Call>();
  Call& c = *call;
  c.id = core::RandomHex(rng_, 8);
  Subscription& sub = c.subscription.emplace();
  c.device = phone.device;
  c.number = resource;
  c.started = clock_.Now();
  sub.event = HeaderText(sip->sip_event);
  sub.accept = HeaderText(sip->sip_accept);
  sub.expires = sip->sip_expires ? static_cast<int>(sip->sip_expires->ex_delta) : 3600;
  sub.expires_at = clock_.Now() + absl::Seconds(sub.expires);
  PhoneSide(c.set, irq, sip, phone);
  IcpSideTo(c.icp, phone, resource, *view);
  Index(c);
  ++subscriptions_of_[c.device.set_username];
  subscriptions_.Increment();
  core::log::Debug("subscription", {{"id", c.id},
                                    {"device", c.device.set_username},
                                    {"resource", resource},
                                    {"event", sub.event}});
  calls_[c.id] = std::move(call);
  SendInvite(c, c.icp, "", nullptr, false);
  return 0;
}

void Calls::OnSubscribeResponse(Call& call, Side& to, nta_outgoing_t* orq, const sip_t* sip,
                                int status, const std::string& phrase) {
  if (status < 200) return;
  Side& from = Other(call, to);
  // Read from the response before its transaction (which owns `sip`) is destroyed below.
  int granted = call.subscription->expires;
  if (sip && sip->sip_expires) granted = static_cast<int>(sip->sip_expires->ex_delta);
  if ((status == 401 || status == 407) && sip != nullptr && to.auth_attempts < 2) {
    ++to.auth_attempts;
    std::optional<std::string> auth = AnswerIcpChallenge(call, to, sip, status, "SUBSCRIBE");
    nta_outgoing_destroy(orq);
    to.orq = nullptr;
    if (auth) return SendInvite(call, to, "", auth->c_str(), status == 407);
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
  if (st >= 300 || call.state == Call::State::kEnded) return Forget(call);
  call.state = Call::State::kConfirmed;
  call.subscription->expires_at = clock_.Now() + absl::Seconds(granted);
}

}  // namespace rwg::sip_edge
