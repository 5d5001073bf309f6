#include "services/sip_edge/peer_forwarding.h"

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>

#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/log.h"
#include "services/sip_edge/guard.h"
#include "services/sip_edge/held_request.h"
#include "services/sip_edge/sip_methods.h"

namespace rwg::sip_edge {

namespace {

// What identifies `sip` for the mark of a request relayed between instances.
std::string ForwardIdentity(const sip_t* sip) {
  return ForwardMarks::RequestIdentity(
      sip->sip_call_id ? sip->sip_call_id->i_id : "", sip->sip_cseq ? sip->sip_cseq->cs_seq : 0,
      sip->sip_request->rq_method_name,
      sip->sip_from && sip->sip_from->a_tag ? sip->sip_from->a_tag : "");
}

}  // namespace

PeerForwarder::PeerForwarder(std::string instance, std::string forward_key, nta_agent_t* icp_agent,
                             core::AsyncRedisCommands& redis, InstanceDirectory& instances,
                             core::Clock& clock, prometheus::Family<prometheus::Counter>& responses)
    : instance_(instance),
      icp_agent_(icp_agent),
      redis_(redis),
      instances_(instances),
      clock_(clock),
      responses_(responses),
      marks_(std::move(instance), std::move(forward_key), clock) {}

PeerForwarder::~PeerForwarder() {
  relays_in_flight_.Clear();
  proxied_in_flight_.Clear();
}

bool PeerForwarder::ForwardedByPeer(const sip_t* sip) {
  for (const sip_unknown_t* u = sip->sip_unknown; u != nullptr; u = u->un_next) {
    if (u->un_name == nullptr || !absl::EqualsIgnoreCase(u->un_name, ForwardMarks::kHeader)) {
      continue;
    }
    return marks_.Accept(u->un_value ? u->un_value : "", ForwardIdentity(sip));
  }
  return false;
}

std::string PeerForwarder::Mark(const sip_t* sip) const {
  return marks_.Mark(ForwardIdentity(sip));
}

void PeerForwarder::CountResponse(const char* method, int status) {
  responses_.Add({{"method", MethodLabel(method)}, {"code", std::to_string(status)}}).Increment();
}

void PeerForwarder::PeerHolding(const std::string& icp_user,
                                std::function<void(std::optional<Holder>)> done) {
  core::BindingStore::SetUsernameForIcp(
      icp_user, redis_,
      [this,
       done = std::move(done)](const absl::StatusOr<std::optional<std::string>>& user) mutable {
        if (!user.ok() || !user->has_value()) return done(std::nullopt);
        core::BindingStore::Get(**user, redis_,
                                [this, user = **user, done = std::move(done)](
                                    const absl::StatusOr<std::optional<core::Binding>>& b) {
                                  if (!b.ok() || !b->has_value() || (*b)->instance == instance_ ||
                                      !(*b)->reachable || (*b)->expires_at <= clock_.Now()) {
                                    return done(std::nullopt);
                                  }
                                  std::string address = instances_.Address((*b)->instance);
                                  if (address.empty()) return done(std::nullopt);
                                  done(Holder{user, (*b)->instance, std::move(address)});
                                });
      });
}

int PeerForwarder::Forward(nta_incoming_t* irq, const sip_t* /*sip*/, const std::string& icp_user) {
  auto held = std::make_shared<HeldRequest>(irq, responses_);
  PeerHolding(icp_user, [this, irq, held, icp_user](const std::optional<Holder>& holder) {
    held->Resume("Forward",
                 [&](const sip_t* sip) { return ForwardTo(irq, sip, icp_user, holder); });
  });
  return held->Release();
}

int PeerForwarder::ForwardTo(nta_incoming_t* irq, const sip_t* sip, const std::string& icp_user,
                             const std::optional<Holder>& holder) {
  const char* method = sip->sip_request->rq_method_name;
  if (!holder) {
    nta_incoming_treply(irq, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
    CountResponse(method, 480);
    return 480;
  }
  const std::string request =
      absl::StrCat(method, " sip:", icp_user, "@", holder->address, ";transport=tcp SIP/2.0");
  const std::string mark = Mark(sip);
  msg_t* msg = nta_msg_create(icp_agent_, 0);
  sip_t* out = sip_object(msg);
  sip_add_tl(msg, out, SIPTAG_REQUEST_STR(request.c_str()), SIPTAG_FROM(sip->sip_from),
             SIPTAG_TO(sip->sip_to), SIPTAG_CALL_ID(sip->sip_call_id), SIPTAG_CSEQ(sip->sip_cseq),
             SIPTAG_MAX_FORWARDS_STR("70"), SIPTAG_EVENT(sip->sip_event),
             SIPTAG_SUBSCRIPTION_STATE(sip->sip_subscription_state),
             SIPTAG_CONTENT_TYPE(sip->sip_content_type), SIPTAG_PAYLOAD(sip->sip_payload),
             SIPTAG_HEADER_STR(mark.c_str()), TAG_END());
  auto* relay = relays_in_flight_.Add(this, irq, method);
  nta_outgoing_t* orq =
      nta_outgoing_mcreate(icp_agent_, &PeerForwarder::OnRelayResponse,
                           reinterpret_cast<nta_outgoing_magic_t*>(relay), nullptr, msg, TAG_END());
  if (orq == nullptr) {
    relays_in_flight_.Remove(relay);
    nta_incoming_treply(irq, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
    CountResponse(method, 480);
    return 480;
  }
  core::log::Debug("forwarded to the instance holding the phone",
                   {{"device", holder->device}, {"instance", holder->instance}});
  return 0;
}

int PeerForwarder::ProxyInvite(nta_incoming_t* irq, const sip_t* /*sip*/,
                               const std::string& icp_user) {
  auto held = std::make_shared<HeldRequest>(irq, responses_);
  PeerHolding(icp_user, [this, irq, held, icp_user](const std::optional<Holder>& holder) {
    held->Resume("ProxyInvite",
                 [&](const sip_t* sip) { return ProxyTo(irq, sip, icp_user, holder); });
  });
  return held->Release();
}

int PeerForwarder::ProxyTo(nta_incoming_t* irq, const sip_t* sip, const std::string& icp_user,
                           const std::optional<Holder>& holder) {
  if (!holder) return 480;
  if (sip->sip_max_forwards != nullptr && sip->sip_max_forwards->mf_count <= 1) return 483;
  msg_t* original = nta_incoming_getrequest(irq);
  msg_t* msg = msg_dup(original);
  msg_destroy(original);
  if (msg == nullptr) return 500;
  sip_t* out = sip_object(msg);
  while (out->sip_route != nullptr) {
    sip_header_remove(msg, out, reinterpret_cast<sip_header_t*>(out->sip_route));
  }
  const std::string request =
      absl::StrCat("INVITE sip:", icp_user, "@", holder->address, ";transport=tcp SIP/2.0");
  const std::string hops =
      std::to_string(sip->sip_max_forwards != nullptr ? sip->sip_max_forwards->mf_count - 1 : 69);
  const std::string mark = Mark(sip);
  sip_add_tl(msg, out, SIPTAG_REQUEST_STR(request.c_str()), SIPTAG_MAX_FORWARDS_STR(hops.c_str()),
             SIPTAG_HEADER_STR(mark.c_str()), TAG_END());
  auto* p = proxied_in_flight_.Add(this, irq, nullptr);
  p->orq =
      nta_outgoing_mcreate(icp_agent_, &PeerForwarder::OnProxiedResponse,
                           reinterpret_cast<nta_outgoing_magic_t*>(p), nullptr, msg, TAG_END());
  if (p->orq == nullptr) {
    proxied_in_flight_.Remove(p);
    return 503;
  }
  nta_incoming_bind(irq, &PeerForwarder::OnProxiedCancel,
                    reinterpret_cast<nta_incoming_magic_t*>(p));
  core::log::Debug("call proxied to the instance holding the phone",
                   {{"device", holder->device}, {"instance", holder->instance}});
  return 0;
}

int PeerForwarder::OnProxiedCancel(nta_incoming_magic_t* magic, nta_incoming_t* /*irq*/,
                                   const sip_t* sip) {
  return Guard("OnProxiedCancel", 0, [&]() -> int {
    auto* p = reinterpret_cast<ProxiedInvite*>(magic);
    if (sip != nullptr && sip->sip_request != nullptr &&
        sip->sip_request->rq_method == sip_method_cancel && p->orq != nullptr) {
      nta_outgoing_cancel(p->orq);  // the holder answers its INVITE 487, relayed below
    }
    return 0;
  });
}

// The holder's answers go to the iPBX as they are, less this instance's Via.
int PeerForwarder::OnProxiedResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq,
                                     const sip_t* sip) {
  return Guard("OnProxiedResponse", 0, [&]() -> int {
    auto* p = reinterpret_cast<ProxiedInvite*>(magic);
    const int status = sip ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status <= 100) return 0;
    msg_t* response = sip != nullptr ? nta_outgoing_getresponse(orq) : nullptr;
    msg_t* copy = response != nullptr ? msg_dup(response) : nullptr;
    msg_destroy(response);
    if (copy != nullptr) {
      sip_t* s = sip_object(copy);
      sip_header_remove(copy, s, reinterpret_cast<sip_header_t*>(s->sip_via));
      if (s->sip_to != nullptr && s->sip_to->a_tag != nullptr) {
        nta_incoming_tag(p->irq, s->sip_to->a_tag);
      }
      nta_incoming_mreply(p->irq, copy);
    } else if (status >= 200) {  // no answer from the holder (timeout, connection lost)
      nta_incoming_treply(p->irq, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
    }
    if (status < 200) return 0;
    p->self->CountResponse("INVITE", status);
    nta_incoming_bind(p->irq, nullptr, nullptr);
    nta_incoming_destroy(p->irq);
    nta_outgoing_destroy(orq);
    p->self->proxied_in_flight_.Remove(p);
    return 0;
  });
}

// The holder's final answer goes to the iPBX (status and phrase).
int PeerForwarder::OnRelayResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq,
                                   const sip_t* sip) {
  return Guard("OnRelayResponse", 0, [&]() -> int {
    auto* r = reinterpret_cast<PendingRelay*>(magic);
    const int status = sip ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200) return 0;
    const char* phrase = sip && sip->sip_status->st_phrase ? sip->sip_status->st_phrase : "";
    nta_incoming_treply(r->irq, status, phrase, TAG_END());
    r->self->CountResponse(r->method.c_str(), status);
    nta_incoming_destroy(r->irq);
    nta_outgoing_destroy(orq);
    r->self->relays_in_flight_.Remove(r);
    return 0;
  });
}

}  // namespace rwg::sip_edge
