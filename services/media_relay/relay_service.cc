#include "services/media_relay/relay_service.h"

#include "absl/strings/match.h"
#include "services/core/crypto.h"
#include "services/core/status.h"

namespace rwg::media_relay {

grpc::Status RelayServiceImpl::Authorize(grpc::ServerContext* ctx) const {
  return core::CheckBearerToken(*ctx, token_);
}

grpc::Status RelayServiceImpl::Allocate(grpc::ServerContext* ctx,
                                        const relaypb::AllocateRequest* req,
                                        relaypb::Session* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  // A caller that gave up (its deadline passed while the request queued) gets nothing
  // allocated: under overload the relay does not spend itself on answers nobody reads.
  if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "caller gave up");
  absl::StatusOr<relaypb::Session> s = relay_.Allocate(*req);
  if (!s.ok()) return core::ToGrpcStatus(s.status());
  if (ctx->IsCancelled()) {
    // Nobody will learn this session's id, so nobody would delete it: it goes at once.
    (void)relay_.Delete(s->id());
    return grpc::Status(grpc::StatusCode::CANCELLED, "caller gave up");
  }
  *out = *std::move(s);
  return grpc::Status::OK;
}

grpc::Status RelayServiceImpl::Update(grpc::ServerContext* ctx, const relaypb::UpdateRequest* req,
                                      relaypb::Session* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  absl::StatusOr<relaypb::Session> s = relay_.Update(*req);
  if (!s.ok()) return core::ToGrpcStatus(s.status());
  *out = *std::move(s);
  return grpc::Status::OK;
}

grpc::Status RelayServiceImpl::Delete(grpc::ServerContext* ctx, const relaypb::DeleteRequest* req,
                                      relaypb::DeleteResponse* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  absl::StatusOr<relaypb::Session> s = relay_.Delete(req->id());
  if (!s.ok()) return core::ToGrpcStatus(s.status());
  *out->mutable_final() = *std::move(s);
  return grpc::Status::OK;
}

grpc::Status RelayServiceImpl::Get(grpc::ServerContext* ctx, const relaypb::GetRequest* req,
                                   relaypb::Session* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  absl::StatusOr<relaypb::Session> s = relay_.Get(req->id());
  if (!s.ok()) return core::ToGrpcStatus(s.status());
  *out = *std::move(s);
  return grpc::Status::OK;
}

grpc::Status RelayServiceImpl::List(grpc::ServerContext* ctx, const relaypb::ListRequest*,
                                    relaypb::ListResponse* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  *out = relay_.List();
  return grpc::Status::OK;
}

grpc::Status RelayServiceImpl::Drain(grpc::ServerContext* ctx, const relaypb::DrainRequest*,
                                     relaypb::DrainResponse* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  out->set_sessions(relay_.Drain());
  return grpc::Status::OK;
}

}  // namespace rwg::media_relay
