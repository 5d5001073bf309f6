// Conversions between absl::Status and grpc::Status.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace rwg::core {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// The API token check of the services' gRPC APIs: the call's metadata must carry
// `authorization: Bearer <token>` (compared in constant time); UNAUTHENTICATED otherwise.
grpc::Status CheckBearerToken(const grpc::ServerContext& ctx, const std::string& token);

}  // namespace rwg::core
