// rwg.relay.v1.RelayService over the Relay, with bearer-token authentication.
#pragma once

#include <string>

#include "rwg/relay/v1/relay.grpc.pb.h"
#include "services/media_relay/relay.h"

namespace rwg::media_relay {

class RelayServiceImpl final : public relaypb::RelayService::Service {
 public:
  // `token`: every call must carry `authorization: Bearer <token>`.
  RelayServiceImpl(Relay& relay, std::string token) : relay_(relay), token_(std::move(token)) {}

  grpc::Status Allocate(grpc::ServerContext* ctx, const relaypb::AllocateRequest* req,
                        relaypb::Session* out) override;
  grpc::Status Update(grpc::ServerContext* ctx, const relaypb::UpdateRequest* req,
                      relaypb::Session* out) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const relaypb::DeleteRequest* req,
                      relaypb::DeleteResponse* out) override;
  grpc::Status Get(grpc::ServerContext* ctx, const relaypb::GetRequest* req,
                   relaypb::Session* out) override;
  grpc::Status List(grpc::ServerContext* ctx, const relaypb::ListRequest* req,
                    relaypb::ListResponse* out) override;
  grpc::Status Drain(grpc::ServerContext* ctx, const relaypb::DrainRequest* req,
                     relaypb::DrainResponse* out) override;

 private:
  grpc::Status Authorize(grpc::ServerContext* ctx) const;

  Relay& relay_;
  const std::string token_;
};

}  // namespace rwg::media_relay
