#include "services/sip_edge/upstream_registrar.h"

#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_tagarg.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/log.h"
#include "services/sip_edge/calls.h"
#include "services/sip_edge/digest.h"
#include "services/sip_edge/guard.h"

namespace rwg::sip_edge {

absl::Duration UpstreamRefreshDelay(int granted_seconds) {
  const absl::Duration granted = absl::Seconds(granted_seconds);
  const absl::Duration early = std::min(std::max(granted * 0.2, absl::Seconds(3)), granted / 2);
  return granted - early;
}

UpstreamRegistrar::UpstreamRegistrar(nta_agent_t* icp_agent, GatewayConfigWatcher& config,
                                     std::string contact_host, core::Clock& clock,
                                     core::Random& rng, prometheus::Histogram& latency,
                                     prometheus::Family<prometheus::Counter>& results)
    : agent_(icp_agent),
      config_(config),
      contact_host_(std::move(contact_host)),
      clock_(clock),
      rng_(rng),
      latency_(latency),
      results_(results) {}

void UpstreamRegistrar::Register(UpstreamRegistration registration, Done done) {
  Pending* p = in_flight_.Add();
  p->self = this;
  p->registration = std::move(registration);
  p->done = std::move(done);
  p->started = clock_.Now();
  if (!Send(p, nullptr, false)) Finish(p, UpstreamResult{}, "failed");
}

bool UpstreamRegistrar::Send(Pending* p, const char* authorization, bool proxy) {
  auto view = config_.Get();
  if (view->icp_host.empty()) return false;
  const core::DeviceSecrets& device = p->registration.device;
  Dialog& d = dialogs_[device.set_username];
  if (d.call_id.empty()) {
    d.call_id = absl::StrCat(core::RandomHex(rng_, 12), "@rwg");
    d.from_tag = core::RandomHex(rng_, 6);
  }
  ++d.cseq;
  const std::string host = absl::StrCat(view->icp_host, ":", view->icp_port);
  const std::string aor = absl::StrCat("sip:", device.icp_username, "@", view->icp_host);
  const std::string request =
      absl::StrCat("REGISTER sip:", host, ";transport=", view->icp_transport, " SIP/2.0");
  const std::string from = absl::StrCat("<", aor, ">;tag=", d.from_tag);
  const std::string to = absl::StrCat("<", aor, ">");
  const std::string contact =
      absl::StrCat("<sip:", device.icp_username, "@", contact_host_, ";transport=tcp>");
  const std::string cseq = absl::StrCat(d.cseq, " REGISTER");
  const std::string expires = std::to_string(p->registration.expires);
  const std::string& stale = p->registration.stale_contact;
  msg_t* msg = nta_msg_create(agent_, 0);
  sip_t* sip = sip_object(msg);
  sip_add_tl(
      msg, sip, SIPTAG_REQUEST_STR(request.c_str()), SIPTAG_FROM_STR(from.c_str()),
      SIPTAG_TO_STR(to.c_str()), SIPTAG_CALL_ID_STR(d.call_id.c_str()),
      SIPTAG_CSEQ_STR(cseq.c_str()), SIPTAG_CONTACT_STR(contact.c_str()),
      TAG_IF(!stale.empty(), SIPTAG_CONTACT_STR(stale.c_str())),
      SIPTAG_EXPIRES_STR(expires.c_str()), SIPTAG_MAX_FORWARDS_STR("70"),
      SIPTAG_USER_AGENT_STR("rwg"),
      TAG_IF(authorization != nullptr && !proxy, SIPTAG_AUTHORIZATION_STR(authorization)),
      TAG_IF(authorization != nullptr && proxy, SIPTAG_PROXY_AUTHORIZATION_STR(authorization)),
      TAG_END());
  nta_outgoing_t* orq =
      nta_outgoing_mcreate(agent_, &UpstreamRegistrar::OnResponse,
                           reinterpret_cast<nta_outgoing_magic_t*>(p), nullptr, msg, TAG_END());
  return orq != nullptr;
}

int UpstreamRegistrar::OnResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq,
                                  const sip_t* sip) {
  return Guard("OnUpstreamResponse", 0, [&]() -> int {
    auto* p = reinterpret_cast<Pending*>(magic);
    p->self->HandleResponse(p, orq, sip);
    return 0;
  });
}

void UpstreamRegistrar::HandleResponse(Pending* p, nta_outgoing_t* orq, const sip_t* sip) {
  const int status = sip ? sip->sip_status->st_status : nta_outgoing_status(orq);
  if (status < 200) return;
  const core::DeviceSecrets& device = p->registration.device;
  if (p->registration.phone_waiting) {
    latency_.Observe(absl::ToDoubleSeconds(clock_.Now() - p->started));
  }
  if ((status == 401 || status == 407) && sip && p->attempts < 2) {
    const msg_auth_t* ch = status == 401 ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
    std::string challenge = HeaderText(ch);
    auto view = config_.Get();
    const std::string uri = absl::StrCat("sip:", view->icp_host, ":", view->icp_port,
                                         ";transport=", view->icp_transport);
    absl::StatusOr<std::string> answer = AnswerChallenge(
        challenge, device.icp_username, device.icp_password, "REGISTER", uri, 1, rng_);
    nta_outgoing_destroy(orq);
    ++p->attempts;
    if (!answer.ok()) {
      core::log::Warn(
          "cannot answer the iPBX's challenge",
          {{"device", device.set_username}, {"error", std::string(answer.status().message())}});
      return Finish(p, UpstreamResult{403, "Forbidden", 0}, "refused");
    }
    if (!Send(p, answer->c_str(), status == 407)) Finish(p, UpstreamResult{}, "failed");
    return;
  }
  // Everything needed from the response is read before the transaction (which owns the
  // response) is destroyed.
  int granted = p->registration.expires;
  if (status >= 200 && status < 300) {
    if (sip && sip->sip_expires) {
      granted = static_cast<int>(std::min<sip_time_t>(static_cast<sip_time_t>(std::max(granted, 0)),
                                                      sip->sip_expires->ex_delta));
    }
    for (const sip_contact_t* m = sip ? sip->sip_contact : nullptr; m; m = m->m_next) {
      unsigned long v = 0;
      if (m->m_expires && m->m_url->url_user && device.icp_username == m->m_url->url_user &&
          absl::SimpleAtoi(m->m_expires, &v)) {
        granted = std::min<int>(granted, static_cast<int>(v));
      }
    }
  }
  nta_outgoing_destroy(orq);
  sip = nullptr;
  if (status >= 200 && status < 300) {
    const int asked = p->registration.expires;
    return Finish(p, UpstreamResult{200, "OK", asked == 0 ? 0 : std::max(granted, 1)}, "ok");
  }
  if (status == 401 || status == 403 || status == 404 || status == 407) {
    core::log::Warn("iPBX refused the registration", {{"device", device.set_username},
                                                      {"icp_username", device.icp_username},
                                                      {"status", std::to_string(status)}});
    return Finish(p, UpstreamResult{403, "Forbidden", 0}, "refused");
  }
  core::log::Warn("iPBX did not accept the registration",
                  {{"device", device.set_username}, {"status", std::to_string(status)}});
  Finish(p, UpstreamResult{}, "failed");
}

void UpstreamRegistrar::Finish(Pending* p, UpstreamResult result, const char* counted_as) {
  results_.Add({{"result", counted_as}}).Increment();
  if (result.status != 200) result.granted = p->registration.expires;
  Done done = std::move(p->done);
  in_flight_.Remove(p);
  done(result);
}

}  // namespace rwg::sip_edge
