// The ott proxy (R-OTT, docs/ott.md): HTTPS for the domains in the list, each with its own
// certificate chosen by SNI; requests checked against the domain's path lists (rwg's login
// first for admin paths) and forwarded to the domain's application with the X-Forwarded-*
// and Forwarded headers, bodies streamed, WebSocket upgrades spliced, connections to the
// application kept alive. Serving threads each run their own event loop and listening socket
// (SO_REUSEPORT); logins and session checks, which wait on Redis or scrypt, run on a small
// pool.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "prometheus/registry.h"
#include "services/core/clock.h"
#include "services/ott/state.h"
#include "services/ott/store.h"

namespace rwg::ott {

struct ProxyOptions {
  std::string listen = "0.0.0.0:8443";
  int threads = 2;
  int blocking_threads = 4;  // logins and session checks
  int max_connections = 20000;
  int max_connections_per_source = 64;
  absl::Duration header_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration backend_connect_timeout = absl::Seconds(5);
  absl::Duration backend_timeout = absl::Seconds(30);
  // A WebSocket with nothing crossing it either way this long is closed.
  absl::Duration websocket_idle_timeout = absl::Hours(1);
  size_t max_header_bytes = size_t{16} * 1024;
  uint64_t max_request_body_bytes = uint64_t{64} << 20;
  // Idle connections kept to one application per serving thread.
  size_t max_idle_backend_connections = 32;
  absl::Duration backend_idle_timeout = absl::Seconds(30);
  LoginPolicy login;
  bool access_log = true;
  // After SIGTERM, requests in flight get this long to finish.
  absl::Duration drain = absl::Seconds(10);
};

// The TLS settings of rwg's HTTPS listeners: TLS 1.2 and 1.3, OpenSSL's default ciphers,
// server preference, no session cache (tickets), read-ahead.
void ConfigureServerTls(SSL_CTX* ctx);

class Proxy {
 public:
  Proxy(ProxyOptions options, OttState& state, OttStore& store, core::Clock& clock,
        prometheus::Registry& registry);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  absl::Status Start();
  // Stops accepting, lets requests in flight finish (at most options.drain), then closes
  // everything and joins the threads.
  void Stop();
  int port() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwg::ott
