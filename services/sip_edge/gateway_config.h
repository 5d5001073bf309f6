// The part of the gateway configuration (R-CFG, written by control in rwg:config) that the
// SIP edge needs, re-read every few seconds so that changes apply without a restart.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "services/core/redis.h"

namespace rwg::sip_edge {

struct GatewayView {
  std::string public_name = "rwg.example.com";
  std::string icp_host;
  uint32_t icp_port = 5060;
  std::string icp_transport = "tcp";       // tcp or tls, from the ICP's SIP transports
  std::vector<std::string> icp_addresses;  // icp_host resolved
  uint32_t licences = 0;
};

// Parses rwg:config JSON; resolves the ICP host.
absl::StatusOr<GatewayView> ParseGatewayView(const std::string& json);

class GatewayConfigWatcher {
 public:
  explicit GatewayConfigWatcher(core::RedisClient& redis) : redis_(redis) {}
  ~GatewayConfigWatcher() { Stop(); }
  // Reads once (error when Redis or the config is unavailable), then every `period`.
  absl::Status Start(std::chrono::milliseconds period);
  void Stop();
  std::shared_ptr<const GatewayView> Get() const;

 private:
  absl::Status Refresh();
  core::RedisClient& redis_;
  mutable std::mutex mu_;
  std::shared_ptr<const GatewayView> view_ = std::make_shared<GatewayView>();
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rwg::sip_edge
