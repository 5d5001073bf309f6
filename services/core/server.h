// Bootstrap shared by every rwg gRPC server: TLS or plaintext listener, grpc.health.v1,
// server reflection, Prometheus /metrics, port file for tests, SIGTERM/SIGINT drain.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/core/options.h"

namespace rwg::core {
class CertificateWatcher;
class GrpcIdentityFiles;
}  // namespace rwg::core

namespace rwg::core {

struct ServerFlags {
  std::string grpc_listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  std::string tls_cert_file;  // PEM; with tls-key-file, the gRPC port speaks TLS 1.2+
  std::string tls_key_file;
  std::string port_file;  // written as {"grpc":N,"metrics":M} once listening
  double drain_seconds = 10;
  // Threads handling gRPC requests at once (sip-edge and control make a few hundred requests per
  // second, each taking milliseconds; a watched deployment holds one for its length).
  int grpc_max_threads = 256;
  std::string log_level = "info";

  void Register(Options& options);
};

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it starts later, so
// that ServiceHost::WaitForTermination can take them, and ignores SIGPIPE. Call first thing in
// main().
void BlockTerminationSignals();

// Waits up to `wait` for SIGTERM/SIGINT (blocked by BlockTerminationSignals); true when one
// came. For loops that wait for a dependency before the service starts.
bool TerminationRequested(absl::Duration wait);

class ServiceHost {
 public:
  ServiceHost(std::string service, ServerFlags flags);
  ~ServiceHost();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // Starts the gRPC server with `services` plus health and reflection, and /metrics.
  absl::Status Start(const std::vector<grpc::Service*>& services);
  void SetServing(bool serving);
  // Until termination, sets the health status from `healthy()` once a second.
  void WatchHealth(std::function<bool()> healthy);
  // Waits for SIGTERM/SIGINT, then stops accepting and drains in-flight calls. SIGHUP meanwhile
  // makes every certificate of the process be read again (ReloadAllCertificates).
  // `before_drain` runs first: ends calls that would otherwise last the whole drain (streams
  // that follow something until it ends).
  void WaitForTermination(const std::function<void()>& before_drain = {});
  int grpc_port() const { return grpc_port_; }

 private:
  std::string service_;
  ServerFlags flags_;
  std::shared_ptr<prometheus::Registry> registry_;
  // The gRPC port's certificate (stopped after the server, before the registry).
  std::unique_ptr<GrpcIdentityFiles> tls_files_;
  std::unique_ptr<CertificateWatcher> tls_watcher_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  std::thread health_;
  std::atomic<bool> stop_health_{false};
  void StopHealth();
};

// Reads a whole file; NotFound naming the path when it cannot.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// A PEM certificate chain and its private key, each read from the file an option names.
struct TlsMaterial {
  std::string cert_pem;
  std::string key_pem;
};
absl::StatusOr<TlsMaterial> LoadTlsMaterial(absl::string_view cert_option,
                                            const std::string& cert_file,
                                            absl::string_view key_option,
                                            const std::string& key_file);

}  // namespace rwg::core
