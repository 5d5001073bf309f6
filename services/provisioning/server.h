// The provisioning HTTPS server (R-PROV): phones fetch `/<hash>/ftp_67xxi/<file>` from the
// file store over TLS 1.2+ with HTTP/1.1 keep-alive, served by epoll loops (one per thread,
// OpenSSL on each connection, Beast's HTTP parser); only the XML proxy's connections to the
// iPBX use Asio. A wrong hash gets the same plain 404 whatever it is, and its source is
// counted; a source over the threshold is banned (403 on open connections, new connections
// closed at once). One access log line per request, the hash redacted.
#pragma once

#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/provisioning/state.h"

namespace rwg::provisioning {

struct ServerOptions {
  std::string listen = "0.0.0.0:4445";
  std::string cert_file;  // PEM chain
  std::string key_file;   // PEM private key
  std::string store_dir;  // the files phones fetch (a volume on Kubernetes)
  int threads = 2;
  int max_connections = 20000;  // open HTTPS connections; more are closed at once
  // Open connections one source (an IPv4 address, an IPv6 /64) may hold; more are closed at
  // once.
  int max_connections_per_source = 32;
  int ban_misses = 20;  // hash misses from one source within ban_window bans it
  // Requests under the right hash for different MAC files the store does not have (MAC
  // enumeration) from one source within ban_window that ban it.
  int ban_mac_misses = 50;
  absl::Duration ban_window = absl::Seconds(60);
  absl::Duration ban_length = absl::Minutes(10);
  // A request's header must be complete within header_timeout of its first byte (of the
  // connection's start for the first request, TLS handshake included), however the bytes
  // trickle in.
  absl::Duration header_timeout = absl::Seconds(10);
  // A keep-alive connection waiting for its next request, or a response the client does not
  // read, is closed after idle_timeout.
  absl::Duration idle_timeout = absl::Seconds(30);
  bool access_log = true;
  // XML features under the hash are proxied to the iPBX's XML port over TLS; its answer must
  // come within xml_timeout (else 504; no connection: 502). The iPBX's certificate and host
  // name are verified: against xml_ca_file when given, else the system's CA store; a
  // certificate that does not verify gets 502. xml_insecure_skip_verify turns verification
  // off (the iPBX can then be impersonated).
  absl::Duration xml_timeout = absl::Seconds(5);
  std::string xml_ca_file;
  bool xml_insecure_skip_verify = false;
};

class ProvisioningServer {
 public:
  ProvisioningServer(ServerOptions options, SharedState& state, core::Clock& clock,
                     prometheus::Registry& registry);
  ~ProvisioningServer();
  // Loads the certificate, opens the store and listens; serving threads start.
  absl::Status Start();
  // Stops accepting, closes connections, joins the threads.
  void Stop();
  int port() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwg::provisioning
