// Calls through the gateway (see calls.h): the back-to-back user agent's set-up of a call and
// its end. New calls from either side, the INVITE toward the side called and its answers
// (provisional, early media, the iPBX's challenge, refusal, acceptance) with the offer and
// answer through the media relay, the answers to the caller, hangups and the release of an
// ended call, the dialogs' index, sending a dialog's requests (following a phone that
// reconnected). Elsewhere: the in-dialog requests relayed between the sides with PRACK, CANCEL
// and REFER in forwarding.cc; the calls' records in Redis, `rwgctl call list` and the orphan
// calls of a lost instance in call_records.cc; subscriptions, which share the dialogs, in
// subscriptions.cc; the SIP helpers in call_sip.{h,cc}; the call state in call_state.h.
#include "services/sip_edge/calls.h"

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/core/log.h"
#include "services/sip_edge/call_sip.h"
#include "services/sip_edge/call_state.h"
#include "services/sip_edge/digest.h"
#include "services/sip_edge/guard.h"
#include "services/sip_edge/sdp.h"

namespace rwg::sip_edge {

std::string UdpRoute(const std::string& source) {
  const size_t colon = source.rfind(':');
  const std::string ip = source.substr(0, colon);
  return absl::StrCat("sip:", absl::StrContains(ip, ':') ? absl::StrCat("[", ip, "]") : ip, ":",
                      colon == std::string::npos ? "" : source.substr(colon + 1), ";transport=udp");
}

std::string HeaderText(const void* header) {
  if (header == nullptr) return "";
  // Encoded into a buffer of ours and taken by the length sofia-sip returns: its
  // sip_header_as_string() leaves some values (an Event with odd parameters) without their
  // terminating NUL.
  const auto* h = static_cast<const msg_header_t*>(header);
  std::string buf(256, '\0');
  for (int attempt = 0; attempt < 8; ++attempt) {
    const issize_t n = msg_header_field_e(buf.data(), static_cast<isize_t>(buf.size()), h, 0);
    if (n < 0) return "";
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.assign(static_cast<size_t>(n) + 1, '\0');
  }
  return "";
}

namespace {

// How long an ended call may wait for its INVITEs' last answers: past 64 T1 (32 s, RFC 3261
// timers B and C) with a margin.
constexpr absl::Duration kEndedGrace = absl::Seconds(40);

// Reads what one side sent within that side's inbound policy (R-CFG): SRTP_ONLY needs a key
// (RTP/SAVP from a phone, unless the device allows plain RTP; RTP/AVP with a key will do from
// the iPBX), RTP_ONLY refuses RTP/SAVP and drops any key (answered plain), SRTP_OR_RTP takes
// either.
absl::StatusOr<AudioStream> ReadMedia(absl::string_view sdp, const GatewayView& view, bool set,
                                      bool srtp_optional) {
  std::string policy = set ? view.set_side_inbound : view.icp_side_inbound;
  if (set && srtp_optional && policy == "SRTP_ONLY") policy = "SRTP_OR_RTP";
  absl::StatusOr<AudioStream> a = ReadAudio(sdp, set && policy == "SRTP_ONLY");
  if (!a.ok()) return a;
  const char* side = set ? "set" : "ICP";
  if (policy == "SRTP_ONLY" && a->crypto.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("sdp: m=audio: plain RTP where the ", side, "-side policy is SRTP_ONLY"));
  }
  if (policy == "RTP_ONLY") {
    if (a->secure) {
      return absl::FailedPreconditionError(
          absl::StrCat("sdp: m=audio: RTP/SAVP where the ", side, "-side policy is RTP_ONLY"));
    }
    a->crypto.clear();
  }
  return a;
}

}  // namespace

Calls::Calls(CallOptions options, CallHost& host, nta_agent_t* set_agent, nta_agent_t* icp_agent,
             MediaRelays& relays, core::Clock& clock, core::Random& rng,
             prometheus::Registry& registry)
    : options_(std::move(options)),
      host_(host),
      set_agent_(set_agent),
      icp_agent_(icp_agent),
      relays_(relays),
      clock_(clock),
      rng_(rng),
      active_(prometheus::BuildGauge()
                  .Name("rwg_sip_edge_active_calls")
                  .Help("Calls through this instance, from the first INVITE to the last BYE")
                  .Register(registry)
                  .Add({})),
      attempts_(prometheus::BuildCounter()
                    .Name("rwg_sip_edge_call_attempts_total")
                    .Help("Calls begun, by direction (outbound: phone to iPBX)")
                    .Register(registry)),
      outcomes_(prometheus::BuildCounter()
                    .Name("rwg_sip_edge_call_outcomes_total")
                    .Help("Call setups finished, by direction and final code")
                    .Register(registry)),
      setup_time_(prometheus::BuildHistogram()
                      .Name("rwg_sip_edge_call_setup_seconds")
                      .Help("From the INVITE to its 200 OK")
                      .Register(registry)
                      .Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                                                       5, 10, 30, 60})),
      emergency_(prometheus::BuildCounter()
                     .Name("rwg_sip_edge_emergency_calls_total")
                     .Help("Calls to a special number, rewritten for the caller's location")
                     .Register(registry)
                     .Add({})),
      active_subscriptions_(prometheus::BuildGauge()
                                .Name("rwg_sip_edge_subscriptions")
                                .Help("Subscriptions of phones relayed to the iPBX (message "
                                      "waiting, BLF)")
                                .Register(registry)
                                .Add({})),
      media_timeouts_(prometheus::BuildCounter()
                          .Name("rwg_sip_edge_media_timeouts_total")
                          .Help("Calls ended because their media stopped")
                          .Register(registry)
                          .Add({})) {}

Calls::~Calls() { HangupAll("shutdown"); }

bool Calls::IsCallMethod(sip_method_t m) {
  return m == sip_method_invite || m == sip_method_ack || m == sip_method_bye ||
         m == sip_method_cancel || m == sip_method_subscribe;
}

bool Calls::Owns(const sip_t* sip, bool set_side) const {
  if (sip->sip_call_id == nullptr || sip->sip_to == nullptr || sip->sip_to->a_tag == nullptr) {
    return false;
  }
  return FindDialog(set_side, sip) != nullptr;
}

// Dialogs are told apart by Call-ID and rwg's own tag on that side (RFC 3261 §12): both legs of
// a call between two phones behind rwg share the iPBX's Call-ID, with rwg at each end.
std::string Calls::DialogKey(bool set_side, absl::string_view call_id,
                             absl::string_view local_tag) {
  return absl::StrCat(set_side ? "s|" : "i|", call_id, "|", local_tag);
}

void Calls::Index(DialogPair& pair) {
  by_dialog_[DialogKey(true, pair.set.call_id, pair.set.local_tag)] = &pair;
  by_dialog_[DialogKey(false, pair.icp.call_id, pair.icp.local_tag)] = &pair;
}

void Calls::Unindex(DialogPair& pair) {
  for (bool set_side : {true, false}) {
    const Side& s = set_side ? pair.set : pair.icp;
    auto it = by_dialog_.find(DialogKey(set_side, s.call_id, s.local_tag));
    if (it != by_dialog_.end() && it->second == &pair) by_dialog_.erase(it);
  }
}

// The call or subscription whose dialog on that side an in-dialog request from the other end
// names: its Call-ID and, as its To tag, rwg's tag; the From tag is checked against the
// remote's.
Calls::DialogPair* Calls::FindDialog(bool set_side, const sip_t* sip) const {
  if (sip->sip_call_id == nullptr || sip->sip_to == nullptr || sip->sip_to->a_tag == nullptr) {
    return nullptr;
  }
  auto it = by_dialog_.find(DialogKey(set_side, sip->sip_call_id->i_id, sip->sip_to->a_tag));
  return it == by_dialog_.end() ? nullptr : it->second;
}

// Every call with a dialog of that Call-ID on that side (a CANCEL or an ACK names its INVITE's
// transaction, not a dialog: its To has no tag of rwg's).
std::vector<Calls::DialogPair*> Calls::WithCallId(bool set_side, absl::string_view call_id) const {
  std::vector<DialogPair*> out;
  const std::string prefix = absl::StrCat(set_side ? "s|" : "i|", call_id, "|");
  for (auto it = by_dialog_.lower_bound(prefix);
       it != by_dialog_.end() && absl::StartsWith(it->first, prefix); ++it) {
    out.push_back(it->second);
  }
  return out;
}

Calls::DialogPair* Calls::FindPair(const std::string& id) const {
  if (auto it = calls_.find(id); it != calls_.end()) return it->second.get();
  if (auto it = subscriptions_.find(id); it != subscriptions_.end()) return it->second.get();
  return nullptr;
}

Calls::Side& Calls::Other(DialogPair& pair, Side& side) {
  return &side == &pair.set ? pair.icp : pair.set;
}

// -- entry points --------------------------------------------------------------------------

int Calls::OnPhoneRequest(nta_incoming_t* irq, const sip_t* sip, tport_t* tport,
                          const std::string& source) {
  const sip_method_t m = sip->sip_request->rq_method;
  if (DialogPair* c = FindDialog(true, sip)) {
    // Only the phone itself speaks in its dialogs: over the call's connection, or over the
    // one it registered through since (it reconnected; rwg's requests go there from now on).
    const bool same =
        c->set.tport == tport && (c->set.route_url.empty() || c->set.route_url == UdpRoute(source));
    if (!same) {
      std::optional<CallPhone> phone =
          host_.PhoneOnConnection(tport, c->device.set_username, source);
      if (!phone) {
        if (m == sip_method_ack) return 200;
        core::log::Info("in-dialog request from elsewhere refused",
                        {{"call", c->id}, {"source", source}});
        host_.CountResponse(sip->sip_request->rq_method_name, 403);
        return 403;
      }
      if (c->set.tport != nullptr) tport_unref(c->set.tport);
      c->set.tport = tport_ref(phone->tport);
      c->set.route_url = phone->route;
    }
    return InDialog(*c, c->set, irq, sip);
  }
  if (m == sip_method_ack) return 200;  // nothing to acknowledge here; ACKs get no answer
  if ((m != sip_method_invite && m != sip_method_subscribe) ||
      (sip->sip_to && sip->sip_to->a_tag)) {
    host_.CountResponse(sip->sip_request->rq_method_name, 481);
    return 481;
  }
  const char* user =
      sip->sip_from && sip->sip_from->a_url->url_user ? sip->sip_from->a_url->url_user : "";
  std::optional<CallPhone> phone = host_.PhoneOnConnection(tport, user, source);
  const char* number = sip->sip_request->rq_url->url_user;
  if (!phone && m == sip_method_invite && number != nullptr && host_.IsEmergencyNumber(number)) {
    // Emergency calls are never refused for licence reasons: a phone without a registration
    // here (no licence left, or not registered yet) authenticates the call itself.
    int answered = 0;
    phone = host_.AuthenticateEmergencyCaller(irq, sip, tport, source, &answered);
    if (!phone) return answered;
  }
  if (!phone) {
    // Calls are taken only over the connection a phone registered through.
    nta_incoming_treply(
        irq, SIP_403_FORBIDDEN,
        SIPTAG_WARNING_STR("399 rwg \"register over this connection before calling\""), TAG_END());
    host_.CountResponse(sip->sip_request->rq_method_name, 403);
    return 403;
  }
  if (m == sip_method_subscribe) return NewSubscriptionFromPhone(irq, sip, *phone);
  return NewCallFromPhone(irq, sip, *phone);
}

int Calls::NewEmergencyCall(nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone) {
  return NewCallFromPhone(irq, sip, phone);
}

int Calls::OnIcpRequest(nta_incoming_t* irq, const sip_t* sip, bool forwarded) {
  const sip_method_t m = sip->sip_request->rq_method;
  if (DialogPair* c = FindDialog(false, sip)) return InDialog(*c, c->icp, irq, sip);
  if (m == sip_method_ack) return 200;
  if (m == sip_method_subscribe && !(sip->sip_to && sip->sip_to->a_tag)) {
    host_.CountResponse("SUBSCRIBE", 501);
    return 501;  // the iPBX subscribing to a phone's events: not relayed
  }
  if (m != sip_method_invite || (sip->sip_to && sip->sip_to->a_tag)) {
    host_.CountResponse(sip->sip_request->rq_method_name, 481);
    return 481;
  }
  return NewCallFromIcp(irq, sip, forwarded);
}

// -- new calls -----------------------------------------------------------------------------

int Calls::RefuseInvite(nta_incoming_t* irq, int status, const char* phrase,
                        const std::string& why) {
  const std::string warning = absl::StrCat("399 rwg \"", why, "\"");
  nta_incoming_treply(irq, status, phrase,
                      TAG_IF(!why.empty(), SIPTAG_WARNING_STR(warning.c_str())), TAG_END());
  host_.CountResponse("INVITE", status);
  return status;
}

int Calls::NewCallFromPhone(nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone) {
  const std::string sdp = PayloadOf(sip);
  auto reply = [&](int status, const char* phrase, const std::string& why) {
    return RefuseInvite(irq, status, phrase, why);
  };
  const char* number = sip->sip_request->rq_url->url_user;
  if (number == nullptr || *number == '\0') return reply(SIP_404_NOT_FOUND, "no number dialled");
  absl::StatusOr<AudioStream> offer =
      sdp.empty() ? AudioStream{}
                  : ReadMedia(sdp, *host_.Config(), true, phone.device.srtp_optional);
  if (!offer.ok()) {
    const int st = StatusFor(offer.status());
    return reply(st, st == 400 ? "Bad Request" : "Not Acceptable Here",
                 std::string(offer.status().message()));
  }
  auto view = host_.Config();
  if (view->icp_host.empty()) return reply(SIP_503_SERVICE_UNAVAILABLE, "no iPBX configured");
  std::optional<core::EmergencyRoute> emergency = host_.Emergency(phone.device.location, number);
  // Emergency calls go whatever the device has going on (R-EMERG).
  if (!emergency && calls_of_[phone.device.set_username] >= options_.max_calls_per_device) {
    return reply(SIP_486_BUSY_HERE, "too many calls for this device");
  }
  // Emergency numbers (R-EMERG): dialled as the table says for the device's location.
  std::string dial = number;
  if (emergency) {
    dial = emergency->dial;
    emergency_.Increment();
    core::log::Warn("emergency call", {{"device", phone.device.set_username},
                                       {"location", phone.device.location},
                                       {"number", number},
                                       {"route", emergency->location},
                                       {"dial", dial}});
  }

  auto call = std::make_unique<Call>();
  Call& c = *call;
  c.id = core::RandomHex(rng_, 8);
  c.from_phone = true;
  c.device = phone.device;
  c.number = dial;
  c.started = clock_.Now();
  PhoneSide(c.set, irq, sip, phone);
  c.delayed_offer = sdp.empty();
  if (!c.delayed_offer) c.set.media = *offer;
  c.timer_headers = TimerHeaders(sip);
  c.rel100 = HasOption(sip, "100rel");
  nta_incoming_bind(irq, &Calls::OnCancel, reinterpret_cast<nta_incoming_magic_t*>(this));
  IcpSideTo(c.icp, phone, dial, *view);
  Adopt(std::move(call));

  // With a delayed offer rwg offers to the phone too (in the 2xx); it answers in its ACK.
  AllocateAndInvite(c, c.delayed_offer ? OfferedLeg(true) : RemoteOf(*offer), OfferedLeg(false),
                    sdp);
  return 0;
}

void Calls::PhoneSide(Side& s, nta_incoming_t* irq, const sip_t* sip, const CallPhone& phone) {
  su_home_t home[1] = {SU_HOME_INIT(home)};
  s.set = true;
  s.uas = true;
  s.user = phone.device.set_username;
  s.call_id = sip->sip_call_id->i_id;
  s.remote_uri = NameAddr(home, sip->sip_from);
  s.remote_tag = sip->sip_from->a_tag ? sip->sip_from->a_tag : "";
  s.local_uri = NameAddr(home, sip->sip_to);
  s.local_tag = core::RandomHex(rng_, 6);
  s.remote_target = sip->sip_contact ? UrlText(home, sip->sip_contact->m_url) : phone.contact;
  for (const sip_record_route_t* rr = sip->sip_record_route; rr; rr = rr->r_next) {
    s.route.push_back(absl::StrCat("<", UrlText(home, rr->r_url), ">"));
  }
  s.contact = host_.SetContact(phone.tport);
  s.irq = irq;
  s.tport = tport_ref(phone.tport);
  s.route_url = phone.route;
  s.cseq = 0;
  s.reliable = RequiresOption(sip, "100rel");
  nta_incoming_tag(irq, s.local_tag.c_str());
  su_home_deinit(home);
}

void Calls::IcpSideTo(Side& s, const CallPhone& phone, const std::string& user,
                      const GatewayView& view) {
  s.user = phone.device.icp_username;
  s.call_id = absl::StrCat(core::RandomHex(rng_, 12), "@rwg");
  s.local_uri = absl::StrCat("<sip:", phone.device.icp_username, "@", view.icp_host, ">");
  s.local_tag = core::RandomHex(rng_, 6);
  s.remote_uri = absl::StrCat("<sip:", user, "@", view.icp_host, ">");
  s.remote_target = absl::StrCat("sip:", user, "@", view.icp_host, ":", view.icp_port,
                                 ";transport=", view.icp_transport);
  s.contact = absl::StrCat("<sip:", phone.device.icp_username, "@", host_.IcpContactHost(),
                           ";transport=tcp>");
}

int Calls::NewCallFromIcp(nta_incoming_t* irq, const sip_t* sip, bool forwarded) {
  const std::string sdp = PayloadOf(sip);
  auto reply = [&](int status, const char* phrase, const std::string& why) {
    return RefuseInvite(irq, status, phrase, why);
  };
  const char* icp_user = sip->sip_request->rq_url->url_user;
  if (icp_user == nullptr) return reply(SIP_404_NOT_FOUND, "");
  std::optional<CallPhone> phone = host_.PhoneForIcpUser(icp_user);
  if (!phone) {
    // Another instance may hold the phone (it moved and the iPBX has not learnt so yet).
    const int st = forwarded ? 480 : host_.ProxyInvite(irq, sip, icp_user);
    if (st == 0) return 0;
    return reply(st, sip_status_phrase(st), "");
  }
  if (calls_of_[phone->device.set_username] >= options_.max_calls_per_device) {
    return reply(SIP_486_BUSY_HERE, "too many calls for this device");
  }
  absl::StatusOr<AudioStream> offer =
      sdp.empty() ? AudioStream{} : ReadMedia(sdp, *host_.Config(), false, false);
  if (!offer.ok()) {
    const int st = StatusFor(offer.status());
    return reply(st, st == 400 ? "Bad Request" : "Not Acceptable Here",
                 std::string(offer.status().message()));
  }
  auto view = host_.Config();
  su_home_t home[1] = {SU_HOME_INIT(home)};
  auto call = std::make_unique<Call>();
  Call& c = *call;
  c.id = core::RandomHex(rng_, 8);
  c.from_phone = false;
  c.device = phone->device;
  c.number = sip->sip_from && sip->sip_from->a_url->url_user ? sip->sip_from->a_url->url_user
                                                             : "anonymous";
  c.started = clock_.Now();
  // ICP side: rwg is the iPBX's UAS.
  c.icp.uas = true;
  c.icp.user = phone->device.icp_username;
  c.icp.call_id = sip->sip_call_id->i_id;
  c.icp.remote_uri = NameAddr(home, sip->sip_from);
  c.icp.remote_tag = sip->sip_from->a_tag ? sip->sip_from->a_tag : "";
  c.icp.local_uri = NameAddr(home, sip->sip_to);
  c.icp.local_tag = core::RandomHex(rng_, 6);
  c.icp.remote_target = sip->sip_contact ? UrlText(home, sip->sip_contact->m_url) : "";
  for (const sip_record_route_t* rr = sip->sip_record_route; rr; rr = rr->r_next) {
    c.icp.route.push_back(absl::StrCat("<", UrlText(home, rr->r_url), ">"));
  }
  c.icp.contact = absl::StrCat("<sip:", phone->device.icp_username, "@", host_.IcpContactHost(),
                               ";transport=tcp>");
  c.icp.irq = irq;
  c.delayed_offer = sdp.empty();
  if (!c.delayed_offer) c.icp.media = *offer;
  c.icp.reliable = RequiresOption(sip, "100rel");
  c.timer_headers = TimerHeaders(sip);
  c.rel100 = HasOption(sip, "100rel");
  nta_incoming_tag(irq, c.icp.local_tag.c_str());
  nta_incoming_bind(irq, &Calls::OnCancel, reinterpret_cast<nta_incoming_magic_t*>(this));
  // Set side: rwg calls the phone over its connection, as the caller at the public name.
  c.set.set = true;
  c.set.user = phone->device.set_username;
  c.set.call_id = absl::StrCat(core::RandomHex(rng_, 12), "@rwg");
  const std::string display =
      sip->sip_from && sip->sip_from->a_display ? absl::StrCat(sip->sip_from->a_display, " ") : "";
  c.set.local_uri = absl::StrCat(display, "<sip:", c.number, "@", view->public_name, ">");
  c.set.local_tag = core::RandomHex(rng_, 6);
  c.set.remote_uri = absl::StrCat("<sip:", phone->device.set_username, "@", view->public_name, ">");
  c.set.remote_target = phone->contact;
  c.set.contact = host_.SetContact(phone->tport);
  c.set.tport = tport_ref(phone->tport);
  c.set.route_url = phone->route;
  su_home_deinit(home);

  Adopt(std::move(call));

  AllocateAndInvite(c, OfferedLeg(true), c.delayed_offer ? OfferedLeg(false) : RemoteOf(*offer),
                    sdp);
  return 0;
}

// Makes a new call known: its dialogs, counts, log line.
void Calls::Adopt(std::unique_ptr<Call> call) {
  Call& c = *call;
  const char* direction = c.from_phone ? "outbound" : "inbound";
  Index(c);
  ++calls_of_[c.device.set_username];
  attempts_.Add({{"direction", direction}}).Increment();
  active_.Increment();
  core::log::Info("call", {{"call", c.id},
                           {"direction", direction},
                           {"device", c.device.set_username},
                           {"number", c.number}});
  calls_[c.id] = std::move(call);
}

// A new call's relay session; then the INVITE to the side called, with the relay's address
// and key for it. The caller's INVITE gets the relay's or the SDP's failure.
void Calls::AllocateAndInvite(Call& call, const RelayRemote& set, const RelayRemote& icp,
                              const std::string& sdp) {
  const std::string id = call.id;
  call.relay_busy = true;
  relays_.Allocate(id, set, icp, [this, id, sdp](absl::StatusOr<RelaySession> s) {
    auto it = calls_.find(id);
    if (it == calls_.end()) {
      if (s.ok()) relays_.Delete(*s);
      return;
    }
    Call& c = *it->second;
    c.relay_busy = false;
    Side& caller = c.from_phone ? c.set : c.icp;
    Side& called = Other(c, caller);
    if (!s.ok()) {
      core::log::Warn(no_relay_log_, "no media relay for the call",
                      {{"call", id}, {"error", std::string(s.status().message())}});
      Answer(c, caller, 503, "Media Relay Unavailable", "");
      return Forget(c);
    }
    c.media = *s;
    if (c.state == Call::State::kEnded) return Release(c);
    int status = 0;
    std::string phrase;
    std::optional<std::string> offer =
        SdpFor(c, called, c.delayed_offer ? OwnOffer() : sdp, true, &status, &phrase);
    if (!offer) {
      Answer(c, caller, status, phrase.c_str(), "");
      return Forget(c);
    }
    SendInvite(c, called, *offer, nullptr, false);
  });
}

// The Authorization (or Proxy-Authorization) answering the iPBX's 401/407 to our `method`
// with the device's ICP-side credentials; none when the challenge cannot be answered.
std::optional<std::string> Calls::AnswerIcpChallenge(const DialogPair& pair, const Side& to,
                                                     const sip_t* sip, int status,
                                                     const char* method) {
  const msg_auth_t* ch = status == 401 ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
  const std::string challenge = HeaderText(ch);
  absl::StatusOr<std::string> auth =
      AnswerChallenge(challenge, pair.device.icp_username, pair.device.icp_password, method,
                      to.remote_target, 1, rng_);
  if (!auth.ok()) {
    core::log::Warn(challenge_log_, "cannot answer the iPBX's challenge",
                    {{"call", pair.id}, {"error", std::string(auth.status().message())}});
    return std::nullopt;
  }
  return *auth;
}

// -- SDP -------------------------------------------------------------------------------------

absl::StatusOr<AudioStream> Calls::ReadFrom(const Call& call, bool set_side,
                                            absl::string_view sdp) {
  return ReadMedia(sdp, *host_.Config(), set_side, call.device.srtp_optional);
}

RelayRemote Calls::OfferedLeg(bool set_side) {
  auto view = host_.Config();
  const std::string& outbound = set_side ? view->set_side_outbound : view->icp_side_outbound;
  RelayRemote r;
  r.suite = outbound == "RTP_ONLY"     ? "RTP"
            : view->srtp_suite.empty() ? options_.set_suite
                                       : view->srtp_suite;
  return r;
}

// The SDP `side` receives, made from what the other side sent (`other_sdp`), with the relay's
// address and key for `side`'s leg.
std::optional<std::string> Calls::SdpFor(Call& call, Side& side, const std::string& other_sdp,
                                         bool offer, int* status, std::string* phrase) {
  const RelayLocal& leg = side.set ? call.media->set : call.media->icp;
  auto view = host_.Config();
  std::optional<SdesCrypto> crypto;
  bool avp_with_crypto = false;
  if (offer) {
    // What rwg offers this side: its outbound policy (RTP/SAVP, RTP/AVP with a key, or RTP).
    const std::string& outbound = side.set ? view->set_side_outbound : view->icp_side_outbound;
    if (outbound != "RTP_ONLY") crypto = SdesCrypto{1, leg.suite, leg.key};
    avp_with_crypto = outbound == "AVP_CRYPTO";
  } else if (side.media && !side.media->crypto.empty()) {
    // An answer in the offer's terms: its profile, and a key when it brought one.
    crypto = SdesCrypto{side.media->crypto[0].tag, leg.suite, leg.key};
    avp_with_crypto = !side.media->secure;
  }
  if (crypto && crypto->key.size() != 30) crypto.reset();  // a plain RTP leg
  // The network profile's override (e.g. the public address in front of the relay).
  const std::string& address = side.set ? view->rtp_set_side_address : view->rtp_icp_side_address;
  absl::StatusOr<std::string> out = RewriteAudio(other_sdp, address.empty() ? leg.address : address,
                                                 leg.port, crypto, avp_with_crypto);
  if (!out.ok()) {
    *status = StatusFor(out.status());
    *phrase = *status == 400 ? "Bad Request" : "Not Acceptable Here";
    core::log::Info("SDP refused",
                    {{"call", call.id}, {"error", std::string(out.status().message())}});
    return std::nullopt;
  }
  return *out;
}

// -- sending --------------------------------------------------------------------------------

// A request of `to`'s dialog (or the first one, without the remote tag): request line, From,
// To, Call-ID, CSeq, Max-Forwards, User-Agent, our Contact when asked, the route set.
msg_t* Calls::DialogRequest(const Side& to, const std::string& method, uint32_t cseq,
                            bool with_contact, bool first) {
  const std::string request = absl::StrCat(method, " ", to.remote_target, " SIP/2.0");
  const std::string from = absl::StrCat(to.local_uri, ";tag=", to.local_tag);
  const std::string dest = first || to.remote_tag.empty()
                               ? to.remote_uri
                               : absl::StrCat(to.remote_uri, ";tag=", to.remote_tag);
  const std::string cseq_text = absl::StrCat(cseq, " ", method);
  msg_t* msg = nta_msg_create(to.set ? set_agent_ : icp_agent_, 0);
  sip_t* out = sip_object(msg);
  sip_add_tl(msg, out, SIPTAG_REQUEST_STR(request.c_str()), SIPTAG_FROM_STR(from.c_str()),
             SIPTAG_TO_STR(dest.c_str()), SIPTAG_CALL_ID_STR(to.call_id.c_str()),
             SIPTAG_CSEQ_STR(cseq_text.c_str()), SIPTAG_MAX_FORWARDS_STR("70"),
             TAG_IF(with_contact, SIPTAG_CONTACT_STR(to.contact.c_str())),
             SIPTAG_USER_AGENT_STR("rwg"), TAG_END());
  for (const std::string& r : to.route) {
    sip_add_tl(msg, out, SIPTAG_ROUTE_STR(r.c_str()), TAG_END());
  }
  return msg;
}

// Sends `msg` on `to`'s side: to the first Route's address (loose routing), else the phone's
// NAT source (UDP), else the Request-URI; toward the phone over its own connection.
// A phone whose connection dropped connects again and registers over the new one: rwg's
// requests in its dialogs go there from then on (its own requests re-tie the call the same way,
// OnPhoneRequest). A phone registered through another instance meanwhile is not followed.
void Calls::FollowPhone(Side& to) {
  if (!to.set || to.user.empty()) return;
  std::optional<std::pair<tport_t*, std::string>> now = host_.PhoneConnection(to.user);
  if (!now || (now->first == to.tport && now->second == to.route_url)) return;
  if (to.tport != nullptr) tport_unref(to.tport);
  to.tport = tport_ref(now->first);
  to.route_url = now->second;
  core::log::Info("dialog follows the phone to its new connection",
                  {{"device", to.user}, {"call_id", to.call_id}});
}

nta_outgoing_t* Calls::Launch(Side& to, msg_t* msg, nta_response_f* callback,
                              nta_outgoing_magic_t* magic) {
  FollowPhone(to);
  std::string next_hop;
  if (!to.route.empty()) {
    next_hop = std::string(absl::StripSuffix(absl::StripPrefix(to.route[0], "<"), ">"));
  } else if (to.set) {
    next_hop = to.route_url;
  }
  return nta_outgoing_mcreate(to.set ? set_agent_ : icp_agent_, callback, magic,
                              next_hop.empty() ? nullptr : URL_STRING_MAKE(next_hop.c_str()), msg,
                              TAG_IF(to.set && to.tport, NTATAG_TPORT(to.tport)), TAG_END());
}

// ACK and BYE: nothing waits for their answer.
void Calls::SendRequest(const Call& call, Side& to, const char* method, uint32_t cseq) {
  msg_t* msg = DialogRequest(to, method, cseq, false, false);
  if (std::string_view(method) == "BYE" && !call.bye_reason.empty()) {
    sip_add_tl(msg, sip_object(msg), SIPTAG_REASON_STR(call.bye_reason.c_str()), TAG_END());
  }
  nta_outgoing_t* orq = Launch(to, msg, nullptr, nullptr);
  if (orq != nullptr) nta_outgoing_destroy(orq);  // sofia-sip completes the transaction itself
}

void Calls::SendInvite(Call& call, Side& to, const std::string& sdp, const char* authorization,
                       bool proxy_auth) {
  to.invite_cseq = ++to.cseq;
  to.offer = sdp;
  msg_t* msg = DialogRequest(to, "INVITE", to.invite_cseq, true, true);
  sip_add_tl(msg, sip_object(msg), SIPTAG_ALLOW_STR(kAllow),
             TAG_IF(authorization && !proxy_auth, SIPTAG_AUTHORIZATION_STR(authorization)),
             TAG_IF(authorization && proxy_auth, SIPTAG_PROXY_AUTHORIZATION_STR(authorization)),
             TAG_IF(!sdp.empty(), SIPTAG_CONTENT_TYPE_STR("application/sdp")),
             TAG_IF(!sdp.empty(), SIPTAG_PAYLOAD_STR(sdp.c_str())),
             TAG_IF(!call.timer_headers.empty(), SIPTAG_HEADER_STR(call.timer_headers.c_str())),
             TAG_IF(call.rel100, SIPTAG_SUPPORTED_STR("100rel")), TAG_END());
  if (!LaunchFirst(call, to, msg)) {
    Answer(call, Other(call, to), 503, "Service Unavailable", "");
    Forget(call);
    return;
  }
  Save(call);
}

bool Calls::LaunchFirst(DialogPair& pair, Side& to, msg_t* msg) {
  // An INVITE of this side still in flight would keep its own context (freed with its answer).
  Pending* p = invites_.Add(this, pair.id, to.set);
  to.pending = p;
  to.orq = Launch(to, msg, &Calls::OnOutgoing, reinterpret_cast<nta_outgoing_magic_t*>(p));
  if (to.orq != nullptr) return true;
  invites_.Remove(p);
  to.pending = nullptr;
  return false;
}

void Calls::Answer(Call& call, Side& side, int status, const char* phrase, const std::string& sdp,
                   const std::string& headers) {
  if (side.irq == nullptr) {
    if (status >= 200) {
      core::log::Warn("final answer not sent: no transaction left to answer",
                      {{"call", call.id}, {"status", std::to_string(status)}});
    }
    return;
  }
  if (nta_incoming_status(side.irq) >= 200) {
    // sofia-sip answered it already (487 to a CANCEL, 500 on a timeout): nothing more to say.
    core::log::Info("final answer not sent: answered already",
                    {{"call", call.id},
                     {"status", std::to_string(status)},
                     {"answered", std::to_string(nta_incoming_status(side.irq))}});
    nta_incoming_destroy(side.irq);
    side.irq = nullptr;
    return;
  }
  const bool with_contact = status < 300 && status > 100;
  const tagi_t tags[] = {
      {TAG_IF(with_contact, SIPTAG_CONTACT_STR(side.contact.c_str()))},
      {TAG_IF(!headers.empty(), SIPTAG_HEADER_STR(headers.c_str()))},
      {TAG_IF(!sdp.empty(), SIPTAG_CONTENT_TYPE_STR("application/sdp"))},
      {TAG_IF(!sdp.empty(), SIPTAG_PAYLOAD_STR(sdp.c_str()))},
      {TAG_IF((status >= 200 && status < 300) || side.reliable, SIPTAG_ALLOW_STR(kAllow))},
      {TAG_END()}};
  // A side that required 100rel gets its provisional answers reliably (RSeq; sofia-sip
  // retransmits them until the PRACK and holds a 2xx back until an SDP-carrying one is
  // acknowledged).
  if (status > 100 && status < 200 && side.reliable &&
      nta_reliable_treply(side.irq, &Calls::OnPrack, reinterpret_cast<nta_reliable_magic_t*>(this),
                          status, phrase, TAG_NEXT(tags)) != nullptr) {
    return;
  }
  nta_incoming_treply(side.irq, status, phrase, TAG_NEXT(tags));
  if (status >= 200) {
    host_.CountResponse("INVITE", status);
    outcomes_
        .Add({{"direction", call.from_phone ? "outbound" : "inbound"},
              {"code", std::to_string(status)}})
        .Increment();
    if (call.delayed_offer && status < 300) {
      side.ack_irq = side.irq;  // its ACK carries the answer to rwg's offer
    } else {
      nta_incoming_destroy(side.irq);
    }
    side.irq = nullptr;
  }
}

// -- responses to our INVITEs -----------------------------------------------------------------

int Calls::OnOutgoing(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip) {
  return Guard("OnOutgoing", 0, [&]() -> int {
    auto* p = reinterpret_cast<Pending*>(magic);
    Calls* self = p->calls;
    const int status = sip ? sip->sip_status->st_status : nta_outgoing_status(orq);
    DialogPair* found = self->FindPair(p->call);
    Side* side = found == nullptr ? nullptr : p->to_set ? &found->set : &found->icp;
    if (status >= 200) {
      // A final answer ends the INVITE: its context goes here, the one place that frees it
      // while the call lives (DropInvites frees those of a call that goes first).
      if (side != nullptr && side->pending == p) side->pending = nullptr;
      self->invites_.Remove(p);
    }
    if (found == nullptr) {
      if (status >= 200) nta_outgoing_destroy(orq);
      return 0;
    }
    Side& to = *side;
    if (to.orq != orq) {
      // A BYE or another request of ours: nothing to do beyond finishing the transaction.
      if (status >= 200) nta_outgoing_destroy(orq);
      return 0;
    }
    if (Subscription* sub = found->AsSubscription()) {
      self->LearnDialog(to, sip, status);
      const std::string phrase =
          sip && sip->sip_status->st_phrase ? sip->sip_status->st_phrase : "Service Unavailable";
      self->OnSubscribeResponse(*sub, to, orq, sip, status, phrase);
      return 0;
    }
    self->OnInviteResponse(*found->AsCall(), to, orq, sip);
    return 0;
  });
}

void Calls::OnInviteResponse(Call& call, Side& to, nta_outgoing_t* orq, const sip_t* sip) {
  const int status = sip ? sip->sip_status->st_status : nta_outgoing_status(orq);
  core::log::Debug(
      "INVITE answered",
      {{"call", call.id}, {"side", to.set ? "set" : "icp"}, {"status", std::to_string(status)}});
  const std::string phrase =
      sip && sip->sip_status->st_phrase ? sip->sip_status->st_phrase : "Service Unavailable";
  LearnDialog(to, sip, status);
  // What is needed of the response is read before its transaction (which owns it) goes.
  const std::string sdp = PayloadOf(sip);
  if (status < 200) return OnProvisional(call, to, sip, status, phrase, sdp);
  if ((status == 401 || status == 407) && sip != nullptr && !to.set && to.auth_attempts < 2 &&
      call.state != Call::State::kEnded) {
    return OnIcpChallenge(call, to, orq, sip, status);
  }
  const std::string timers = TimerHeaders(sip);
  nta_outgoing_destroy(orq);
  to.orq = nullptr;
  if (status >= 300) return OnInviteRefused(call, to, status, phrase, timers);
  OnInviteAccepted(call, to, sdp, timers);
}

void Calls::LearnDialog(Side& to, const sip_t* sip, int status) {
  if (sip == nullptr || status <= 100 || status >= 300) return;
  su_home_t home[1] = {SU_HOME_INIT(home)};
  // Only answers that create the dialog give its tag (a 407's To tag is not the dialog's).
  if (sip->sip_to && sip->sip_to->a_tag) to.remote_tag = sip->sip_to->a_tag;
  if (sip->sip_contact) to.remote_target = UrlText(home, sip->sip_contact->m_url);
  to.route.clear();
  for (const sip_record_route_t* rr = sip->sip_record_route; rr; rr = rr->r_next) {
    to.route.insert(to.route.begin(), absl::StrCat("<", UrlText(home, rr->r_url), ">"));
  }
  su_home_deinit(home);
}

void Calls::OnProvisional(Call& call, Side& to, const sip_t* sip, int status,
                          const std::string& phrase, const std::string& sdp) {
  Side& from = Other(call, to);
  if (status == 100 || call.state == Call::State::kEnded) return;
  if (sip != nullptr && !Prack(to, sip)) return;
  call.state = Call::State::kEarly;
  if (sdp.empty()) return Answer(call, from, status, phrase.c_str(), "");
  // Early media: the answer comes with the provisional response.
  absl::StatusOr<AudioStream> answer = ReadFrom(call, to.set, sdp);
  if (!answer.ok()) return Answer(call, from, status, phrase.c_str(), "");
  to.media = *answer;
  const std::string id = call.id;
  RelayRemote remote = RemoteOf(*answer);
  call.relay_busy = true;
  relays_.Update(*call.media, to.set ? &remote : nullptr, to.set ? nullptr : &remote, false, false,
                 [this, id, status, phrase, sdp](const absl::StatusOr<RelaySession>& s) {
                   OnEarlyMediaRelayed(id, status, phrase, sdp, s.ok());
                 });
}

Calls::Call* Calls::CalleeRelayed(const std::string& id, Side** to, Side** from) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return nullptr;
  Call& c = *it->second;
  c.relay_busy = false;
  if (c.state == Call::State::kEnded) {
    Release(c);
    return nullptr;
  }
  *to = c.from_phone ? &c.icp : &c.set;
  *from = &Other(c, **to);
  return &c;
}

void Calls::OnEarlyMediaRelayed(const std::string& id, int status, const std::string& phrase,
                                const std::string& sdp, bool relayed) {
  if (!relayed) return;  // the caller goes on without early media
  Side* to = nullptr;
  Side* from = nullptr;
  Call* call = CalleeRelayed(id, &to, &from);
  if (call == nullptr) return;
  Call& c = *call;
  int st = 0;
  std::string ph;
  // With a delayed offer the caller gets rwg's offer in the 2xx, not here.
  if (c.delayed_offer) return Answer(c, *from, status, phrase.c_str(), "");
  std::optional<std::string> out = SdpFor(c, *from, sdp, false, &st, &ph);
  if (out) Answer(c, *from, status, phrase.c_str(), *out);
}

// The iPBX's challenge is answered with the device's ICP-side credentials.
void Calls::OnIcpChallenge(Call& call, Side& to, nta_outgoing_t* orq, const sip_t* sip,
                           int status) {
  ++to.auth_attempts;
  std::optional<std::string> auth = AnswerIcpChallenge(call, to, sip, status, "INVITE");
  nta_outgoing_destroy(orq);
  to.orq = nullptr;
  if (auth) return SendInvite(call, to, to.offer, auth->c_str(), status == 407);
  Answer(call, Other(call, to), 403, "Forbidden", "");
  call.end_reason = "iPBX challenge";
  Forget(call);
}

void Calls::OnInviteRefused(Call& call, Side& to, int status, const std::string& phrase,
                            const std::string& timers) {
  int st = status;
  if (!to.set && (status == 401 || status == 407)) st = 403;  // our credentials failed
  if (call.state != Call::State::kEnded) {
    Answer(call, Other(call, to), st, phrase.c_str(), "", timers);  // a 422's Min-SE
  }
  core::log::Info("call not answered", {{"call", call.id}, {"status", std::to_string(status)}});
  if (call.end_reason.empty()) call.end_reason = absl::StrCat(status, " ", phrase);
  Forget(call);
}

// 2xx: acknowledged at once (this side's dialog is confirmed), then answered on the other
// once the relay knows this side's media.
void Calls::OnInviteAccepted(Call& call, Side& to, const std::string& sdp,
                             const std::string& timers) {
  Side& from = Other(call, to);
  SendRequest(call, to, "ACK", to.invite_cseq);
  if (call.state == Call::State::kEnded) {
    SendRequest(call, to, "BYE", ++to.cseq);
    return Forget(call);
  }
  absl::StatusOr<AudioStream> answer =
      sdp.empty() ? absl::InvalidArgumentError("sdp: no answer in the 200 OK")
                  : ReadFrom(call, to.set, sdp);
  if (!answer.ok()) {
    core::log::Info("answer refused",
                    {{"call", call.id}, {"error", std::string(answer.status().message())}});
    SendRequest(call, to, "BYE", ++to.cseq);
    Answer(call, from, 488, "Not Acceptable Here", "");
    call.end_reason = "unusable answer";
    return Forget(call);
  }
  to.media = *answer;
  call.state = Call::State::kConfirmed;
  call.answered = clock_.Now();
  Save(call);
  setup_time_.Observe(absl::ToDoubleSeconds(call.answered - call.started));
  const std::string id = call.id;
  RelayRemote remote = RemoteOf(*answer);
  call.relay_busy = true;
  relays_.Update(*call.media, to.set ? &remote : nullptr, to.set ? nullptr : &remote, false, false,
                 [this, id, sdp, timers](const absl::StatusOr<RelaySession>& s) {
                   OnAnswerRelayed(id, sdp, timers, s.ok());
                 });
}

void Calls::OnAnswerRelayed(const std::string& id, const std::string& sdp,
                            const std::string& timers, bool relayed) {
  Side* callee = nullptr;
  Side* caller = nullptr;
  Call* call = CalleeRelayed(id, &callee, &caller);
  if (call == nullptr) return;
  Call& c = *call;
  Side& to = *callee;
  Side& from = *caller;
  int st = 500;
  std::string ph = "Media Relay Unavailable";
  std::optional<std::string> out;
  if (relayed) out = SdpFor(c, from, sdp, c.delayed_offer, &st, &ph);
  if (!out) {
    SendRequest(c, to, "BYE", ++to.cseq);
    Answer(c, from, st, ph.c_str(), "");
    c.end_reason = "media";
    return Forget(c);
  }
  Answer(c, from, 200, "OK", *out, timers);
  core::log::Info("call answered", {{"call", c.id}});
}

void Calls::Sweep() {
  const absl::Time now = clock_.Now();
  std::vector<std::string> gone;
  std::vector<std::string> ended;
  for (const auto& [id, sub] : subscriptions_) {
    // A subscription the phone stopped refreshing (its final NOTIFY had time to pass).
    if (sub->expires_at + absl::Seconds(32) < now) gone.push_back(id);
  }
  for (const auto& [id, c] : calls_) {
    // An ended call whose cancelled INVITE or relay request never finished.
    if (c->state == Call::State::kEnded && c->ended_at + kEndedGrace < now) ended.push_back(id);
  }
  for (const std::string& id : ended) {
    auto it = calls_.find(id);
    if (it == calls_.end()) continue;
    core::log::Warn("ended call released without its last answers", {{"call", id}});
    Forget(*it->second);
  }
  for (const std::string& id : gone) {
    auto it = subscriptions_.find(id);
    if (it == subscriptions_.end()) continue;
    if (it->second->icp.orq != nullptr) continue;
    EndSubscription(*it->second);
  }
}

void Calls::Hangup(Call& call, Side* except, const char* why) {
  const bool was_ended = call.state == Call::State::kEnded;
  call.state = Call::State::kEnded;
  if (call.end_reason.empty()) call.end_reason = why;
  for (Side* s : {&call.set, &call.icp}) {
    if (s == except) continue;
    if (s->orq != nullptr) {
      // sofia-sip sends the CANCEL and acknowledges the 487 itself. The INVITE stays until
      // its final answer: a 2xx crossing the CANCEL is acknowledged and ended with a BYE.
      if (!was_ended) nta_outgoing_cancel(s->orq);
    } else if (s->irq != nullptr) {
      Answer(call, *s, s->set ? 480 : 487,
             s->set ? "Temporarily Unavailable" : "Request Terminated", "");
    } else if (!was_ended && !s->remote_tag.empty()) {
      SendRequest(call, *s, "BYE", ++s->cseq);
    }
  }
  if (!was_ended) call.ended_at = clock_.Now();
  Release(call);
}

// An ended call goes once nothing of it is in flight: its INVITEs' final answers and relay
// requests (each of those releases it when it finishes).
void Calls::Release(Call& call) {
  if (call.set.orq != nullptr || call.icp.orq != nullptr || call.relay_busy) return;
  Forget(call);
}

void Calls::Uncount(std::map<std::string, int>& counts, const std::string& device) {
  auto it = counts.find(device);
  if (it != counts.end() && --it->second <= 0) counts.erase(it);
}

// Lets go of rwg's INVITEs still waiting for an answer.
void Calls::DropInvites(DialogPair& pair) {
  for (Side* s : {&pair.set, &pair.icp}) {
    if (s->orq != nullptr) nta_outgoing_destroy(s->orq);
    s->orq = nullptr;
    invites_.Remove(s->pending);
    s->pending = nullptr;
  }
}

void Calls::Forget(Call& call) {
  if (call.recorded) host_.DropCall(call.id);
  Unindex(call);
  DropInvites(call);
  Uncount(calls_of_, call.device.set_username);
  if (call.media) relays_.Delete(*call.media);
  if (call.set.tport) tport_unref(call.set.tport);
  call.set.tport = nullptr;
  if (call.set.irq) {
    nta_incoming_treply(call.set.irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
    nta_incoming_destroy(call.set.irq);
  }
  if (call.icp.irq) {
    nta_incoming_treply(call.icp.irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
    nta_incoming_destroy(call.icp.irq);
  }
  for (Side* s : {&call.set, &call.icp}) {
    if (s->ack_irq) nta_incoming_destroy(s->ack_irq);
    s->ack_irq = nullptr;
  }
  const absl::Time now = clock_.Now();
  core::log::Info("call ended", {{"call", call.id},
                                 {"reason", call.end_reason.empty() ? "ended" : call.end_reason},
                                 {"talk_seconds",
                                  call.answered == absl::Time()
                                      ? "0"
                                      : absl::StrCat(absl::ToInt64Seconds(now - call.answered))}});
  active_.Decrement();
  calls_.erase(call.id);
}

void Calls::OnMediaIdle(const std::string& session) {
  for (auto& [id, c] : calls_) {
    if (!c->media || c->media->id != session || c->state == Call::State::kEnded) continue;
    media_timeouts_.Increment();
    core::log::Warn("media timeout", {{"call", id}, {"device", c->device.set_username}});
    c->end_reason = "media timeout";
    c->bye_reason = "SIP;cause=408;text=\"media timeout\"";
    Hangup(*c, nullptr, "media timeout");
    return;
  }
}

bool Calls::HangupById(const std::string& id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return false;
  Call& c = *it->second;
  core::log::Info("call hung up by the administrator", {{"call", id}});
  c.end_reason = "ended by the administrator";
  c.bye_reason = "Q.850;cause=16;text=\"ended by the administrator\"";
  Hangup(c, nullptr, "ended by the administrator");
  return true;
}

void Calls::HangupAll(const char* reason) {
  std::vector<std::string> ids;
  ids.reserve(calls_.size());
  for (const auto& [id, c] : calls_) ids.push_back(id);
  for (const std::string& id : ids) {
    auto it = calls_.find(id);
    if (it == calls_.end()) continue;
    Call& c = *it->second;
    Hangup(c, nullptr, reason);
    it = calls_.find(id);
    if (it != calls_.end()) Forget(*it->second);
  }
  while (!subscriptions_.empty()) EndSubscription(*subscriptions_.begin()->second);
}

}  // namespace rwg::sip_edge
