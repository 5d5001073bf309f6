// The sync API's requests (api.h): routing, the checks every request goes through
// (Authenticate), the long polls. The OAuth legs are in api_tokens.cc, the device calls in
// api_devices.cc; api_internal.h declares what the three share.
#include "services/sync/api.h"

#include <netdb.h>
#include <prometheus/gauge.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/control/device_writes.h"
#include "services/control/store.h"
#include "services/core/cidr.h"
#include "services/core/device_changes.h"
#include "services/core/json.h"
#include "services/core/keys.h"
#include "services/core/log.h"
#include "services/sync/api_internal.h"
#include "services/sync/devices.h"
#include "services/sync/oauth1.h"

namespace rwg::sync {

namespace {

struct Route {
  const char* method;
  const char* path;
  Endpoint endpoint;
};
constexpr Route kRoutes[] = {
    {"POST", "/oauth/request_token", Endpoint::kRequestToken},
    {"POST", "/oauth/access_token", Endpoint::kAccessToken},
    {"POST", "/oauth/renew", Endpoint::kRenew},
    {"GET", "/api/v1/devices", Endpoint::kDevices},
    {"GET", "/api/v1/devices_mbg.csv", Endpoint::kDevicesCsv},
    {"GET", "/api/v1/changes", Endpoint::kChanges},
    {"POST", "/api/v1/devices", Endpoint::kDeviceCreate},
};
// /api/v1/devices/<set_username>
constexpr char kDevicePrefix[] = "/api/v1/devices/";

// The OAuth problems rwg reports (the label values of rwg_sync_refusals_total).
constexpr const char* kProblems[] = {"parameter_absent",
                                     "parameter_rejected",
                                     "signature_method_rejected",
                                     "signature_invalid",
                                     "version_rejected",
                                     "timestamp_refused",
                                     "nonce_used",
                                     "consumer_key_unknown",
                                     "consumer_key_refused",
                                     "token_rejected",
                                     "token_expired",
                                     "token_revoked",
                                     "token_used",
                                     "permission_unknown",
                                     "permission_denied",
                                     "verifier_invalid",
                                     "other"};

}  // namespace

namespace api_internal {

HttpResponse Json(int status, const nlohmann::json& body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

HttpResponse JsonError(int status, const std::string& message) {
  return Json(status, {{"error", message}});
}

HttpResponse Form(const std::vector<std::pair<std::string, std::string>>& fields) {
  HttpResponse r;
  r.content_type = "application/x-www-form-urlencoded";
  std::vector<std::string> parts;
  parts.reserve(fields.size());
  for (const auto& [k, v] : fields) parts.push_back(PercentEncode(k) + "=" + PercentEncode(v));
  r.body = absl::StrJoin(parts, "&");
  return r;
}

// The OAuth problem `status` carries, as an answer: 401 (403 for an address the consumer may
// not call from) with WWW-Authenticate and the problem form-encoded in the body.
HttpResponse Refusal(const std::string& realm, const absl::Status& status, int http_status) {
  HttpResponse r = Form({{"oauth_problem", ProblemOf(status)},
                         {"oauth_problem_advice", std::string(status.message())}});
  r.status = http_status;
  r.headers.emplace_back("WWW-Authenticate", absl::StrCat("OAuth realm=\"", realm, "\""));
  return r;
}

std::string RandomToken(core::Random& rng, size_t length) {
  // Letters and digits only: nothing a client library has to escape.
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  out.reserve(length);
  while (out.size() < length) {
    for (unsigned char b : rng.Bytes(length)) {
      if (b >= 248) continue;  // 248 = 62 * 4: no bias
      out.push_back(kAlphabet[b % 62]);
      if (out.size() == length) break;
    }
  }
  return out;
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// The value of `name` in a query string (decoded), if present.
std::optional<std::string> QueryValue(absl::string_view query, absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = part.find('=');
    absl::StatusOr<std::string> key = PercentDecode(part.substr(0, eq), true);
    if (!key.ok() || *key != name) continue;
    absl::StatusOr<std::string> value =
        PercentDecode(eq == absl::string_view::npos ? "" : part.substr(eq + 1), true);
    if (value.ok()) return *value;
  }
  return std::nullopt;
}

}  // namespace api_internal

SyncApi::Impl::Impl(SyncApiOptions options, core::RedisClient& redis, const core::SecretBox& box,
                    core::Clock& clock, core::Random& rng, prometheus::Registry& registry)
    : options_(std::move(options)),
      redis_(redis),
      clock_(clock),
      rng_(rng),
      store_(redis, box),
      replay_(redis, clock, options_.window),
      devices_(redis, box),
      control_store_(redis),
      writes_(control_store_, box, clock, rng),
      requests_(prometheus::BuildCounter()
                    .Name("rwg_sync_requests_total")
                    .Help("Sync API requests, by endpoint and outcome")
                    .Register(registry)),
      refusals_(prometheus::BuildCounter()
                    .Name("rwg_sync_refusals_total")
                    .Help("Sync API requests refused, by oauth_problem")
                    .Register(registry)),
      expiry_(prometheus::BuildGauge()
                  .Name("rwg_sync_token_expiry_days")
                  .Help("Days until the soonest expiry of a consumer's active access token")
                  .Register(registry)),
      waiting_(prometheus::BuildGauge()
                   .Name("rwg_sync_long_polls_waiting")
                   .Help("changes requests waiting for a change")
                   .Register(registry)
                   .Add({})) {
  for (const char* e : kEndpointNames) {
    for (const char* o : {"ok", "refused", "client_error", "unavailable", "error"}) {
      requests_.Add({{"endpoint", e}, {"outcome", o}});
    }
  }
  requests_.Add({{"endpoint", "unknown"}, {"outcome", "client_error"}});
  for (const char* p : kProblems) refusals_.Add({{"problem", p}});
}

void SyncApi::Impl::Answer(Endpoint e, const Respond& respond, HttpResponse r) {
  const char* outcome = r.status < 300                       ? "ok"
                        : r.status == 401 || r.status == 403 ? "refused"
                        : r.status == 503                    ? "unavailable"
                        : r.status >= 500                    ? "error"
                                                             : "client_error";
  requests_.Add({{"endpoint", kEndpointNames[static_cast<int>(e)]}, {"outcome", outcome}})
      .Increment();
  respond(std::move(r));
}

HttpResponse SyncApi::Impl::Fail(const absl::Status& s) {
  const std::string problem = ProblemOf(s);
  if (!problem.empty()) {
    const bool known = std::find_if(std::begin(kProblems), std::end(kProblems), [&](const char* p) {
                         return problem == p;
                       }) != std::end(kProblems);
    refusals_.Add({{"problem", known ? problem : "other"}}).Increment();
    return Refusal(
        options_.realm, s,
        problem == "consumer_key_refused" && absl::StrContains(s.message(), "address") ? 403 : 401);
  }
  if (absl::IsUnavailable(s)) {
    core::log::Warn("sync request not served: Redis unavailable",
                    {{"error", std::string(s.message())}});
    return JsonError(503, "the gateway's store does not answer; try again");
  }
  if (absl::IsInvalidArgument(s)) return JsonError(400, std::string(s.message()));
  if (absl::IsNotFound(s)) return JsonError(404, std::string(s.message()));
  if (absl::IsResourceExhausted(s)) return JsonError(429, std::string(s.message()));
  if (absl::IsAlreadyExists(s)) return JsonError(409, std::string(s.message()));
  core::log::Error("sync request failed", {{"error", s.ToString()}});
  return JsonError(500, "internal error");
}

void SyncApi::Handle(HttpRequest request, Respond respond) {
  impl_->Handle(std::move(request), respond);
}

void SyncApi::Impl::Handle(HttpRequest request, const Respond& respond) {
  const size_t q = request.target.find('?');
  const absl::string_view path = absl::string_view(request.target).substr(0, q);
  const absl::string_view query = q == std::string::npos
                                      ? absl::string_view()
                                      : absl::string_view(request.target).substr(q + 1);
  std::optional<Endpoint> endpoint;
  bool path_known = false;
  std::string device;  // of /api/v1/devices/<set_username>
  for (const Route& r : kRoutes) {
    if (path != r.path) continue;
    path_known = true;
    if (request.method == r.method) endpoint = r.endpoint;
  }
  if (absl::StartsWith(path, kDevicePrefix) && path.size() > strlen(kDevicePrefix)) {
    path_known = true;
    absl::StatusOr<std::string> user = PercentDecode(path.substr(strlen(kDevicePrefix)), false);
    device = user.ok() ? *user : "";
    if (request.method == "PATCH") endpoint = Endpoint::kDeviceUpdate;
    if (request.method == "DELETE") endpoint = Endpoint::kDeviceDelete;
  }
  if (!endpoint) {
    requests_.Add({{"endpoint", "unknown"}, {"outcome", "client_error"}}).Increment();
    respond(path_known ? JsonError(405, "method not allowed") : JsonError(404, "no such endpoint"));
    return;
  }
  const Endpoint e = *endpoint;
  absl::StatusOr<Caller> caller = Authenticate(e, request, path, query);
  if (!caller.ok()) {
    if (!ProblemOf(caller.status()).empty()) {
      core::log::Warn("sync request refused", {{"endpoint", kEndpointNames[static_cast<int>(e)]},
                                               {"source", request.source},
                                               {"problem", ProblemOf(caller.status())},
                                               {"detail", std::string(caller.status().message())}});
    }
    Answer(e, respond, Fail(caller.status()));
    return;
  }
  switch (e) {
    case Endpoint::kRequestToken:
      Answer(e, respond, RequestToken(*caller, request));
      return;
    case Endpoint::kAccessToken:
      Answer(e, respond, AccessToken(*caller));
      return;
    case Endpoint::kRenew:
      Answer(e, respond, Renew(*caller));
      return;
    case Endpoint::kDevices:
      Answer(e, respond, Devices(query));
      return;
    case Endpoint::kDevicesCsv:
      Answer(e, respond, DevicesCsv());
      return;
    case Endpoint::kDeviceCreate:
    case Endpoint::kDeviceUpdate:
    case Endpoint::kDeviceDelete:
      Answer(e, respond, WriteDevice(e, *caller, device));
      return;
    case Endpoint::kChanges:
      break;
  }
  // changes?since=REV[&wait=SECONDS][&limit=N]
  int64_t since = 0;
  const std::optional<std::string> since_text = QueryValue(query, "since");
  if (!since_text || !absl::SimpleAtoi(*since_text, &since) || since < 0) {
    Answer(e, respond, JsonError(400, "since: a revision (0 or more) is required"));
    return;
  }
  int wait = 0;
  if (std::optional<std::string> w = QueryValue(query, "wait")) {
    if (!absl::SimpleAtoi(*w, &wait) || wait < 0) {
      Answer(e, respond, JsonError(400, "wait: a number of seconds (0 or more)"));
      return;
    }
  }
  int limit = 500;
  if (std::optional<std::string> l = QueryValue(query, "limit")) {
    if (!absl::SimpleAtoi(*l, &limit) || limit < 1 || limit > 5000) {
      Answer(e, respond, JsonError(400, "limit: between 1 and 5000"));
      return;
    }
  }
  const absl::Duration wait_for = std::min(absl::Seconds(wait), options_.max_wait);
  std::optional<HttpResponse> now =
      Changes(since, static_cast<size_t>(limit), wait_for <= absl::ZeroDuration());
  if (now) {
    Answer(e, respond, std::move(*now));
    return;
  }
  absl::MutexLock lock(&mu_);
  if (stop_ || static_cast<int>(waiters_.size()) >= options_.max_waiters) {
    requests_.Add({{"endpoint", "changes"}, {"outcome", "unavailable"}}).Increment();
    respond(JsonError(503, "too many changes requests waiting; try again"));
    return;
  }
  waiters_.push_back(Waiter{caller->consumer.name, since, static_cast<size_t>(limit),
                            clock_.Now() + wait_for, respond});
  waiting_.Set(static_cast<double>(waiters_.size()));
}

void SyncApi::Impl::PollLoop() {
  while (true) {
    std::vector<Waiter> due;
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.poll_interval);
      stopping = stop_;
      due.swap(waiters_);
      waiting_.Set(0);
    }
    if (due.empty()) {
      if (stopping) return;
      continue;
    }
    // One read of the revision tells which waiters may have something: only those read the
    // change log.
    int64_t revision = -1;
    if (absl::StatusOr<core::RedisReply> rev = redis_.Command({"GET", core::kDevicesRevisionKey});
        rev.ok() && !absl::SimpleAtoi(rev->str, &revision)) {
      revision = 0;  // no device written yet
    }
    std::vector<Waiter> still;
    for (Waiter& w : due) {
      const bool last = stopping || clock_.Now() >= w.deadline;
      if (!last && revision >= 0 && revision <= w.since) {
        still.push_back(std::move(w));
        continue;
      }
      std::optional<HttpResponse> r = Changes(w.since, w.limit, last);
      if (r) {
        Answer(Endpoint::kChanges, w.respond, std::move(*r));
      } else {
        still.push_back(std::move(w));
      }
    }
    absl::MutexLock lock(&mu_);
    for (Waiter& w : still) waiters_.push_back(std::move(w));
    waiting_.Set(static_cast<double>(waiters_.size()));
    if (stopping && waiters_.empty()) return;
  }
}

absl::Status SyncApi::Impl::CheckSource(const SyncConsumer& c, const std::string& source) {
  if (!c.sources.empty()) {
    for (const std::string& s : c.sources) {
      absl::StatusOr<core::Cidr> range = core::ParseCidr(s);
      if (range.ok() && core::CidrContains(*range, source)) return absl::OkStatus();
    }
    return OAuthProblem("consumer_key_refused",
                        absl::StrCat("consumer ", c.id, " may not call from the address ", source,
                                     " (rwgctl sync consumer list shows its sources)"));
  }
  // By default only the iPBX: the host of the gateway configuration's icp.host.
  absl::StatusOr<core::RedisReply> config = redis_.Command({"GET", core::kConfigKey});
  if (!config.ok()) return config.status();
  std::string host;
  if (!config->is_nil()) {
    nlohmann::json j = nlohmann::json::parse(config->str, nullptr, false);
    if (j.is_object() && j.contains("icp") && j["icp"].is_object() && j["icp"].contains("host") &&
        j["icp"]["host"].is_string()) {
      host = j["icp"]["host"].get<std::string>();
    }
  }
  std::vector<std::string> addresses;
  {
    absl::MutexLock lock(&icp_mu_);
    if (host == icp_host_ && clock_.Now() - icp_resolved_ < absl::Minutes(1)) {
      addresses = icp_addresses_;
    } else if (!host.empty()) {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      if (getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) {
        for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
          char buf[NI_MAXHOST];
          if (getnameinfo(a->ai_addr, a->ai_addrlen, buf, sizeof(buf), nullptr, 0,
                          NI_NUMERICHOST) == 0) {
            addresses.emplace_back(buf);
          }
        }
        freeaddrinfo(res);
      }
      icp_host_ = host;
      icp_addresses_ = addresses;
      icp_resolved_ = clock_.Now();
    }
  }
  for (const std::string& a : addresses) {
    absl::StatusOr<core::Cidr> one = core::ParseCidr(a);
    if (one.ok() && core::CidrContains(*one, source)) return absl::OkStatus();
  }
  return OAuthProblem(
      "consumer_key_refused",
      absl::StrCat("consumer ", c.id, " may call only from the iPBX (icp.host ",
                   host.empty() ? "is not set" : host, "), not from the address ", source,
                   "; give it other sources with rwgctl sync consumer add --source"));
}

absl::StatusOr<Caller> SyncApi::Impl::Authenticate(Endpoint e, const HttpRequest& request,
                                                   absl::string_view path,
                                                   absl::string_view query) {
  if (request.host.empty()) return absl::InvalidArgumentError("the Host header is missing");
  SignedRequest sr;
  sr.method = request.method;
  sr.scheme = "https";
  sr.host = request.host;
  sr.path = std::string(path);
  sr.query = std::string(query);
  sr.authorization = request.authorization;
  const absl::string_view type = absl::StripAsciiWhitespace(
      absl::string_view(request.content_type).substr(0, request.content_type.find(';')));
  if (absl::EqualsIgnoreCase(type, "application/x-www-form-urlencoded")) {
    sr.form_body = request.body;
  }
  absl::StatusOr<Parameters> params = CollectParameters(sr);
  if (!params.ok()) return params.status();
  auto param = [&](const char* name) -> std::string {
    auto it = params->oauth.find(name);
    return it == params->oauth.end() ? std::string() : it->second;
  };
  const std::string consumer_key = param("oauth_consumer_key");
  if (consumer_key.empty()) {
    return OAuthProblem("parameter_absent", "oauth_consumer_key is missing");
  }
  if (param("oauth_signature").empty()) {
    return OAuthProblem("parameter_absent", "oauth_signature is missing");
  }
  absl::StatusOr<std::optional<SyncConsumer>> consumer = store_.ConsumerById(consumer_key);
  if (!consumer.ok()) return consumer.status();
  if (!consumer->has_value()) {
    return OAuthProblem("consumer_key_unknown", "no consumer has this oauth_consumer_key");
  }
  Caller caller;
  caller.consumer = **consumer;
  if (!caller.consumer.enabled) {
    return OAuthProblem("consumer_key_refused", "this consumer is disabled");
  }
  if (absl::Status s = CheckSource(caller.consumer, request.source); !s.ok()) return s;

  const std::string token = param("oauth_token");
  if (e == Endpoint::kRequestToken) {
    if (!token.empty()) {
      return OAuthProblem("parameter_rejected", "a request for a token is signed without one");
    }
  } else {
    if (token.empty()) return OAuthProblem("parameter_absent", "oauth_token is missing");
    if (token.size() > 128) return OAuthProblem("token_rejected", "no such token");
    absl::StatusOr<std::optional<SyncToken>> t = store_.GetToken(token);
    if (!t.ok()) return t.status();
    if (!t->has_value() || (*t)->consumer != caller.consumer.name) {
      return OAuthProblem("token_rejected", "no such token for this consumer");
    }
    const SyncToken& tk = **t;
    const bool temporary_wanted = e == Endpoint::kAccessToken;
    if ((tk.kind == SyncTokenKind::kTemporary) != temporary_wanted) {
      return OAuthProblem("token_rejected",
                          temporary_wanted
                              ? "an access token cannot be exchanged: sign with the temporary "
                                "token"
                              : "a temporary token cannot sign this: exchange it for an access "
                                "token first");
    }
    switch (tk.state) {
      case SyncTokenState::kRevoked:
        return OAuthProblem("token_revoked", "this token was revoked");
      case SyncTokenState::kUsed:
        return OAuthProblem("token_used", "this temporary token was exchanged already");
      case SyncTokenState::kRejected:
        return OAuthProblem("permission_denied", "the administrator rejected this token");
      case SyncTokenState::kPending:
        return OAuthProblem("permission_unknown",
                            "the administrator has not approved this token yet (rwgctl sync "
                            "token approve)");
      case SyncTokenState::kApproved:
      case SyncTokenState::kActive:
        break;
    }
    if (clock_.Now() >= tk.expires) {
      return OAuthProblem("token_expired",
                          absl::StrCat("this token expired at ", Rfc3339(tk.expires)));
    }
    caller.token = tk;
  }
  if (absl::Status s = VerifySignature(sr, *params, caller.consumer.secret,
                                       caller.token ? caller.token->secret : "");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          replay_.Check(consumer_key, token, param("oauth_timestamp"), param("oauth_nonce"));
      !s.ok()) {
    return s;
  }
  caller.params = *std::move(params);
  return caller;
}

SyncApi::SyncApi(SyncApiOptions options, core::RedisClient& redis, const core::SecretBox& box,
                 core::Clock& clock, core::Random& rng, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), redis, box, clock, rng, registry)) {}
SyncApi::~SyncApi() { impl_->Stop(); }
void SyncApi::Start() { impl_->Start(); }
void SyncApi::Stop() { impl_->Stop(); }
void SyncApi::RefreshTokenExpiry() { impl_->RefreshTokenExpiry(); }

}  // namespace rwg::sync
