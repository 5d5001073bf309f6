// rwg.admin.v1.AdminService, the part every RPC shares and the gateway's settings: the
// authentication and accounting of each call (Run), logins, logouts and password changes, the
// gateway configuration and the provisioning hash key. Devices are in admin_devices.cc; what
// the running gateway holds (registrations, bans, emergency routes, calls) in admin_live.cc.
#include "services/control/admin_service.h"

#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/control/device_csv.h"
#include "services/control/rpc_guard.h"
#include "services/control/validation.h"
#include "services/core/calls.h"
#include "services/core/devices.h"
#include "services/core/json.h"
#include "services/core/log.h"
#include "services/core/status.h"

namespace rwg::control {
namespace {

namespace pbu = google::protobuf::util;

constexpr char kHashWarning[] =
    "every phone deployed with the previous key loses its configuration path: redeploy the "
    "phones (or their redirection) with the new download path";

// InvalidArgument when the configuration cannot be written as JSON (validation refuses
// invalid UTF-8 first; never store an empty configuration).
absl::StatusOr<std::string> ConfigToJson(const adminpb::GatewayConfig& c) {
  pbu::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  std::string out;
  auto s = pbu::MessageToJsonString(c, &out, o);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config: cannot be stored: ", s.ToString()));
  }
  return out;
}

bool IsHex32(absl::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

LoginMetrics::LoginMetrics(prometheus::Registry& registry)
    : refusals_(prometheus::BuildCounter()
                    .Name("rwg_control_login_refusals_total")
                    .Help("Password checks refused without checking, by reason")
                    .Register(registry)),
      lockouts_(prometheus::BuildCounter()
                    .Name("rwg_control_login_lockouts_total")
                    .Help("Sources and user names locked out after repeated failed logins")
                    .Register(registry)),
      busy_(refusals_.Add({{"reason", "busy"}})),
      source_locked_(refusals_.Add({{"reason", "source_locked"}})),
      user_locked_(refusals_.Add({{"reason", "user_locked"}})),
      source_lockouts_(lockouts_.Add({{"scope", "source"}})),
      user_lockouts_(lockouts_.Add({{"scope", "user"}})) {}

void LoginMetrics::Count(LoginEvent e) {
  switch (e) {
    case LoginEvent::kBusy:
      busy_.Increment();
      break;
    case LoginEvent::kSourceLocked:
      source_locked_.Increment();
      break;
    case LoginEvent::kUserLocked:
      user_locked_.Increment();
      break;
    case LoginEvent::kSourceLockout:
      source_lockouts_.Increment();
      break;
    case LoginEvent::kUserLockout:
      user_lockouts_.Increment();
      break;
  }
}

AdminServiceImpl::AdminServiceImpl(RedisControlStore& store, core::RedisClient& redis,
                                   Authenticator& auth, core::SecretBox& box, core::Clock& clock,
                                   core::Random& rng, prometheus::Registry& registry)
    : store_(store),
      registrations_(redis),
      bans_(redis),
      emergency_(redis),
      sync_(redis, box),
      redis_(redis),
      auth_(auth),
      box_(box),
      clock_(clock),
      rng_(rng),
      rpcs_(prometheus::BuildCounter()
                .Name("rwg_control_rpcs_total")
                .Help("Admin API calls by method and gRPC status code")
                .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("rwg_control_rpc_duration_seconds")
                   .Help("Admin API call duration by method")
                   .Register(registry)),
      login_failures_(prometheus::BuildCounter()
                          .Name("rwg_control_login_failures_total")
                          .Help("Failed admin logins")
                          .Register(registry)
                          .Add({})),
      exceptions_(prometheus::BuildCounter()
                      .Name("rwg_control_rpc_exceptions_total")
                      .Help("Admin API calls whose handler threw (answered INTERNAL), by method")
                      .Register(registry)) {}

grpc::Status AdminServiceImpl::Run(const char* method, grpc::ServerContext* ctx, bool public_rpc,
                                   const std::function<absl::Status(std::string&)>& fn) {
  absl::Time start = absl::Now();
  std::string user;
  auto count_throw = [&] { exceptions_.Add({{"method", method}}).Increment(); };
  absl::Status st = RunCatching(
      method,
      [&]() -> absl::Status {
        if (!public_rpc) {
          auto md = ctx->client_metadata().find("authorization");
          absl::string_view header;
          if (md != ctx->client_metadata().end()) {
            header = absl::string_view(md->second.data(), md->second.size());
          }
          absl::StatusOr<std::string> who = auth_.Check(header);
          if (!who.ok()) return who.status();
          user = *who;
        }
        return fn(user);
      },
      count_throw);
  // Counting and logging must not throw out of the handler either.
  absl::Status logged = RunCatching(
      method,
      [&]() -> absl::Status {
        const std::string code = absl::StatusCodeToString(st.code());
        rpcs_.Add({{"method", method}, {"code", code}}).Increment();
        latency_
            .Add({{"method", method}},
                 prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5})
            .Observe(absl::ToDoubleSeconds(absl::Now() - start));
        if (!st.ok()) {
          core::log::Info("rpc failed", {{"method", method},
                                         {"user", user},
                                         {"peer", ctx->peer()},
                                         {"code", code},
                                         {"error", std::string(st.message())}});
        } else if (!absl::StartsWith(method, "Get") && !absl::StartsWith(method, "List") &&
                   !absl::StartsWith(method, "Export")) {
          core::log::Info("rpc", {{"method", method}, {"user", user}, {"peer", ctx->peer()}});
        }
        return absl::OkStatus();
      },
      count_throw);
  if (!logged.ok()) return core::ToGrpcStatus(logged);
  return core::ToGrpcStatus(st);
}

// ---------------------------------------------------------------------------------------------
// Sessions

grpc::Status AdminServiceImpl::Login(grpc::ServerContext* ctx, const adminpb::LoginRequest* req,
                                     adminpb::LoginResponse* resp) {
  return Run("Login", ctx, true, [&](std::string& user) {
    user = req->username();
    absl::StatusOr<Token> t =
        auth_.Login(req->username(), req->password(), LoginSourceKey(ctx->peer()));
    if (!t.ok()) {
      if (absl::IsUnauthenticated(t.status())) login_failures_.Increment();
      return t.status();
    }
    resp->set_token(t->token);
    resp->set_expires_at_unix(absl::ToUnixSeconds(t->expires_at));
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::Logout(grpc::ServerContext* ctx, const adminpb::LogoutRequest*,
                                      adminpb::LogoutResponse*) {
  return Run("Logout", ctx, false, [&](const std::string&) {
    auto md = ctx->client_metadata().find("authorization");
    return auth_.Logout(absl::string_view(md->second.data(), md->second.size()));
  });
}

grpc::Status AdminServiceImpl::ChangePassword(grpc::ServerContext* ctx,
                                              const adminpb::ChangePasswordRequest* req,
                                              adminpb::ChangePasswordResponse*) {
  return Run("ChangePassword", ctx, false, [&](const std::string& user) {
    auto md = ctx->client_metadata().find("authorization");
    return auth_.ChangePassword(user, req->current_password(), req->new_password(),
                                absl::string_view(md->second.data(), md->second.size()),
                                LoginSourceKey(ctx->peer()));
  });
}

// ---------------------------------------------------------------------------------------------
// Configuration

absl::Status AdminServiceImpl::EnsureConfig(const std::string& public_name) {
  adminpb::GatewayConfig c = DefaultConfig();
  if (!public_name.empty()) c.set_public_name(public_name);
  std::vector<FieldError> errs = ValidateConfig(c);
  if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs));
  absl::StatusOr<std::string> json = ConfigToJson(c);
  if (!json.ok()) return json.status();
  absl::StatusOr<bool> set = store_.config().CompareAndSet("", *json);
  if (!set.ok()) return set.status();
  if (*set) core::log::Info("initial configuration written", {{"public_name", c.public_name()}});
  return absl::OkStatus();
}

absl::StatusOr<adminpb::GatewayConfig> AdminServiceImpl::LoadConfig(std::string* raw) {
  absl::StatusOr<std::optional<std::string>> v = store_.config().Get();
  if (!v.ok()) return v.status();
  if (!v->has_value()) {
    raw->clear();
    return DefaultConfig();
  }
  *raw = **v;
  adminpb::GatewayConfig c;
  pbu::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!pbu::JsonStringToMessage(*raw, &c, o).ok()) {
    return absl::DataLossError("the stored configuration (rwg:config) is not valid JSON");
  }
  return c;
}

grpc::Status AdminServiceImpl::GetConfig(grpc::ServerContext* ctx, const adminpb::GetConfigRequest*,
                                         adminpb::GatewayConfig* resp) {
  return Run("GetConfig", ctx, false, [&](const std::string&) {
    std::string raw;
    absl::StatusOr<adminpb::GatewayConfig> c = LoadConfig(&raw);
    if (!c.ok()) return c.status();
    *resp = *c;
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::UpdateConfig(grpc::ServerContext* ctx,
                                            const adminpb::UpdateConfigRequest* req,
                                            adminpb::UpdateConfigResponse* resp) {
  return Run("UpdateConfig", ctx, false, [&](const std::string& user) -> absl::Status {
    for (const std::string& path : req->update_mask().paths()) {
      if (!pbu::FieldMaskUtil::GetFieldDescriptors(adminpb::GatewayConfig::descriptor(), path,
                                                   nullptr)) {
        return absl::InvalidArgumentError(
            absl::StrCat("update_mask: '", path, "' is not a configuration field"));
      }
    }
    // Compare-and-set loop: concurrent admins never overwrite each other's fields.
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::string raw;
      absl::StatusOr<adminpb::GatewayConfig> before = LoadConfig(&raw);
      if (!before.ok()) return before.status();
      adminpb::GatewayConfig after = *before;
      if (req->update_mask().paths().empty()) {
        after = req->config();
      } else {
        pbu::FieldMaskUtil::MergeOptions mo;
        mo.set_replace_repeated_fields(true);
        mo.set_replace_message_fields(false);
        pbu::FieldMaskUtil::MergeMessageTo(req->config(), req->update_mask(), mo, &after);
      }
      std::vector<FieldError> errs = ValidateConfig(after);
      if (!errs.empty()) return absl::InvalidArgumentError(JoinErrors(errs));
      absl::StatusOr<std::string> json = ConfigToJson(after);
      if (!json.ok()) return json.status();
      absl::StatusOr<bool> set = store_.config().CompareAndSet(raw, *json);
      if (!set.ok()) return set.status();
      if (!*set) continue;
      *resp->mutable_config() = after;
      for (std::string& r : RestartRequired(*before, after)) resp->add_restart_required(r);
      core::log::Info("configuration changed",
                      {{"user", user},
                       {"fields", absl::StrJoin(req->update_mask().paths(), ",")},
                       {"restart_required", absl::StrJoin(resp->restart_required(), ",")}});
      return absl::OkStatus();
    }
    return absl::AbortedError("configuration changed concurrently 5 times; try again");
  });
}

// ---------------------------------------------------------------------------------------------
// Hash key

absl::StatusOr<adminpb::HashKey> AdminServiceImpl::LoadHash() {
  absl::StatusOr<std::optional<std::string>> v = store_.hash().Get();
  if (!v.ok()) return v.status();
  if (!v->has_value()) {
    return absl::NotFoundError(
        "no hash key yet: generate one (rwgctl hash generate) or import "
        "the MiVoice 5000's (rwgctl hash import)");
  }
  nlohmann::json j = nlohmann::json::parse(**v, nullptr, false);
  if (!j.is_object() || !j.contains("key") || !j["key"].is_string() || !j.contains("create_time") ||
      !j["create_time"].is_number_integer()) {
    return absl::DataLossError("the stored hash key (rwg:hash) is damaged");
  }
  absl::StatusOr<std::string> key = box_.Open(j["key"].get<std::string>(), "hash");
  if (!key.ok()) return key.status();
  std::string raw;
  absl::StatusOr<adminpb::GatewayConfig> cfg = LoadConfig(&raw);
  if (!cfg.ok()) return cfg.status();
  adminpb::HashKey h;
  h.set_key(*key);
  h.set_download_path(absl::StrCat("https://", cfg->public_name(), ":",
                                   cfg->icp().xml_listen_port(), "/", *key, "/ftp_67xxi"));
  h.set_create_time_unix(j["create_time"].get<int64_t>());
  return h;
}

absl::StatusOr<adminpb::HashKey> AdminServiceImpl::StoreHash(const std::string& key,
                                                             bool must_be_new, const char* action,
                                                             const std::string& user) {
  absl::StatusOr<std::optional<std::string>> cur = store_.hash().Get();
  if (!cur.ok()) return cur.status();
  if (must_be_new && cur->has_value()) {
    return absl::AlreadyExistsError(
        "a hash key exists already; regenerating it breaks every deployed phone (rwgctl hash "
        "regenerate)");
  }
  nlohmann::json j = {{"key", box_.Seal(key, "hash")},
                      {"create_time", absl::ToUnixSeconds(clock_.Now())}};
  absl::StatusOr<bool> set = store_.hash().CompareAndSet(cur->value_or(""), core::JsonDump(j));
  if (!set.ok()) return set.status();
  if (!*set) return absl::AbortedError("the hash key changed concurrently; look and try again");
  core::log::Warn("hash key changed", {{"user", user}, {"action", action}});
  return LoadHash();
}

grpc::Status AdminServiceImpl::GetHashKey(grpc::ServerContext* ctx,
                                          const adminpb::GetHashKeyRequest*,
                                          adminpb::HashKey* resp) {
  return Run("GetHashKey", ctx, false, [&](const std::string&) -> absl::Status {
    absl::StatusOr<adminpb::HashKey> h = LoadHash();
    if (!h.ok()) return h.status();
    *resp = *h;
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::GenerateHashKey(grpc::ServerContext* ctx,
                                               const adminpb::GenerateHashKeyRequest*,
                                               adminpb::HashKey* resp) {
  return Run("GenerateHashKey", ctx, false, [&](const std::string& user) -> absl::Status {
    absl::StatusOr<adminpb::HashKey> h =
        StoreHash(core::RandomHex(rng_, 16), true, "generate", user);
    if (!h.ok()) return h.status();
    *resp = *h;
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RegenerateHashKey(grpc::ServerContext* ctx,
                                                 const adminpb::RegenerateHashKeyRequest* req,
                                                 adminpb::HashKey* resp) {
  return Run("RegenerateHashKey", ctx, false, [&](const std::string& user) -> absl::Status {
    if (!req->confirm()) {
      return absl::FailedPreconditionError(
          absl::StrCat("confirm: must be set to regenerate the hash key: ", kHashWarning));
    }
    absl::Status pw =
        auth_.VerifyPassword(user, req->current_password(), LoginSourceKey(ctx->peer()));
    if (!pw.ok()) return pw;
    absl::StatusOr<adminpb::HashKey> h =
        StoreHash(core::RandomHex(rng_, 16), false, "regenerate", user);
    if (!h.ok()) return h.status();
    *resp = *h;
    resp->set_warning(kHashWarning);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ImportHashKey(grpc::ServerContext* ctx,
                                             const adminpb::ImportHashKeyRequest* req,
                                             adminpb::HashKey* resp) {
  return Run("ImportHashKey", ctx, false, [&](const std::string& user) -> absl::Status {
    std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(req->key()));
    if (!IsHex32(key)) {
      return absl::InvalidArgumentError("key: must be 32 hex digits (128 bits)");
    }
    absl::StatusOr<std::optional<std::string>> cur = store_.hash().Get();
    if (!cur.ok()) return cur.status();
    const bool replaces = cur->has_value();
    if (replaces) {
      if (!req->confirm()) {
        return absl::FailedPreconditionError(
            absl::StrCat("confirm: must be set to replace the existing hash key: ", kHashWarning));
      }
      absl::Status pw =
          auth_.VerifyPassword(user, req->current_password(), LoginSourceKey(ctx->peer()));
      if (!pw.ok()) return pw;
    }
    absl::StatusOr<adminpb::HashKey> h = StoreHash(key, false, "import", user);
    if (!h.ok()) return h.status();
    *resp = *h;
    if (replaces) resp->set_warning(kHashWarning);
    return absl::OkStatus();
  });
}

}  // namespace rwg::control
