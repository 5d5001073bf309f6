// The frame of an admin API call of a service beside control (tma, ott): the bearer token of
// the `authorization` metadata checked by control's Authenticator, the body run so that nothing
// it throws escapes (RunCatching), every call counted by method and code, failures and changes
// logged on one line.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "services/control/auth.h"

namespace rwg::control {

class AdminRpc {
 public:
  // Metrics <prefix>_rpcs_total{method,code} and <prefix>_rpc_exceptions_total{method};
  // `api` names the API in their help ("Deployment API").
  AdminRpc(Authenticator& auth, prometheus::Registry& registry, const std::string& prefix,
           const std::string& api);

  // Runs `fn` for an authenticated admin. Reading methods (Get, List, Watch, Export, Check...)
  // are logged only when they fail; a failure's log line holds the first line of its message.
  grpc::Status Run(const char* method, grpc::ServerContext* ctx,
                   const std::function<absl::Status()>& fn);

 private:
  Authenticator& auth_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Counter>& exceptions_;
};

}  // namespace rwg::control
