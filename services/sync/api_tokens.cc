// The sync API's OAuth legs (RFC 5849 §2): a temporary token, its exchange for an access
// token with the verifier the admin approved, the renewal; and the token expiry gauge.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/sync/api_internal.h"

namespace rwg::sync {

HttpResponse SyncApi::Impl::RequestToken(const Caller& caller, const HttpRequest& request) {
  auto it = caller.params.oauth.find("oauth_callback");
  if (it == caller.params.oauth.end()) {
    return Fail(OAuthProblem("parameter_absent", "oauth_callback is missing (use oob)"));
  }
  if (it->second != "oob") {
    return Fail(OAuthProblem("parameter_rejected",
                             "oauth_callback must be oob: the administrator approves tokens and "
                             "reads the verifier to the caller"));
  }
  absl::StatusOr<std::vector<SyncToken>> tokens = store_.ListTokens();
  if (!tokens.ok()) return Fail(tokens.status());
  const auto pending = std::count_if(tokens->begin(), tokens->end(), [&](const SyncToken& t) {
    return t.consumer == caller.consumer.name && t.kind == SyncTokenKind::kTemporary &&
           (t.state == SyncTokenState::kPending || t.state == SyncTokenState::kApproved);
  });
  if (pending >= options_.max_pending_tokens) {
    return Fail(absl::ResourceExhaustedError(absl::StrCat(
        "this consumer has ", pending,
        " temporary tokens waiting already: approve, reject or let them expire (1 hour)")));
  }
  SyncToken t;
  t.token = RandomToken(rng_, 32);
  t.secret = RandomToken(rng_, 40);
  t.kind = SyncTokenKind::kTemporary;
  t.state = SyncTokenState::kPending;
  t.consumer = caller.consumer.name;
  t.source = request.source;
  t.created = clock_.Now();
  t.expires = t.created + core::kSyncTemporaryTokenLife;
  if (absl::Status s = store_.PutToken(t); !s.ok()) return Fail(s);
  core::log::Info("sync temporary token requested", {{"consumer", caller.consumer.name},
                                                     {"token", t.token},
                                                     {"source", request.source},
                                                     {"expires", Rfc3339(t.expires)}});
  return Form({{"oauth_token", t.token},
               {"oauth_token_secret", t.secret},
               {"oauth_callback_confirmed", "true"},
               {"oauth_expires_in", std::to_string(absl::ToInt64Seconds(t.expires - t.created))}});
}

HttpResponse SyncApi::Impl::AccessToken(const Caller& caller) {
  const SyncToken& temporary = *caller.token;
  auto it = caller.params.oauth.find("oauth_verifier");
  if (it == caller.params.oauth.end() || it->second.empty()) {
    return Fail(OAuthProblem("parameter_absent", "oauth_verifier is missing"));
  }
  if (temporary.verifier.empty() || !core::ConstantTimeEquals(it->second, temporary.verifier)) {
    absl::StatusOr<int> failures = store_.CountVerifierFailure(temporary.token);
    if (!failures.ok()) return Fail(failures.status());
    core::log::Warn("sync verifier refused", {{"consumer", caller.consumer.name},
                                              {"token", temporary.token},
                                              {"failures", std::to_string(*failures)}});
    return Fail(OAuthProblem(
        "verifier_invalid",
        *failures >= core::kSyncVerifierAttempts
            ? "wrong verifier; too many wrong verifiers: the token is void, request another"
            : absl::StrCat("wrong verifier (", core::kSyncVerifierAttempts - *failures,
                           " attempts left)")));
  }
  SyncToken access;
  access.token = RandomToken(rng_, 32);
  access.secret = RandomToken(rng_, 40);
  access.kind = SyncTokenKind::kAccess;
  access.state = SyncTokenState::kActive;
  access.consumer = caller.consumer.name;
  access.source = temporary.source;
  access.created = clock_.Now();
  access.expires = access.created + core::kSyncAccessTokenLife;
  if (absl::Status s = store_.ExchangeToken(temporary, access); !s.ok()) {
    if (absl::IsFailedPrecondition(s)) {
      return Fail(OAuthProblem("token_used", "this temporary token was exchanged already"));
    }
    return Fail(s);
  }
  core::log::Info("sync access token issued", {{"consumer", caller.consumer.name},
                                               {"token", access.token},
                                               {"expires", Rfc3339(access.expires)}});
  RefreshTokenExpiry();
  return Form(
      {{"oauth_token", access.token},
       {"oauth_token_secret", access.secret},
       {"oauth_expires_in", std::to_string(absl::ToInt64Seconds(access.expires - access.created))},
       {"oauth_expires_at", Rfc3339(access.expires)}});
}

HttpResponse SyncApi::Impl::Renew(const Caller& caller) {
  const absl::Time now = clock_.Now();
  const absl::Time expires = now + core::kSyncAccessTokenLife;
  if (absl::Status s = store_.RenewToken(caller.token->token, expires); !s.ok()) return Fail(s);
  core::log::Info("sync access token renewed", {{"consumer", caller.consumer.name},
                                                {"token", caller.token->token},
                                                {"expires", Rfc3339(expires)}});
  RefreshTokenExpiry();
  return Form({{"oauth_token", caller.token->token},
               {"oauth_expires_in", std::to_string(absl::ToInt64Seconds(expires - now))},
               {"oauth_expires_at", Rfc3339(expires)}});
}

void SyncApi::Impl::RefreshTokenExpiry() {
  absl::StatusOr<std::vector<SyncToken>> tokens = store_.ListTokens();
  absl::StatusOr<std::vector<SyncConsumer>> consumers = store_.ListConsumers();
  if (!tokens.ok() || !consumers.ok()) return;
  const absl::Time now = clock_.Now();
  std::map<std::string, absl::Time> soonest;
  for (const SyncToken& t : *tokens) {
    if (t.kind != SyncTokenKind::kAccess || t.state != SyncTokenState::kActive) continue;
    auto [it, fresh] = soonest.emplace(t.consumer, t.expires);
    if (!fresh && t.expires < it->second) it->second = t.expires;
  }
  absl::MutexLock lock(&expiry_mu_);
  // One series per consumer holding an active access token (at most kSyncConsumersMax).
  for (auto it = expiry_gauges_.begin(); it != expiry_gauges_.end();) {
    if (soonest.count(it->first) == 0) {
      expiry_.Remove(it->second);
      it = expiry_gauges_.erase(it);
    } else {
      ++it;
    }
  }
  for (const SyncConsumer& c : *consumers) {
    auto s = soonest.find(c.name);
    if (s == soonest.end()) continue;
    prometheus::Gauge*& g = expiry_gauges_[c.name];
    if (g == nullptr) g = &expiry_.Add({{"consumer", c.name}});
    g->Set(absl::ToDoubleHours(s->second - now) / 24);
  }
}

}  // namespace rwg::sync
