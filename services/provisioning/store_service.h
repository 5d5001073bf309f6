// rwg.provisioning.v1.FileStore (R-PROV): puts, gets, lists, stats and deletes the files of the
// store that the HTTPS server serves. A put is written to a temporary file of the store
// (".put-<random>", never served), checked against its header, flushed to disk and renamed
// into place: phones see the old file or the new one, never part of one.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <string>

#include "rwg/provisioning/v1/store.grpc.pb.h"
#include "services/core/random.h"

namespace rwg::provisioning {

namespace storepb = ::rwg::provisioning::v1;

class StoreServiceImpl final : public storepb::FileStore::Service {
 public:
  // `store_dir` must exist; `token` is what callers present as a Bearer token.
  StoreServiceImpl(std::string store_dir, std::string token, core::Random& rng,
                   uint64_t max_file = 1ull << 30)
      : dir_(std::move(store_dir)), token_(std::move(token)), rng_(rng), max_file_(max_file) {}

  grpc::Status Put(grpc::ServerContext* ctx, grpc::ServerReader<storepb::PutRequest>* reader,
                   storepb::FileInfo* out) override;
  grpc::Status Stat(grpc::ServerContext* ctx, const storepb::StatRequest* req,
                    storepb::FileInfo* out) override;
  grpc::Status List(grpc::ServerContext* ctx, const storepb::ListRequest* req,
                    storepb::ListResponse* out) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const storepb::DeleteRequest* req,
                      storepb::DeleteResponse* out) override;
  grpc::Status Get(grpc::ServerContext* ctx, const storepb::GetRequest* req,
                   grpc::ServerWriter<storepb::GetResponse>* writer) override;

 private:
  grpc::Status Authorize(grpc::ServerContext* ctx) const;
  const std::string dir_;
  const std::string token_;
  core::Random& rng_;
  const uint64_t max_file_;
};

}  // namespace rwg::provisioning
