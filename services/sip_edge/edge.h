// The SIP edge (R-SIP): phones register over TLS/TCP with their set-side credentials; rwg
// registers them upstream to the iPBX with their ICP-side credentials and relays the iPBX's
// out-of-dialog requests (OPTIONS, NOTIFY, MESSAGE, INFO) to the phone over the phone's own
// connection. Calls between phones and the iPBX, with their media through the media relays,
// are calls.h's. Runs sofia-sip's transaction engine on one thread of its own.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/devices.h"
#include "services/core/random.h"
#include "services/core/registrations.h"
#include "services/sip_edge/digest.h"
#include "services/sip_edge/gateway_config.h"
#include "services/sip_edge/protection.h"

namespace rwg::sip_edge {

struct EdgeOptions {
  std::string tls_listen = "0.0.0.0:5061";  // set side; empty: off
  std::string tcp_listen = "0.0.0.0:5060";  // set side; empty: off
  std::string udp_listen;                   // set side; empty: off (the default)
  // Host put in the Via of rwg's requests to phones (sent-by), in place of the address the
  // set-side listeners bind: the public name or address (behind NAT, in a pod). Empty: theirs.
  std::string set_advertise_host;
  std::string icp_listen = "0.0.0.0:5070";  // TCP listener the iPBX sends requests to
  std::string icp_advertise;                // host:port in the Contact sent to the iPBX
  std::string tls_cert_dir;                 // holds agent.pem (key + chain) and cafile.pem
  std::string instance = "sip-edge-0";
  std::vector<DigestAlgorithm> algorithms = {DigestAlgorithm::kMd5, DigestAlgorithm::kSha256};
  // Phones whose lower-cased User-Agent contains one of these (lower case) are challenged
  // with MD5 alone, when MD5 is among `algorithms`: their SIP stack abandons the registration
  // when any challenge names another algorithm.
  std::vector<std::string> md5_only_user_agents;
  int min_expires = 60;
  int max_expires = 3600;
  int default_expires = 600;
  int upstream_timeout_ms = 8000;
  // Registration time asked of the iPBX; 0: the phone's. rwg refreshes the iPBX registration
  // itself before it runs out, for as long as the phone's binding lasts.
  int upstream_expires = 0;
  std::string nonce_secret;  // random when empty
  // Authenticates requests relayed between instances (all instances share it).
  std::string forward_key;
  ProtectionOptions protection;
  // A phone's TCP/TLS connection silent this long gets TCP keep-alive probes; one that
  // answers none (or leaves data unacknowledged as long) is closed, and its phone marked
  // unreachable. 0: off.
  int tcp_keepalive_seconds = 60;
  // TCP and TLS connections one source (IPv4 address, IPv6 /64) may hold on the set-side
  // listeners; beyond, a new connection is closed at once. 0: no limit.
  int max_connections_per_source = 32;
  // Calls: the media relays' API token and CA (empty CA: plaintext gRPC), and the SRTP suite
  // offered to phones.
  std::string relay_token;
  std::string relay_ca_file;      // empty: the system's trusted CAs
  bool relay_plaintext = false;   // development only
  std::string icp_ca_file;        // the iPBX's TLS CAs (empty: the system's)
  bool icp_tls_insecure = false;  // no verification of the iPBX's certificate (lab only)
  std::string set_srtp_suite = "AES_CM_128_HMAC_SHA1_80";
  int max_calls_per_device = 8;
  int max_subscriptions_per_device = 200;
};

struct EdgeMetrics;

class Edge {
 public:
  Edge(EdgeOptions options, core::RedisClient& redis, core::DeviceDirectory& devices,
       GatewayConfigWatcher& config, core::Clock& clock, core::Random& rng,
       prometheus::Registry& registry);
  ~Edge();

  // Starts the SIP thread and its listeners; returns once they listen (or failed to).
  absl::Status Start();
  void Stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwg::sip_edge
