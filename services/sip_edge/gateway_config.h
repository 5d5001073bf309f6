// The part of the gateway configuration (R-CFG, written by control in rwg:config) that the
// SIP edge needs, re-read every few seconds so that changes apply without a restart.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/core/redis.h"

namespace rwg::sip_edge {

struct GatewayView {
  std::string public_name = "rwg.example.com";
  std::string icp_host;
  uint32_t icp_port = 5060;
  std::string icp_transport = "tcp";       // tcp or tls, from the ICP's SIP transports
  std::vector<std::string> icp_addresses;  // icp_host resolved
  uint32_t licences = 0;
  // Set-side SIP exposure (DISABLED, PRIVATE, PUBLIC) and ports.
  std::string tls_exposure = "PUBLIC";
  std::string tcp_exposure = "PUBLIC";
  std::string udp_exposure = "DISABLED";
  uint32_t tls_port = 5061;
  uint32_t tcp_port = 5060;
  uint32_t udp_port = 5060;
  // Media (R-CFG network profile and SIP settings): the addresses written in SDP in place of
  // the relay's own (empty: the relay's), what each side may send (inbound: SRTP_ONLY,
  // SRTP_OR_RTP, RTP_ONLY) and what rwg offers it (outbound: SRTP_ONLY, AVP_CRYPTO,
  // RTP_ONLY), and the SRTP suite rwg offers (empty: the edge's --srtp-suite).
  std::string rtp_set_side_address;
  std::string rtp_icp_side_address;
  std::string set_side_inbound = "SRTP_ONLY";
  std::string set_side_outbound = "SRTP_ONLY";
  std::string icp_side_inbound = "SRTP_OR_RTP";
  std::string icp_side_outbound = "AVP_CRYPTO";
  std::string srtp_suite;
};

enum class ListenerKind { kTls, kTcp, kUdp };

// A listener option's value: "config" takes the address from the gateway configuration
// ("0.0.0.0:<port>" when the transport is exposed, "" when it is DISABLED); anything else is
// used as it is ("" turns the listener off).
std::string ResolveListen(const std::string& option, const GatewayView& view, ListenerKind kind);

// The addresses of a host name (numeric, as text; empty when it does not resolve).
using HostResolver = std::function<std::vector<std::string>(const std::string& host)>;
// getaddrinfo.
std::vector<std::string> ResolveHost(const std::string& host);

// Parses rwg:config JSON (written by control, read again by every instance every few seconds)
// and resolves the ICP host with `resolve`. Each value is checked as control checks it: a
// field of the wrong type, a port outside 1-65535, an unknown exposure or media mode, a name
// longer than 253 bytes is an error naming the field (DATA_LOSS), and the view in use stays.
absl::StatusOr<GatewayView> ParseGatewayView(const std::string& json,
                                             const HostResolver& resolve = ResolveHost);

class GatewayConfigWatcher {
 public:
  explicit GatewayConfigWatcher(core::RedisClient& redis) : redis_(redis) {}
  ~GatewayConfigWatcher() { Stop(); }
  // Reads once (error when Redis or the config is unavailable), then every `period`.
  absl::Status Start(std::chrono::milliseconds period);
  // OK when the last read succeeded.
  absl::Status last_status() const;
  void Stop();
  std::shared_ptr<const GatewayView> Get() const;

 private:
  absl::Status Refresh();
  core::RedisClient& redis_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const GatewayView> view_ ABSL_GUARDED_BY(mu_) = std::make_shared<GatewayView>();
  absl::Status last_ ABSL_GUARDED_BY(mu_) = absl::UnavailableError("not read yet");
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rwg::sip_edge
