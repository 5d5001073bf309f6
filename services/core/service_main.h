// The start-up every rwg service shares, so that a service's main.cc holds only its own options
// and wiring (docs/architecture.md, "Service start-up"):
//
//   int main(int argc, char** argv) {
//     core::ServiceMain service("media-relay", "rwg media-relay: ...", "127.0.0.1:50053",
//                               "127.0.0.1:9463");
//     media_relay::Config config;
//     config.Register(service.options());
//     return service.Main(argc, argv, [&] { return config.Validate(); },
//                         [&] { return Run(service, config); });
//   }
//
// One exit path and one exit code convention (ExitCodeFor):
//   0  drained after SIGTERM/SIGINT, SIGTERM/SIGINT while waiting for a dependency, or --help;
//   1  the service could not start (cannot listen, a dependency refused): logged;
//   2  a bad option, or a file an option names is unreadable or unusable: on stderr as
//      "<service>: <message>", the message naming the option.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/core/crypto.h"
#include "services/core/options.h"
#include "services/core/random.h"
#include "services/core/redis.h"
#include "services/core/server.h"

namespace rwg::core {

inline constexpr int kExitOk = 0;
inline constexpr int kExitCannotStart = 1;
inline constexpr int kExitBadConfig = 2;

// Options shared by the services, with the same names (flag --x, environment variable RWG_X,
// YAML key x) everywhere.
struct CommonConfig {
  ServerFlags server;  // grpc-listen, metrics-listen, tls-*, port-file, drain-seconds, log-level
  std::string redis_address = "127.0.0.1:6379";
  std::string redis_password_file;
  std::string redis_sentinels;  // host:port,... (Sentinel instead of redis_address)
  std::string redis_master_name = "rwg";
  std::string redis_sentinel_password_file;
  // Redis (and the sentinels) over TLS: on with redis_tls or any of the files below.
  bool redis_tls = false;
  std::string redis_ca_file;    // CAs of Redis's certificate (default: the system's)
  std::string redis_cert_file;  // client certificate, when Redis requires one
  std::string redis_key_file;
  std::string redis_tls_server_name;  // the name in Redis's certificate (default: the host)
  std::string secret_key_file;
  // Whether the service has an at-rest key (RegisterSecretKey was called).
  bool has_secret_key = false;

  // --redis-address, --redis-password-file, the Sentinel and the TLS options.
  void RegisterRedis(Options& options);
  // --secret-key-file (required); `help` says what the key is for in this service.
  void RegisterSecretKey(Options& options, const std::string& help);
  // The values the parser cannot check; errors name the option.
  absl::Status Validate() const;
};

// A configuration error: InvalidArgument "<option>: <message>" (exit code 2).
absl::Status OptionError(absl::string_view option, absl::string_view message);

// A start failure logged as `log_message` with error=<status message> (exit code 1). Without
// it a start failure is logged as "cannot start".
absl::Status StartError(absl::string_view log_message, const absl::Status& status);

// A configuration error reported as a log record `log_message` with error=<message> rather
// than as a plain line on stderr (exit code 2).
absl::Status LoggedConfigError(absl::string_view log_message, const absl::Status& status);

// Maps what a service's run returned to its exit code, reporting the error the documented way
// (top of this file). `service` prefixes configuration errors on stderr.
int ExitCodeFor(absl::string_view service, const absl::Status& result);

// The contents of the secret file `path` without trailing whitespace (a final newline is not
// part of a secret); an empty path is no secret (""). Errors name `option`.
absl::StatusOr<std::string> ReadSecretFile(absl::string_view option, const std::string& path);

// An API token callers present as "authorization: Bearer <token>": the file's contents without
// surrounding whitespace, 16 characters or more. Errors name `option`.
absl::StatusOr<std::string> ReadTokenFile(absl::string_view option, const std::string& path);

// The at-rest key (--secret-key-file) and the box that seals and opens secrets with it.
struct AtRestKey {
  std::string raw;  // the 32 key bytes, for keys derived from it
  std::unique_ptr<SecretBox> box;
};
absl::StatusOr<AtRestKey> LoadAtRestKey(const std::string& path, Random& rng);

// Redis options from --redis-address and --redis-password-file, or from --redis-sentinels,
// --redis-master-name and --redis-sentinel-password-file (a MasterLocator then starts asking
// the sentinels; `registry`, when given, gets its metrics). Errors name the option.
absl::StatusOr<RedisOptions> RedisOptionsFrom(const CommonConfig& config,
                                              prometheus::Registry* registry = nullptr);

// Waiting for a dependency (Redis, the gateway configuration) before the service can start.
struct WaitOptions {
  absl::Duration interval = absl::Seconds(1);
  // The warning is logged on the first failure and then on every log_every-th.
  int log_every = 10;
  // Whether an error is worth waiting out; others end the wait at once.
  std::function<bool(const absl::Status&)> retryable = [](const absl::Status&) { return true; };
  // Waits up to the given time for SIGTERM/SIGINT; true when one came.
  std::function<bool(absl::Duration)> terminated = TerminationRequested;
};

// Calls `attempt` until it succeeds (OK), fails with an error `retryable` refuses (that
// error) or SIGTERM/SIGINT comes (Cancelled), logging `waiting` as a warning with the error.
absl::Status WaitForDependency(absl::string_view waiting,
                               const std::function<absl::Status()>& attempt,
                               const WaitOptions& options = {});

class ServiceMain {
 public:
  // Blocks SIGTERM/SIGINT (taken by the drain) for every thread started from now on.
  ServiceMain(std::string name, std::string description, std::string grpc_listen,
              std::string metrics_listen);

  const std::string& name() const { return name_; }
  Options& options() { return options_; }
  CommonConfig& common() { return common_; }
  // Exists while `run` runs (Main).
  ServiceHost& host() { return *host_; }

  // Parses the options (flag, environment, --config YAML), sets up logging, validates the
  // common options and then `validate`'s, runs
  // `run` and returns the exit code of what happened first (top of this file). `run` starts
  // the service, serves until host().WaitForTermination() returns, then stops it.
  int Main(int argc, char** argv, const std::function<absl::Status()>& validate,
           const std::function<absl::Status()>& run);

  // Parses the options and sets up logging; an exit code when the process ends here (--help,
  // a bad option). Main's first step, exposed for tests.
  std::optional<int> Parse(int argc, char** argv);

  // Starts gRPC (with health and reflection) and /metrics; a failure is a StartError.
  // Then host().WaitForTermination() takes SIGTERM/SIGINT and drains in-flight calls.
  absl::Status Start(const std::vector<grpc::Service*>& services);

 private:
  std::string name_;
  Options options_;
  CommonConfig common_;
  std::unique_ptr<ServiceHost> host_;
};

}  // namespace rwg::core
