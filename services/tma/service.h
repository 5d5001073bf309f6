// rwg.tma.v1.TmaService (proto/rwg/tma/v1/tma.proto, docs/tma.md): download servers,
// deployments, events and the inventory, for admins (bearer token of the admin API).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "rwg/tma/v1/tma.grpc.pb.h"
#include "services/control/admin_rpc.h"
#include "services/control/auth.h"
#include "services/control/store.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/devices.h"
#include "services/core/random.h"
#include "services/core/redis.h"
#include "services/tma/runner.h"
#include "services/tma/rw_csv.h"
#include "services/tma/store.h"

namespace rwg::tma {

struct ServiceLimits {
  uint64_t max_file_bytes = 128ull << 20;   // one extra file (firmware)
  uint64_t max_total_bytes = 512ull << 20;  // a whole deployment request
  size_t max_extra_files = 32;
  CsvLimits csv;
};

class TmaServiceImpl final : public pb::TmaService::Service {
 public:
  TmaServiceImpl(TmaStore& store, Runner& runner, TargetFactory targets,
                 control::RedisControlStore& control, control::Authenticator& auth,
                 core::RedisClient& redis, const core::SecretBox& box, core::Clock& clock,
                 core::Random& rng, prometheus::Registry& registry, ServiceLimits limits = {});

  grpc::Status AddServer(grpc::ServerContext*, const pb::AddServerRequest*, pb::Server*) override;
  grpc::Status UpdateServer(grpc::ServerContext*, const pb::UpdateServerRequest*,
                            pb::Server*) override;
  grpc::Status DeleteServer(grpc::ServerContext*, const pb::DeleteServerRequest*,
                            pb::DeleteServerResponse*) override;
  grpc::Status ListServers(grpc::ServerContext*, const pb::ListServersRequest*,
                           pb::ListServersResponse*) override;
  grpc::Status ExportCsv(grpc::ServerContext*, const pb::ExportCsvRequest*,
                         pb::ExportCsvResponse*) override;
  grpc::Status CheckCsv(grpc::ServerContext*, const pb::CheckCsvRequest*,
                        pb::CheckCsvResponse*) override;
  grpc::Status CreateDeployment(grpc::ServerContext*,
                                grpc::ServerReader<pb::CreateDeploymentRequest>*,
                                pb::Deployment*) override;
  grpc::Status GetDeployment(grpc::ServerContext*, const pb::GetDeploymentRequest*,
                             pb::Deployment*) override;
  grpc::Status ListDeployments(grpc::ServerContext*, const pb::ListDeploymentsRequest*,
                               pb::ListDeploymentsResponse*) override;
  grpc::Status WatchDeployment(grpc::ServerContext*, const pb::WatchDeploymentRequest*,
                               grpc::ServerWriter<pb::Deployment>*) override;
  grpc::Status ResumeDeployment(grpc::ServerContext*, const pb::ResumeDeploymentRequest*,
                                pb::Deployment*) override;
  grpc::Status ListEvents(grpc::ServerContext*, const pb::ListEventsRequest*,
                          pb::ListEventsResponse*) override;
  grpc::Status ListInventory(grpc::ServerContext*, const pb::ListInventoryRequest*,
                             pb::ListInventoryResponse*) override;
  grpc::Status DeleteInventory(grpc::ServerContext*, const pb::DeleteInventoryRequest*,
                               pb::DeleteInventoryResponse*) override;

  // Watches end when this is set (SIGTERM).
  void Shutdown() { shutting_down_.store(true); }
  // Inventory by state, for the gauge (a background refresh calls it).
  void RefreshInventoryGauge();

 private:
  // The gateway's defaults for the system data and the phone files' fixed parameters.
  struct Gateway {
    SystemData system;
    PhoneFileOptions file;
  };
  absl::StatusOr<Gateway> LoadGateway();
  // The declared devices, set-side passwords opened (DATA_LOSS naming the device when one
  // does not open).
  absl::StatusOr<std::vector<DeviceFacts>> Devices();
  absl::StatusOr<std::vector<pb::InventoryEntry>> Inventory(const pb::InventoryFilter& filter);

  TmaStore& store_;
  Runner& runner_;
  TargetFactory targets_;
  control::RedisControlStore& control_;
  core::RedisClient& redis_;
  const core::SecretBox& box_;
  core::DeviceDirectory directory_;  // the devices a CSV names (no cache: read when asked)
  core::Clock& clock_;
  core::Random& rng_;
  ServiceLimits limits_;
  std::atomic<bool> shutting_down_{false};

  control::AdminRpc rpc_;
  prometheus::Family<prometheus::Gauge>& inventory_;
};

// Checks a server as the API takes it; the error names the field. `creating`: all fields.
absl::Status ValidateServer(const pb::Server& s);

}  // namespace rwg::tma
