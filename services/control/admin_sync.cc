// rwg.admin.v1.AdminService: the sync API's consumers and tokens (R-SYNC, docs/sync-api.md),
// kept by core::SyncStore. rwg makes every secret here from the CSPRNG and shows it once;
// nothing listed or logged holds one.
#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/control/admin_service.h"
#include "services/core/keys.h"
#include "services/core/log.h"

namespace rwg::control {
namespace {

namespace adminpb = ::rwg::admin::v1;

// Verifiers are read off a screen and typed on the iPBX: no 0/O, 1/I/L, upper case only.
constexpr char kVerifierAlphabet[] = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";
constexpr size_t kVerifierLength = 10;

std::string RandomVerifier(core::Random& rng) {
  constexpr size_t kSize = sizeof(kVerifierAlphabet) - 1;
  std::string out;
  while (out.size() < kVerifierLength) {
    for (unsigned char b : rng.Bytes(kVerifierLength)) {
      if (b >= 256 - (256 % kSize)) continue;  // rejection sampling: every letter equally likely
      out.push_back(kVerifierAlphabet[b % kSize]);
      if (out.size() == kVerifierLength) break;
    }
  }
  return out;
}

// Active access tokens and pending (or approved) temporary tokens, by consumer.
struct TokenCounts {
  int active = 0;
  int pending = 0;
};

adminpb::SyncConsumer ConsumerProto(const core::SyncConsumer& c, const TokenCounts& n,
                                    const core::SyncCallbackStatus* cb = nullptr) {
  adminpb::SyncConsumer out;
  out.set_callback_url(c.callback_url);
  if (!c.callback_url.empty()) {
    core::SyncCallbackStatus fresh;
    fresh.delivered_revision = c.callback_from;
    if (cb == nullptr) cb = &fresh;
    out.set_callback_delivered_revision(cb->delivered_revision);
    out.set_callback_failures(cb->failures);
    out.set_callback_last_error(cb->last_error);
    if (cb->last_attempt != absl::UnixEpoch()) {
      out.set_callback_last_attempt_unix(absl::ToUnixSeconds(cb->last_attempt));
    }
    if (cb->next_attempt != absl::UnixEpoch()) {
      out.set_callback_next_attempt_unix(absl::ToUnixSeconds(cb->next_attempt));
    }
  }
  out.set_name(c.name);
  out.set_id(c.id);
  out.set_enabled(c.enabled);
  for (const std::string& s : c.sources) out.add_sources(s);
  out.set_create_time_unix(absl::ToUnixSeconds(c.created));
  out.set_active_tokens(n.active);
  out.set_pending_tokens(n.pending);
  return out;
}

adminpb::SyncToken TokenProto(const core::SyncToken& t) {
  adminpb::SyncToken out;
  out.set_token(t.token);
  out.set_kind(std::string(core::SyncTokenKindName(t.kind)));
  out.set_state(std::string(core::SyncTokenStateName(t.state)));
  out.set_consumer(t.consumer);
  out.set_source(t.source);
  out.set_create_time_unix(absl::ToUnixSeconds(t.created));
  out.set_expire_time_unix(absl::ToUnixSeconds(t.expires));
  out.set_access_token(t.access_token);
  return out;
}

absl::StatusOr<std::map<std::string, TokenCounts>> CountTokens(core::SyncStore& store) {
  absl::StatusOr<std::vector<core::SyncToken>> tokens = store.ListTokens();
  if (!tokens.ok()) return tokens.status();
  std::map<std::string, TokenCounts> out;
  for (const core::SyncToken& t : *tokens) {
    if (t.kind == core::SyncTokenKind::kAccess && t.state == core::SyncTokenState::kActive) {
      ++out[t.consumer].active;
    }
    if (t.kind == core::SyncTokenKind::kTemporary &&
        (t.state == core::SyncTokenState::kPending || t.state == core::SyncTokenState::kApproved)) {
      ++out[t.consumer].pending;
    }
  }
  return out;
}

absl::StatusOr<adminpb::SyncConsumer> LoadConsumer(core::SyncStore& store,
                                                   const std::string& name) {
  absl::StatusOr<std::optional<core::SyncConsumer>> c = store.ConsumerByName(name);
  if (!c.ok()) return c.status();
  if (!c->has_value()) return absl::NotFoundError(absl::StrCat("name: no consumer '", name, "'"));
  absl::StatusOr<std::map<std::string, TokenCounts>> counts = CountTokens(store);
  if (!counts.ok()) return counts.status();
  absl::StatusOr<core::SyncCallbackStatus> cb = store.CallbackStatus(**c);
  if (!cb.ok()) return cb.status();
  return ConsumerProto(**c, (*counts)[name], &*cb);
}

absl::StatusOr<adminpb::SyncToken> LoadToken(core::SyncStore& store, const std::string& token) {
  absl::StatusOr<std::optional<core::SyncToken>> t = store.GetToken(token);
  if (!t.ok()) return t.status();
  if (!t->has_value()) {
    return absl::NotFoundError(absl::StrCat("token: no token '", token, "' (or it expired)"));
  }
  return TokenProto(**t);
}

absl::Status RequireName(const std::string& value, const char* field) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  return absl::OkStatus();
}

}  // namespace

grpc::Status AdminServiceImpl::AddSyncConsumer(grpc::ServerContext* ctx,
                                               const adminpb::AddSyncConsumerRequest* req,
                                               adminpb::AddSyncConsumerResponse* resp) {
  return Run("AddSyncConsumer", ctx, false, [&](const std::string& user) -> absl::Status {
    core::SyncConsumer c;
    c.name = req->name();
    c.id = req->id().empty() ? req->name() : req->id();
    c.sources.assign(req->sources().begin(), req->sources().end());
    c.callback_url = req->callback_url();
    if (!c.callback_url.empty()) {
      // Notices start after the device revision current now: no backlog.
      absl::StatusOr<core::RedisReply> rev = redis_.Command({"GET", core::kDevicesRevisionKey});
      if (!rev.ok()) return rev.status();
      // A revision that is not a number (never written so) leaves 0: notices from the start.
      if (!rev->is_nil()) (void)absl::SimpleAtoi(rev->str, &c.callback_from);
    }
    c.enabled = true;
    c.created = absl::FromUnixSeconds(absl::ToUnixSeconds(clock_.Now()));
    c.secret = core::RandomPassword(rng_, core::kSyncConsumerSecretLength);
    absl::Status added = sync_.AddConsumer(c);
    if (!added.ok()) return added;
    core::log::Info("sync consumer added", {{"user", user}, {"consumer", c.name}, {"id", c.id}});
    *resp->mutable_consumer() = ConsumerProto(c, {});
    resp->set_secret(c.secret);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListSyncConsumers(grpc::ServerContext* ctx,
                                                 const adminpb::ListSyncConsumersRequest*,
                                                 adminpb::ListSyncConsumersResponse* resp) {
  return Run("ListSyncConsumers", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<core::SyncConsumer>> all = sync_.ListConsumers();
    if (!all.ok()) return all.status();
    absl::StatusOr<std::map<std::string, TokenCounts>> counts = CountTokens(sync_);
    if (!counts.ok()) return counts.status();
    for (const core::SyncConsumer& c : *all) {
      absl::StatusOr<core::SyncCallbackStatus> cb = sync_.CallbackStatus(c);
      if (!cb.ok()) return cb.status();
      *resp->add_consumers() = ConsumerProto(c, (*counts)[c.name], &*cb);
    }
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::SetSyncConsumerEnabled(
    grpc::ServerContext* ctx, const adminpb::SetSyncConsumerEnabledRequest* req,
    adminpb::SyncConsumer* resp) {
  return Run("SetSyncConsumerEnabled", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->name(), "name");
    if (s.ok()) s = sync_.SetConsumerEnabled(req->name(), req->enabled());
    if (!s.ok()) return s;
    core::log::Info(req->enabled() ? "sync consumer enabled" : "sync consumer disabled",
                    {{"user", user}, {"consumer", req->name()}});
    absl::StatusOr<adminpb::SyncConsumer> c = LoadConsumer(sync_, req->name());
    if (!c.ok()) return c.status();
    *resp = *std::move(c);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::SetSyncConsumerCallback(
    grpc::ServerContext* ctx, const adminpb::SetSyncConsumerCallbackRequest* req,
    adminpb::SyncConsumer* resp) {
  return Run("SetSyncConsumerCallback", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->name(), "name");
    if (s.ok()) s = sync_.SetConsumerCallback(req->name(), req->callback_url());
    if (!s.ok()) return s;
    core::log::Info(req->callback_url().empty() ? "sync consumer callback cleared"
                                                : "sync consumer callback set",
                    {{"user", user}, {"consumer", req->name()}, {"url", req->callback_url()}});
    absl::StatusOr<adminpb::SyncConsumer> c = LoadConsumer(sync_, req->name());
    if (!c.ok()) return c.status();
    *resp = *std::move(c);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ResetSyncConsumer(grpc::ServerContext* ctx,
                                                 const adminpb::ResetSyncConsumerRequest* req,
                                                 adminpb::ResetSyncConsumerResponse* resp) {
  return Run("ResetSyncConsumer", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->name(), "name");
    if (!s.ok()) return s;
    const std::string secret = core::RandomPassword(rng_, core::kSyncConsumerSecretLength);
    absl::StatusOr<int> revoked = sync_.ResetConsumer(req->name(), secret);
    if (!revoked.ok()) return revoked.status();
    core::log::Info(
        "sync consumer reset",
        {{"user", user}, {"consumer", req->name()}, {"revoked_tokens", std::to_string(*revoked)}});
    absl::StatusOr<adminpb::SyncConsumer> c = LoadConsumer(sync_, req->name());
    if (!c.ok()) return c.status();
    *resp->mutable_consumer() = *std::move(c);
    resp->set_secret(secret);
    resp->set_revoked_tokens(*revoked);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::DeleteSyncConsumer(grpc::ServerContext* ctx,
                                                  const adminpb::DeleteSyncConsumerRequest* req,
                                                  adminpb::DeleteSyncConsumerResponse*) {
  return Run("DeleteSyncConsumer", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->name(), "name");
    if (!s.ok()) return s;
    absl::StatusOr<bool> deleted = sync_.DeleteConsumer(req->name());
    if (!deleted.ok()) return deleted.status();
    if (!*deleted) {
      return absl::NotFoundError(absl::StrCat("name: no consumer '", req->name(), "'"));
    }
    core::log::Info("sync consumer deleted", {{"user", user}, {"consumer", req->name()}});
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListSyncTokens(grpc::ServerContext* ctx,
                                              const adminpb::ListSyncTokensRequest* req,
                                              adminpb::ListSyncTokensResponse* resp) {
  return Run("ListSyncTokens", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<core::SyncToken>> all = sync_.ListTokens();
    if (!all.ok()) return all.status();
    for (const core::SyncToken& t : *all) {
      if (!req->consumer().empty() && t.consumer != req->consumer()) continue;
      *resp->add_tokens() = TokenProto(t);
    }
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ApproveSyncToken(grpc::ServerContext* ctx,
                                                const adminpb::ApproveSyncTokenRequest* req,
                                                adminpb::ApproveSyncTokenResponse* resp) {
  return Run("ApproveSyncToken", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->token(), "token");
    if (!s.ok()) return s;
    const std::string verifier = RandomVerifier(rng_);
    s = sync_.ApproveToken(req->token(), verifier);
    if (!s.ok()) return s;
    absl::StatusOr<adminpb::SyncToken> t = LoadToken(sync_, req->token());
    if (!t.ok()) return t.status();
    core::log::Info("sync token approved",
                    {{"user", user}, {"token", req->token()}, {"consumer", t->consumer()}});
    *resp->mutable_token() = *std::move(t);
    resp->set_verifier(verifier);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RejectSyncToken(grpc::ServerContext* ctx,
                                               const adminpb::RejectSyncTokenRequest* req,
                                               adminpb::SyncToken* resp) {
  return Run("RejectSyncToken", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->token(), "token");
    if (s.ok()) s = sync_.RejectToken(req->token());
    if (!s.ok()) return s;
    absl::StatusOr<adminpb::SyncToken> t = LoadToken(sync_, req->token());
    if (!t.ok()) return t.status();
    core::log::Info("sync token rejected",
                    {{"user", user}, {"token", req->token()}, {"consumer", t->consumer()}});
    *resp = *std::move(t);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RenewSyncToken(grpc::ServerContext* ctx,
                                              const adminpb::RenewSyncTokenRequest* req,
                                              adminpb::SyncToken* resp) {
  return Run("RenewSyncToken", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->token(), "token");
    const absl::Time expires =
        absl::FromUnixSeconds(absl::ToUnixSeconds(clock_.Now())) + core::kSyncAccessTokenLife;
    if (s.ok()) s = sync_.RenewToken(req->token(), expires);
    if (!s.ok()) return s;
    absl::StatusOr<adminpb::SyncToken> t = LoadToken(sync_, req->token());
    if (!t.ok()) return t.status();
    core::log::Info("sync token renewed", {{"user", user},
                                           {"token", req->token()},
                                           {"consumer", t->consumer()},
                                           {"expires", absl::FormatTime(expires)}});
    *resp = *std::move(t);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RevokeSyncToken(grpc::ServerContext* ctx,
                                               const adminpb::RevokeSyncTokenRequest* req,
                                               adminpb::SyncToken* resp) {
  return Run("RevokeSyncToken", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::Status s = RequireName(req->token(), "token");
    if (s.ok()) s = sync_.RevokeToken(req->token());
    if (!s.ok()) return s;
    absl::StatusOr<adminpb::SyncToken> t = LoadToken(sync_, req->token());
    if (!t.ok()) return t.status();
    core::log::Info("sync token revoked",
                    {{"user", user}, {"token", req->token()}, {"consumer", t->consumer()}});
    *resp = *std::move(t);
    return absl::OkStatus();
  });
}

}  // namespace rwg::control
