#include "services/control/admin_rpc.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/control/rpc_guard.h"
#include "services/core/log.h"
#include "services/core/status.h"

namespace rwg::control {

namespace {

bool IsReading(absl::string_view method) {
  for (const char* prefix : {"Get", "List", "Watch", "Export", "Check"}) {
    if (absl::StartsWith(method, prefix)) return true;
  }
  return false;
}

}  // namespace

AdminRpc::AdminRpc(Authenticator& auth, prometheus::Registry& registry, const std::string& prefix,
                   const std::string& api)
    : auth_(auth),
      rpcs_(prometheus::BuildCounter()
                .Name(absl::StrCat(prefix, "_rpcs_total"))
                .Help(absl::StrCat(api, " calls by method and gRPC status code"))
                .Register(registry)),
      exceptions_(prometheus::BuildCounter()
                      .Name(absl::StrCat(prefix, "_rpc_exceptions_total"))
                      .Help(absl::StrCat(api, " calls whose handler threw (answered INTERNAL)"))
                      .Register(registry)) {}

grpc::Status AdminRpc::Run(const char* method, grpc::ServerContext* ctx,
                           const std::function<absl::Status()>& fn) {
  std::string user;
  auto count_throw = [&] { exceptions_.Add({{"method", method}}).Increment(); };
  absl::Status st = RunCatching(
      method,
      [&]() -> absl::Status {
        auto md = ctx->client_metadata().find("authorization");
        absl::string_view header;
        if (md != ctx->client_metadata().end()) {
          header = absl::string_view(md->second.data(), md->second.size());
        }
        absl::StatusOr<std::string> who = auth_.Check(header);
        if (!who.ok()) return who.status();
        user = *who;
        return fn();
      },
      count_throw);
  // Only the accounting below runs here; what it could throw is counted by RunCatching itself.
  (void)RunCatching(
      method,
      [&]() -> absl::Status {
        const std::string code = absl::StatusCodeToString(st.code());
        rpcs_.Add({{"method", method}, {"code", code}}).Increment();
        if (!st.ok()) {
          // The first line only: a refused CSV lists its rows for the caller, not for the log.
          std::string error(st.message().substr(0, st.message().find('\n')));
          core::log::Info("rpc failed", {{"method", method},
                                         {"user", user},
                                         {"peer", ctx->peer()},
                                         {"code", code},
                                         {"error", error}});
        } else if (!IsReading(method)) {
          core::log::Info("rpc", {{"method", method}, {"user", user}, {"peer", ctx->peer()}});
        }
        return absl::OkStatus();
      },
      count_throw);
  return core::ToGrpcStatus(st);
}

}  // namespace rwg::control
