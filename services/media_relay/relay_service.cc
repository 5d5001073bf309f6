#include "services/media_relay/relay_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/crypto.h"
#include "services/core/status.h"
#include "services/media_relay/worker.h"

namespace rwg::media_relay {
namespace {

// Nothing thrown leaves a handler: it is answered INTERNAL, logged and counted (with the
// packet path's errors), and the relay goes on.
template <typename F>
grpc::Status Guarded(const char* rpc, F&& body) noexcept {
  const char* what = "unknown exception";
  try {
    return body();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  CountHandlerError(rpc, what);
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      absl::StrCat("internal error in ", rpc, "; see the media relay's log"));
}

}  // namespace

grpc::Status RelayServiceImpl::Authorize(grpc::ServerContext* ctx) const {
  return core::CheckBearerToken(*ctx, token_);
}

grpc::Status RelayServiceImpl::Allocate(grpc::ServerContext* ctx,
                                        const relaypb::AllocateRequest* req,
                                        relaypb::Session* out) {
  return Guarded("Allocate", [&]() -> grpc::Status {
    if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
    // A caller that gave up (its deadline passed while the request queued) gets nothing
    // allocated: under overload the relay does not spend itself on answers nobody reads.
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "caller gave up");
    absl::StatusOr<relaypb::Session> s = relay_.Allocate(*req);
    if (!s.ok()) return core::ToGrpcStatus(s.status());
    if (ctx->IsCancelled()) {
      // Nobody will learn this session's id, so nobody would delete it: it goes at once.
      // Its only failure, NOT_FOUND, means that it is gone already.
      (void)relay_.Delete(s->id());
      return grpc::Status(grpc::StatusCode::CANCELLED, "caller gave up");
    }
    *out = *std::move(s);
    return grpc::Status::OK;
  });
}

grpc::Status RelayServiceImpl::Update(grpc::ServerContext* ctx, const relaypb::UpdateRequest* req,
                                      relaypb::Session* out) {
  return Guarded("Update", [&]() -> grpc::Status {
    if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
    absl::StatusOr<relaypb::Session> s = relay_.Update(*req);
    if (!s.ok()) return core::ToGrpcStatus(s.status());
    *out = *std::move(s);
    return grpc::Status::OK;
  });
}

grpc::Status RelayServiceImpl::Delete(grpc::ServerContext* ctx, const relaypb::DeleteRequest* req,
                                      relaypb::DeleteResponse* out) {
  return Guarded("Delete", [&]() -> grpc::Status {
    if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
    absl::StatusOr<relaypb::Session> s = relay_.Delete(req->id());
    if (!s.ok()) return core::ToGrpcStatus(s.status());
    *out->mutable_final() = *std::move(s);
    return grpc::Status::OK;
  });
}

grpc::Status RelayServiceImpl::Get(grpc::ServerContext* ctx, const relaypb::GetRequest* req,
                                   relaypb::Session* out) {
  return Guarded("Get", [&]() -> grpc::Status {
    if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
    absl::StatusOr<relaypb::Session> s = relay_.Get(req->id());
    if (!s.ok()) return core::ToGrpcStatus(s.status());
    *out = *std::move(s);
    return grpc::Status::OK;
  });
}

grpc::Status RelayServiceImpl::List(grpc::ServerContext* ctx, const relaypb::ListRequest*,
                                    relaypb::ListResponse* out) {
  return Guarded("List", [&]() -> grpc::Status {
    if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
    *out = relay_.List();
    return grpc::Status::OK;
  });
}

grpc::Status RelayServiceImpl::Drain(grpc::ServerContext* ctx, const relaypb::DrainRequest*,
                                     relaypb::DrainResponse* out) {
  return Guarded("Drain", [&]() -> grpc::Status {
    if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
    out->set_sessions(relay_.Drain());
    return grpc::Status::OK;
  });
}

}  // namespace rwg::media_relay
