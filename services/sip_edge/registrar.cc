#include "services/sip_edge/registrar.h"

#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/url.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/core/log.h"
#include "services/sip_edge/calls.h"

namespace rwg::sip_edge {
namespace {

std::string UrlText(const url_t* u) {
  if (u == nullptr) return "";
  su_home_t home[1] = {SU_HOME_INIT(home)};
  char* s = url_as_string(home, u);
  std::string out = s ? s : "";
  su_home_deinit(home);
  return out;
}

// What a write that nothing waits for came to.
void Logged(const char* what, const std::string& user, const absl::Status& s) {
  if (!s.ok()) {
    core::log::Warn(what, {{"device", user}, {"error", std::string(s.message())}});
  }
}

}  // namespace

Registrar::Registrar(RegistrarOptions options, RegistrarHost& host, UpstreamRegistrar& upstream,
                     AsyncRedis& redis, core::DeviceDirectory& devices,
                     GatewayConfigWatcher& config, core::Clock& clock, std::string icp_contact_host,
                     prometheus::Counter& licence_refusals,
                     prometheus::Family<prometheus::Counter>& refreshes)
    : options_(std::move(options)),
      host_(host),
      upstream_(upstream),
      redis_(redis),
      devices_(devices),
      config_(config),
      clock_(clock),
      icp_contact_host_(std::move(icp_contact_host)),
      licence_refusals_(licence_refusals),
      refreshes_(refreshes) {}

Registrar::~Registrar() { ReleaseConnections(); }

void Registrar::ReleaseConnections() {
  for (auto& [user, b] : local_) tport_unref(b.tport);
  local_.clear();
  local_by_icp_.clear();
}

const LocalBinding* Registrar::Find(const std::string& set_username) const {
  auto it = local_.find(set_username);
  return it == local_.end() ? nullptr : &it->second;
}

std::optional<std::string> Registrar::SetUsernameOf(const std::string& icp_username) const {
  auto it = local_by_icp_.find(icp_username);
  if (it == local_by_icp_.end()) return std::nullopt;
  return it->second;
}

int Registrar::Reply(nta_incoming_t* irq, int status, const char* phrase, tag_type_t tag,
                     tag_value_t value, ...) {
  ta_list ta;
  ta_start(ta, tag, value);
  nta_incoming_treply(irq, status, phrase, ta_tags(ta));
  ta_end(ta);
  host_.CountResponse("REGISTER", status);
  return status;
}

int Registrar::OnRegister(nta_incoming_t* irq, const sip_t* sip, const std::string& user,
                          const core::DeviceSecrets& device, const std::string& ip,
                          const std::string& source) {
  auto view = config_.Get();
  // The credentials may only register their own address of record.
  const url_t* to = sip->sip_to ? sip->sip_to->a_url : nullptr;
  if (to == nullptr || to->url_user == nullptr || user != to->url_user) {
    return host_.Forbidden(irq, ip, user, source, "To user differs from the authenticated user");
  }

  // Contacts and expiry.
  bool wildcard = false;
  std::vector<std::string> contacts;
  int expires = -1;
  const int header_expires = sip->sip_expires ? static_cast<int>(sip->sip_expires->ex_delta) : -1;
  for (const sip_contact_t* m = sip->sip_contact; m != nullptr; m = m->m_next) {
    if (m->m_url->url_type == url_any) {
      wildcard = true;
      continue;
    }
    contacts.push_back(UrlText(m->m_url));
    int e = header_expires;
    if (m->m_expires) {
      unsigned long v = 0;
      if (absl::SimpleAtoi(m->m_expires, &v)) {
        e = static_cast<int>(std::min<unsigned long>(v, 1u << 30));
      }
    }
    if (e < 0) e = options_.default_expires;
    expires = expires < 0 ? e : std::min(expires, e);
  }
  if (wildcard) {
    if (header_expires != 0 || !contacts.empty()) {
      return Reply(irq, 400, "Wildcard Contact needs Expires: 0", TAG_END());
    }
    expires = 0;
  }
  if (contacts.empty() && !wildcard) {
    // A query: answer with what is registered.
    return ReplyBindings(irq, device);
  }
  if (expires > 0 && expires < options_.min_expires) {
    std::string min = std::to_string(options_.min_expires);
    return Reply(irq, SIP_423_INTERVAL_TOO_BRIEF, SIPTAG_MIN_EXPIRES_STR(min.c_str()), TAG_END());
  }
  expires = std::min(expires, options_.max_expires);

  auto* p = in_flight_.Add();
  p->irq = irq;
  p->tport = nta_incoming_transport(nullptr, irq, nullptr);
  p->device = device;
  p->contacts = contacts;
  p->expires = expires;
  p->upstream_expires = UpstreamExpires(expires);
  p->started = clock_.Now();
  p->source = source;
  const tp_name_t* tpn = p->tport ? tport_name(p->tport) : nullptr;
  p->transport = tpn && tpn->tpn_proto ? tpn->tpn_proto : "";
  if (p->tport != nullptr && !tport_is_reliable(p->tport)) {
    // Over UDP requests for the phone go to where its REGISTER came from (behind NAT its
    // Contact is a private address), from the listener it used.
    p->route = UdpRoute(source);
  }
  // A refresh of a binding this instance holds: its licence is counted until the binding's
  // expiry already, and the binding is known here, so Redis is only written at the end.
  if (auto held = local_.find(user);
      expires > 0 && held != local_.end() && held->second.expires_at > p->started) {
    core::BindingStore::Reserved res;
    res.reservation = core::BindingStore::Reservation::kExisting;
    core::Binding prev;
    prev.instance = options_.instance;
    prev.since = held->second.since;
    prev.expires_at = held->second.expires_at;
    res.previous = std::move(prev);
    OnReserved(p, view->licences, std::move(res));
    return 0;
  }
  // Redis answers later; the SIP thread goes on with other messages meanwhile.
  if (expires > 0) {
    const uint32_t licences = view->licences;
    core::BindingStore::ScriptCall call = core::BindingStore::ReserveCall(
        user, licences, p->started,
        p->started + absl::Milliseconds(options_.upstream_timeout_ms + 5000));
    redis_.Eval(*call.script, call.keys, call.args,
                [this, p, licences](absl::StatusOr<core::RedisReply> r) {
                  absl::StatusOr<core::BindingStore::Reserved> res =
                      r.ok() ? core::BindingStore::ParseReserved(*r)
                             : absl::StatusOr<core::BindingStore::Reserved>(r.status());
                  OnReserved(p, licences, std::move(res));
                });
  } else {
    redis_.Command({"GET", core::BindingStore::Key(user)},
                   [this, p](absl::StatusOr<core::RedisReply> r) {
                     core::BindingStore::Reserved res;
                     res.reservation = core::BindingStore::Reservation::kExisting;
                     if (r.ok() && !r->is_nil()) {
                       absl::StatusOr<core::Binding> b = core::BindingFromJson(r->str);
                       if (b.ok()) res.previous = *std::move(b);
                     }
                     OnReserved(p, 0, std::move(res));
                   });
  }
  return 0;  // answered when Redis and the iPBX have answered
}

// A REGISTER refused; 503 tells the phone when to try again.
void Registrar::ReplyFailure(nta_incoming_t* irq, int status, const char* phrase) {
  if (status == 503) {
    Reply(irq, 503, phrase, SIPTAG_RETRY_AFTER_STR("30"), TAG_END());
  } else {
    Reply(irq, status, phrase, TAG_END());
  }
}

// The phone's REGISTER has its answer: the pending state goes.
void Registrar::Done(PendingRegister* p) {
  nta_incoming_destroy(p->irq);
  if (p->tport) tport_unref(p->tport);
  in_flight_.Remove(p);
}

// Ends a phone's REGISTER that has not gone upstream yet.
void Registrar::Abandon(PendingRegister* p, int status, const char* phrase) {
  ReplyFailure(p->irq, status, phrase);
  Done(p);
}

// The licence is reserved (or refused), the previous binding known: on to the iPBX.
void Registrar::OnReserved(PendingRegister* p, uint32_t licences,
                           absl::StatusOr<core::BindingStore::Reserved> r) {
  const std::string& user = p->device.set_username;
  if (!r.ok()) {
    core::log::Warn(licence_log_, "licence check failed",
                    {{"error", std::string(r.status().message())}});
    return Abandon(p, 503, "Service Unavailable");
  }
  if (r->reservation == core::BindingStore::Reservation::kRefused) {
    licence_refusals_.Increment();
    core::log::Warn("licence limit reached",
                    {{"device", user}, {"licences", std::to_string(licences)}});
    return Abandon(p, 403, "Licence limit reached");
  }
  p->new_reservation = r->reservation == core::BindingStore::Reservation::kNew;
  const std::optional<core::Binding>& previous = r->previous;
  // Registered through another instance before (it died, or the phone moved): remove that
  // instance's contact at the iPBX so that nothing stale remains there.
  p->previous_since =
      previous.has_value() && previous->expires_at > p->started ? previous->since : p->started;
  if (previous.has_value() && previous->instance != options_.instance) {
    const std::string addr = host_.InstanceIcpAddress(previous->instance);
    if (!addr.empty() && addr != icp_contact_host_) {
      p->stale_contact =
          absl::StrCat("<sip:", p->device.icp_username, "@", addr, ";transport=tcp>;expires=0");
      core::log::Info("removing the iPBX contact of another instance",
                      {{"device", user}, {"instance", previous->instance}});
    }
  }
  upstream_.Register(UpstreamRegistration{p->device, p->upstream_expires, p->stale_contact, true},
                     [this, p](const UpstreamResult& r) {
                       p->upstream_expires = r.granted;
                       FinishRegister(p, r.status, r.phrase);
                     });
}

int Registrar::UpstreamExpires(int phone_expires) const {
  if (options_.upstream_expires <= 0 || phone_expires == 0) return phone_expires;
  return std::min(phone_expires, options_.upstream_expires);
}

// rwg's own REGISTER to the iPBX for a phone whose binding is held here: a refresh before
// the iPBX's registration runs out, or (expires 0) its removal when the phone's ended.
// The device is read without blocking the SIP thread (at once when cached).
void Registrar::RegisterUpstreamInBackground(const std::string& user, int expires) {
  devices_.BySetUsername(
      user, redis_,
      [this, user, expires](const absl::StatusOr<std::optional<core::DeviceSecrets>>& dev) {
        if (!dev.ok() || !dev->has_value()) {
          core::log::Warn("cannot refresh the iPBX registration: device unavailable",
                          {{"device", user}});
          // A refresh is tried again shortly (the binding may be gone meanwhile).
          if (auto it = local_.find(user); expires > 0 && it != local_.end()) {
            it->second.refreshing = false;
            it->second.upstream_refresh_at = clock_.Now() + absl::Seconds(5);
          }
          return;
        }
        upstream_.Register(UpstreamRegistration{**dev, expires, "", false},
                           [this, user, expires](const UpstreamResult& r) {
                             FinishBackgroundRegister(user, expires, r);
                           });
      });
}

void Registrar::UpdateDevice(const std::string& user,
                             const std::optional<core::DeviceSecrets>& device) {
  auto it = local_.find(user);
  if (it == local_.end()) return;
  it->second.device_removed = !device.has_value();
  if (device) it->second.device = *device;
}

// Called by the sweep: refreshes the iPBX registrations that are about to run out.
void Registrar::RefreshUpstream(absl::Time now) {
  for (auto& [user, b] : local_) {
    if (b.refreshing || b.upstream_refresh_at > now || b.upstream_expires_at >= b.expires_at) {
      continue;
    }
    b.refreshing = true;
    const int left = static_cast<int>(absl::ToInt64Seconds(b.expires_at - now));
    RegisterUpstreamInBackground(user, UpstreamExpires(std::max(left, 1)));
  }
}

int Registrar::ReplyBindings(nta_incoming_t* irq, const core::DeviceSecrets& dev) {
  auto it = local_.find(dev.set_username);
  if (it == local_.end()) return Reply(irq, SIP_200_OK, TAG_END());
  std::string contact = ContactList(it->second.contacts, it->second.expires_at);
  return Reply(irq, SIP_200_OK, SIPTAG_CONTACT_STR(contact.c_str()), TAG_END());
}

std::string Registrar::ContactList(const std::vector<std::string>& contacts,
                                   absl::Time expires_at) {
  int64_t left = std::max<int64_t>(0, absl::ToInt64Seconds(expires_at - clock_.Now()));
  std::vector<std::string> parts;
  parts.reserve(contacts.size());
  for (const std::string& c : contacts) parts.push_back(absl::StrCat("<", c, ">;expires=", left));
  return absl::StrJoin(parts, ", ");
}

// The end of rwg's own refresh or removal of an iPBX registration.
void Registrar::FinishBackgroundRegister(const std::string& user, int expires,
                                         const UpstreamResult& r) {
  auto it = local_.find(user);
  if (expires > 0 && it != local_.end()) {
    LocalBinding& b = it->second;
    b.refreshing = false;
    const absl::Time now = clock_.Now();
    if (r.status == 200) {
      b.upstream_expires_at = now + absl::Seconds(r.granted);
      b.upstream_refresh_at = now + UpstreamRefreshDelay(r.granted);
      refreshes_.Add({{"result", "ok"}}).Increment();
      core::log::Debug("iPBX registration refreshed",
                       {{"device", user}, {"expires", std::to_string(r.granted)}});
    } else {
      // Try again shortly; the iPBX's registration lasts until it runs out.
      b.upstream_refresh_at = now + absl::Seconds(5);
      refreshes_.Add({{"result", "failed"}}).Increment();
      core::log::Warn(refresh_log_, "iPBX registration refresh failed",
                      {{"device", user}, {"status", std::to_string(r.status)}});
    }
  }
}

void Registrar::FinishRegister(PendingRegister* p, int status, const char* phrase) {
  const std::string& user = p->device.set_username;
  if (status == 200 && p->expires > 0) {
    const absl::Time now = clock_.Now();
    core::Binding b;
    b.set_username = user;
    b.icp_username = p->device.icp_username;
    b.contacts = p->contacts;
    b.source = p->source;
    b.transport = p->transport;
    b.instance = options_.instance;
    b.since = p->previous_since;
    b.expires_at = now + absl::Seconds(p->expires);
    b.connection = std::to_string(next_connection_++);
    core::BindingStore::ScriptCall call = core::BindingStore::PutCall(b, now);
    redis_.Eval(
        *call.script, call.keys, call.args,
        [this, p, b](const absl::StatusOr<core::RedisReply>& r) { OnStored(p, b, r.status()); });
    return;
  } else if (status == 200) {  // de-registration
    DropLocal(user);
    core::BindingStore::Remove(user, p->device.icp_username, redis_, [user](const absl::Status& s) {
      Logged("cannot remove the binding", user, s);
    });
    Reply(p->irq, SIP_200_OK, TAG_END());
    core::log::Info("unregistered", {{"device", user}, {"source", p->source}});
  } else {
    if (p->new_reservation) {
      core::BindingStore::Release(user, redis_, [user](const absl::Status& s) {
        Logged("cannot give the licence back", user, s);
      });
    }
    ReplyFailure(p->irq, status, phrase);
  }
  Done(p);
}

// The binding is in Redis (or could not be stored): the phone gets its answer.
void Registrar::OnStored(PendingRegister* p, const core::Binding& b, const absl::Status& put) {
  const std::string& user = p->device.set_username;
  const absl::Time now = clock_.Now();
  if (!put.ok()) {
    core::log::Warn(store_log_, "cannot store the binding",
                    {{"error", std::string(put.message())}});
    ReplyFailure(p->irq, 503, "Service Unavailable");
    return Done(p);
  }
  DropLocal(user);
  LocalBinding lb;
  lb.tport = tport_ref(p->tport);
  lb.contacts = p->contacts;
  lb.icp_username = b.icp_username;
  lb.expires_at = b.expires_at;
  lb.connection = b.connection;
  lb.since = b.since;
  lb.route = p->route;
  lb.device = p->device;
  lb.upstream_expires_at = now + absl::Seconds(p->upstream_expires);
  lb.upstream_refresh_at = now + UpstreamRefreshDelay(p->upstream_expires);
  local_[user] = std::move(lb);
  local_by_icp_[b.icp_username] = user;
  std::string contact = ContactList(p->contacts, b.expires_at);
  std::string exp = std::to_string(p->expires);
  Reply(p->irq, SIP_200_OK, SIPTAG_CONTACT_STR(contact.c_str()), SIPTAG_EXPIRES_STR(exp.c_str()),
        TAG_END());
  core::log::Info("registered", {{"device", user},
                                 {"icp_username", b.icp_username},
                                 {"source", p->source},
                                 {"transport", p->transport},
                                 {"expires", exp}});
  Done(p);
}

// Forgets this instance's connection to the phone `user`.
void Registrar::DropLocal(const std::string& user) {
  auto it = local_.find(user);
  if (it == local_.end()) return;
  auto idx = local_by_icp_.find(it->second.icp_username);
  if (idx != local_by_icp_.end() && idx->second == user) local_by_icp_.erase(idx);
  tport_unref(it->second.tport);
  local_.erase(it);
}

void Registrar::ExpireBindings(absl::Time now) {
  for (auto it = local_.begin(); it != local_.end();) {
    LocalBinding& b = it->second;
    if (b.expires_at <= now) {
      core::log::Info("registration expired", {{"device", it->first}});
      if (b.upstream_expires_at > now) RegisterUpstreamInBackground(it->first, 0);
      local_by_icp_.erase(b.icp_username);
      tport_unref(b.tport);
      it = local_.erase(it);
      continue;
    }
    if (b.reachable && (tport_is_closed(b.tport) || tport_is_shutdown(b.tport))) {
      // The phone's connection is gone: requests cannot reach it until it reconnects and
      // registers again; the iPBX's binding runs out at its expiry.
      b.reachable = false;
      core::log::Warn("phone connection lost", {{"device", it->first}});
      redis_.Command(
          {"GET", core::BindingStore::Key(it->first)},
          [this, connection = b.connection](absl::StatusOr<core::RedisReply> r) {
            if (!r.ok() || r->is_nil()) return;
            absl::StatusOr<core::Binding> b = core::BindingFromJson(r->str);
            // Only the binding of the lost connection (not a newer registration).
            if (!b.ok() || b->instance != options_.instance || b->connection != connection) {
              return;
            }
            b->reachable = false;
            core::BindingStore::ScriptCall call = core::BindingStore::PutCall(*b, clock_.Now());
            redis_.Eval(*call.script, call.keys, call.args,
                        [](const absl::StatusOr<core::RedisReply>&) {});
          });
    }
    ++it;
  }
}

}  // namespace rwg::sip_edge
