#include "services/core/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/support/server_interceptor.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "prometheus/gauge.h"
#include "services/core/cert_metrics.h"
#include "services/core/grpc_identity.h"
#include "services/core/log.h"
#include "services/core/tls_identity.h"

namespace rwg::core {

void ServerFlags::Register(Options& o) {
  o.Add("grpc-listen", grpc_listen, "gRPC listen address host:port (port 0 picks a free one)");
  o.Add("metrics-listen", metrics_listen, "Prometheus /metrics listen address host:port");
  o.Add("tls-cert-file", tls_cert_file, "PEM certificate chain for the gRPC port");
  o.Add("tls-key-file", tls_key_file, "PEM private key for the gRPC port");
  o.Add("port-file", port_file, "write the bound ports here as JSON once listening");
  o.Add("drain-seconds", drain_seconds, "time allowed for in-flight calls on SIGTERM");
  o.Add("grpc-max-threads", grpc_max_threads,
        "gRPC requests handled at once; one beyond is answered RESOURCE_EXHAUSTED")
      ->check(CLI::Range(8, 4096));
  o.Add("log-level", log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
}

void BlockTerminationSignals() {
  // A peer closing its connection must never end the process: writes then fail with EPIPE.
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);  // taken by WaitForTermination: read the certificates again
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool TerminationRequested(absl::Duration wait) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  timespec ts = absl::ToTimespec(wait);
  const int sig = sigtimedwait(&set, nullptr, &ts);
  if (sig == SIGTERM || sig == SIGINT) {
    log::Info("terminating before start", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    return true;
  }
  return false;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(absl::string_view cert_option,
                                            const std::string& cert_file,
                                            absl::string_view key_option,
                                            const std::string& key_file) {
  absl::StatusOr<std::string> cert = ReadFile(cert_file);
  if (!cert.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(cert_option, ": ", cert.status().message()));
  }
  absl::StatusOr<std::string> key = ReadFile(key_file);
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(key_option, ": ", key.status().message()));
  }
  return TlsMaterial{*std::move(cert), *std::move(key)};
}

namespace {

// Counts the gRPC requests being handled: gRPC makes one interceptor per request when it starts
// handling it and destroys it when the request is done.
class InFlight final : public grpc::experimental::Interceptor {
 public:
  explicit InFlight(prometheus::Gauge& gauge) : gauge_(gauge) { gauge_.Increment(); }
  ~InFlight() override { gauge_.Decrement(); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  prometheus::Gauge& gauge_;
};

class InFlightFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit InFlightFactory(prometheus::Gauge& gauge) : gauge_(gauge) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* /*info*/) override {
    return new InFlight(gauge_);  // owned and deleted by gRPC
  }

 private:
  prometheus::Gauge& gauge_;
};

}  // namespace

ServiceHost::ServiceHost(std::string service, ServerFlags flags)
    : service_(std::move(service)),
      flags_(std::move(flags)),
      registry_(std::make_shared<prometheus::Registry>()) {}

ServiceHost::~ServiceHost() { StopHealth(); }

absl::Status ServiceHost::Start(const std::vector<grpc::Service*>& services) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!flags_.tls_cert_file.empty() || !flags_.tls_key_file.empty()) {
    CertificateWatcher::Options o;
    o.endpoint = "grpc";
    o.cert_file = flags_.tls_cert_file;
    o.key_file = flags_.tls_key_file;
    absl::StatusOr<std::unique_ptr<CertificateWatcher>> watcher =
        CertificateWatcher::Create(std::move(o), *registry_);
    if (!watcher.ok()) return watcher.status();
    tls_watcher_ = *std::move(watcher);
    absl::StatusOr<std::unique_ptr<GrpcIdentityFiles>> files =
        GrpcIdentityFiles::Create(*tls_watcher_);
    if (!files.ok()) return files.status();
    tls_files_ = *std::move(files);
    creds = tls_files_->credentials();
  } else {
    log::Warn("gRPC port without TLS; set tls-cert-file and tls-key-file outside development");
    creds = grpc::InsecureServerCredentials();
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(flags_.grpc_listen, creds, &grpc_port_);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  // Request threads stay a second when idle (gRPC's default ends every thread beyond the
  // first after 10 ms without a request): under a steady stream of calls the server would
  // otherwise start and end threads all the time.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 16);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::CQ_TIMEOUT_MSEC, 1000);
  // A thread per request being handled, at most grpc-max-threads: gRPC's synchronous server
  // otherwise starts one for every request that arrives while the others are busy. Under more
  // calls than a media relay could handle it had started 32,000 (the kernel's limit of memory
  // maps) and then failed; a request beyond the bound is answered RESOURCE_EXHAUSTED at once.
  grpc::ResourceQuota quota(absl::StrCat("rwg-", service_));
  quota.SetMaxThreads(flags_.grpc_max_threads);
  builder.SetResourceQuota(quota);
  // How many of them are taken, against the bound: a request refused RESOURCE_EXHAUSTED
  // means the first reached the second.
  prometheus::BuildGauge()
      .Name("rwg_grpc_max_threads")
      .Help("gRPC requests handled at once at most (--grpc-max-threads)")
      .Register(*registry_)
      .Add({})
      .Set(flags_.grpc_max_threads);
  prometheus::Gauge& in_flight = prometheus::BuildGauge()
                                     .Name("rwg_grpc_requests_in_flight")
                                     .Help("gRPC requests being handled now")
                                     .Register(*registry_)
                                     .Add({});
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counters;
  counters.push_back(std::make_unique<InFlightFactory>(in_flight));
  builder.experimental().SetInterceptorCreators(std::move(counters));
  for (grpc::Service* s : services) builder.RegisterService(s);
  server_ = builder.BuildAndStart();
  if (!server_ || grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", flags_.grpc_listen));
  }

  try {
    exposer_ = std::make_unique<prometheus::Exposer>(flags_.metrics_listen);
  } catch (const std::exception& e) {
    server_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen for metrics on ", flags_.metrics_listen, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  int metrics_port = exposer_->GetListeningPorts().empty() ? 0 : exposer_->GetListeningPorts()[0];

  if (!flags_.port_file.empty()) {
    std::string tmp = flags_.port_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "{\"grpc\":" << grpc_port_ << ",\"metrics\":" << metrics_port << "}\n";
      if (!out) return absl::InternalError(absl::StrCat("cannot write port-file ", tmp));
    }
    if (std::rename(tmp.c_str(), flags_.port_file.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("cannot write port-file ", flags_.port_file));
    }
  }
  log::Info("listening",
            {{"grpc_port", std::to_string(grpc_port_)},
             {"metrics_port", std::to_string(metrics_port)},
             {"tls", creds == nullptr ? "?" : (flags_.tls_cert_file.empty() ? "off" : "on")}});
  return absl::OkStatus();
}

void ServiceHost::SetServing(bool serving) {
  if (server_ && server_->GetHealthCheckService()) {
    server_->GetHealthCheckService()->SetServingStatus(serving);
  }
}

void ServiceHost::WatchHealth(std::function<bool()> healthy) {
  StopHealth();
  stop_health_ = false;
  health_ = std::thread([this, healthy = std::move(healthy)] {
    while (!stop_health_.load()) {
      SetServing(healthy());
      for (int i = 0; i < 10 && !stop_health_.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
}

void ServiceHost::StopHealth() {
  stop_health_ = true;
  if (health_.joinable()) health_.join();
}

void ServiceHost::WaitForTermination(const std::function<void()>& before_drain) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  int sig = 0;
  for (;;) {
    sigwait(&set, &sig);
    if (sig != SIGHUP) break;
    log::Info("SIGHUP: reading the certificates again");
    ReloadAllCertificates();
  }
  log::Info("terminating", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                            {"drain_seconds", absl::StrCat(flags_.drain_seconds)}});
  StopHealth();
  SetServing(false);
  if (before_drain) before_drain();
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(flags_.drain_seconds * 1000)));
  server_->Wait();
  exposer_.reset();
  log::Info("stopped");
}

}  // namespace rwg::core
