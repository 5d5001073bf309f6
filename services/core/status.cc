#include "services/core/status.h"

#include "absl/strings/match.h"
#include "services/core/crypto.h"

namespace rwg::core {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

grpc::Status CheckBearerToken(const grpc::ServerContext& ctx, const std::string& token) {
  auto it = ctx.client_metadata().find("authorization");
  if (it == ctx.client_metadata().end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing authorization metadata");
  }
  const std::string value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, "Bearer ") || !ConstantTimeEquals(value.substr(7), token)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong API token");
  }
  return grpc::Status::OK;
}

}  // namespace rwg::core
