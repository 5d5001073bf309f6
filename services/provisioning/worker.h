// The provisioning server's serving threads: each a Worker with its own listening socket
// (SO_REUSEPORT: the kernel spreads connections over the threads) and epoll set, TLS by
// OpenSSL directly on each connection's socket, Beast's HTTP parser fed with what SSL_read
// gives, HTTP/1.1 keep-alive, deadlines for handshakes, headers and idle connections, and
// admission (bans, the connection limits). Every connection belongs to one thread for its
// life. A parsed request goes to the RequestHandler, or through the XmlProxy.
#pragma once

#include <openssl/ssl.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>

#include "absl/status/statusor.h"
#include "services/core/clock.h"
#include "services/core/connections_per_source.h"
#include "services/provisioning/answer.h"
#include "services/provisioning/request_handler.h"
#include "services/provisioning/server.h"
#include "services/provisioning/state.h"
#include "services/provisioning/xml_proxy.h"

namespace rwg::provisioning {

// The connection metrics every series of which exists from the start, at 0.
class ConnectionMetrics {
 public:
  explicit ConnectionMetrics(prometheus::Registry& registry);
  // reason: banned, limit, source_limit.
  void Refused(const char* reason) { refused_.Add({{"reason", reason}}).Increment(); }
  // phase: handshake, header, idle, proxy.
  void Timeout(const char* phase) { timeouts_.Add({{"phase", phase}}).Increment(); }
  prometheus::Gauge& connections() { return connections_; }

 private:
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Family<prometheus::Counter>& timeouts_;
  prometheus::Gauge& connections_;
};

// What the serving threads share, owned by the server and alive while they run.
struct WorkerContext {
  const ServerOptions& options;
  SSL_CTX* tls;  // the server's certificate and TLS settings
  SharedState& state;
  core::Clock& clock;
  RequestHandler& handler;
  XmlProxy& proxy;
  InternalErrors& errors;
  core::ConnectionsPerSource& per_source;
  ConnectionMetrics& metrics;
};

class Worker {
 public:
  // Closes the connections left, and the listening socket.
  virtual ~Worker() = default;
  // Serves until Stop; called on the worker's own thread.
  virtual void Run() = 0;
  // From any thread: Run returns soon after.
  virtual void Stop() = 0;
};

// A worker on the listening socket `listen_fd` (non-blocking; the worker owns it, even on
// failure).
absl::StatusOr<std::unique_ptr<Worker>> NewWorker(WorkerContext& ctx, int listen_fd);

}  // namespace rwg::provisioning
