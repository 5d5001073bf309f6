#include "services/core/service_main.h"

#include <iostream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "services/core/log.h"
#include "services/core/redis_sentinel.h"
#include "services/core/redis_tls.h"
#include "services/core/tls_identity.h"

namespace rwg::core {
namespace {

// Payload of a status whose error is to be logged under this message rather than printed.
constexpr char kLogMessageUrl[] = "type.rwg/log-message";

absl::Status WithLogMessage(absl::string_view log_message, absl::Status status) {
  status.SetPayload(kLogMessageUrl, absl::Cord(log_message));
  return status;
}

}  // namespace

void CommonConfig::RegisterRedis(Options& o) {
  o.Add("redis-address", redis_address, "Redis host:port or unix:/path");
  o.Add("redis-password-file", redis_password_file, "file holding the Redis password");
  o.Add("redis-sentinels", redis_sentinels,
        "Redis Sentinel addresses host:port,host:port,...: the master is asked of them and "
        "followed through failovers (redis-address is then unused)");
  o.Add("redis-master-name", redis_master_name, "the master's name in the sentinels");
  o.Add("redis-sentinel-password-file", redis_sentinel_password_file,
        "file holding the sentinels' password (when they require one)");
  o.Flag("redis-tls", redis_tls,
         "reach Redis and the sentinels over TLS (on too when any redis-ca/cert/key file is set)");
  o.Add("redis-ca-file", redis_ca_file,
        "PEM CAs Redis's certificate must chain to (default: the system's trust store)");
  o.Add("redis-cert-file", redis_cert_file,
        "PEM client certificate presented to Redis (tls-auth-clients), with redis-key-file");
  o.Add("redis-key-file", redis_key_file, "the private key of redis-cert-file");
  o.Add("redis-tls-server-name", redis_tls_server_name,
        "the name Redis's certificate must carry (default: the host of the address; set it "
        "with Sentinel, whose master addresses are IP addresses)");
}

void CommonConfig::RegisterSecretKey(Options& o, const std::string& help) {
  o.Add("secret-key-file", secret_key_file, help)->required();
  has_secret_key = true;
}

absl::Status CommonConfig::Validate() const {
  if (has_secret_key && secret_key_file.empty()) {
    return OptionError("secret-key-file", "must name a file");
  }
  // The gRPC port's pair, before the service waits for anything or opens another port.
  if (!server.tls_cert_file.empty() || !server.tls_key_file.empty()) {
    if (server.tls_cert_file.empty()) {
      return OptionError("tls-cert-file", "needed with tls-key-file");
    }
    if (server.tls_key_file.empty()) {
      return OptionError("tls-key-file", "needed with tls-cert-file");
    }
    absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
        LoadTlsIdentity(server.tls_cert_file, server.tls_key_file, absl::Now());
    if (!id.ok()) {
      const bool key = absl::StartsWith(id.status().message(), server.tls_key_file);
      return OptionError(key ? "tls-key-file" : "tls-cert-file", id.status().message());
    }
  }
  return absl::OkStatus();
}

absl::Status OptionError(absl::string_view option, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(option, ": ", message));
}

absl::Status StartError(absl::string_view log_message, const absl::Status& status) {
  // Exit code 1 whatever the code: not the one of a configuration error (2) nor of a
  // termination (0).
  absl::StatusCode code = status.code();
  if (code == absl::StatusCode::kOk || code == absl::StatusCode::kInvalidArgument ||
      code == absl::StatusCode::kCancelled) {
    code = absl::StatusCode::kFailedPrecondition;
  }
  absl::Status s(code, status.message());
  return WithLogMessage(log_message, std::move(s));
}

absl::Status LoggedConfigError(absl::string_view log_message, const absl::Status& status) {
  return WithLogMessage(log_message, absl::InvalidArgumentError(status.message()));
}

int ExitCodeFor(absl::string_view service, const absl::Status& result) {
  if (result.ok() || absl::IsCancelled(result)) return kExitOk;
  const int code = absl::IsInvalidArgument(result) ? kExitBadConfig : kExitCannotStart;
  auto log_message = result.GetPayload(kLogMessageUrl);
  if (log_message) {
    log::Error(std::string(*log_message), {{"error", std::string(result.message())}});
  } else if (code == kExitBadConfig) {
    std::cerr << service << ": " << result.message() << "\n";
  } else {
    log::Error("cannot start", {{"error", std::string(result.message())}});
  }
  return code;
}

absl::StatusOr<std::string> ReadSecretFile(absl::string_view option, const std::string& path) {
  if (path.empty()) return std::string();
  absl::StatusOr<std::string> s = ReadFile(path);
  if (!s.ok()) return OptionError(option, s.status().message());
  return std::string(absl::StripTrailingAsciiWhitespace(*s));
}

absl::StatusOr<std::string> ReadTokenFile(absl::string_view option, const std::string& path) {
  absl::StatusOr<std::string> s = ReadFile(path);
  if (!s.ok()) return OptionError(option, s.status().message());
  std::string token(absl::StripAsciiWhitespace(*s));
  if (token.size() < 16) return OptionError(option, "the token needs 16 characters or more");
  return token;
}

absl::StatusOr<AtRestKey> LoadAtRestKey(const std::string& path, Random& rng) {
  // The key file's messages name it already ("secret key file <path> ...").
  absl::StatusOr<std::string> key = SecretBox::LoadKeyFile(path);
  if (!key.ok()) return absl::InvalidArgumentError(key.status().message());
  absl::StatusOr<std::unique_ptr<SecretBox>> box = SecretBox::Create(*key, rng);
  if (!box.ok()) return absl::InvalidArgumentError(box.status().message());
  return AtRestKey{*std::move(key), *std::move(box)};
}

absl::StatusOr<RedisOptions> RedisOptionsFrom(const CommonConfig& config,
                                              prometheus::Registry* registry) {
  RedisOptions ro;
  ro.address = config.redis_address;
  absl::StatusOr<std::string> password =
      ReadSecretFile("redis-password-file", config.redis_password_file);
  if (!password.ok()) return password.status();
  ro.password = *std::move(password);
  if (config.redis_tls || !config.redis_ca_file.empty() || !config.redis_cert_file.empty() ||
      !config.redis_key_file.empty()) {
    RedisTlsOptions to;
    to.ca_file = config.redis_ca_file;
    to.cert_file = config.redis_cert_file;
    to.key_file = config.redis_key_file;
    to.server_name = config.redis_tls_server_name;
    to.handshake_timeout = ro.connect_timeout;
    absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(std::move(to));
    if (!tls.ok()) return absl::InvalidArgumentError(tls.status().message());
    ro.tls = *std::move(tls);
  } else if (!config.redis_tls_server_name.empty()) {
    return OptionError("redis-tls-server-name", "only with redis-tls");
  }
  if (config.redis_sentinels.empty()) return ro;
  SentinelOptions so;
  for (absl::string_view a : absl::StrSplit(config.redis_sentinels, ',', absl::SkipWhitespace())) {
    a = absl::StripAsciiWhitespace(a);
    const size_t colon = a.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(a.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return OptionError("redis-sentinels", absl::StrCat("'", a, "' is not host:port"));
    }
    so.sentinels.emplace_back(a);
  }
  if (so.sentinels.empty()) return OptionError("redis-sentinels", "names no sentinel");
  if (config.redis_master_name.empty()) {
    return OptionError("redis-master-name", "must not be empty");
  }
  so.master_name = config.redis_master_name;
  absl::StatusOr<std::string> sentinel_password =
      ReadSecretFile("redis-sentinel-password-file", config.redis_sentinel_password_file);
  if (!sentinel_password.ok()) return sentinel_password.status();
  so.sentinel_password = *std::move(sentinel_password);
  so.redis_password = ro.password;
  so.tls = ro.tls;
  ro.locator = MasterLocator::Start(std::move(so), registry);
  if (registry != nullptr) {
    ro.retries = &prometheus::BuildCounter()
                      .Name("rwg_redis_failover_retries_total")
                      .Help(
                          "Redis commands sent again to a new master after the previous one "
                          "failed under them")
                      .Register(*registry)
                      .Add({});
  }
  return ro;
}

absl::Status WaitForDependency(absl::string_view waiting,
                               const std::function<absl::Status()>& attempt,
                               const WaitOptions& options) {
  for (int i = 0;; ++i) {
    absl::Status s = attempt();
    if (s.ok() || !options.retryable(s)) return s;
    if (options.log_every <= 1 || i % options.log_every == 0) {
      log::Warn(waiting, {{"error", std::string(s.message())}});
    }
    if (options.terminated(options.interval)) {
      return absl::CancelledError(absl::StrCat("terminated while ", waiting));
    }
  }
}

ServiceMain::ServiceMain(std::string name, std::string description, std::string grpc_listen,
                         std::string metrics_listen)
    : name_(std::move(name)), options_(name_, std::move(description)) {
  BlockTerminationSignals();
#ifdef NDEBUG
  // Debian's Abseil is built to check the lock order on every Mutex lock (a graph of all
  // locks, behind one process-wide lock): a debugging aid the services turn off. Unit tests, which
  // do not start here, keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  common_.server.grpc_listen = std::move(grpc_listen);
  common_.server.metrics_listen = std::move(metrics_listen);
  common_.server.Register(options_);
}

std::optional<int> ServiceMain::Parse(int argc, char** argv) {
  int exit_code = 0;
  absl::Status parsed = options_.Parse(argc, argv, &exit_code);
  if (!parsed.ok()) {
    if (exit_code != 0) std::cerr << name_ << ": " << parsed.message() << "\n";
    return exit_code;
  }
  log::Init(name_, common_.server.log_level);
  return std::nullopt;
}

int ServiceMain::Main(int argc, char** argv, const std::function<absl::Status()>& validate,
                      const std::function<absl::Status()>& run) {
  if (std::optional<int> code = Parse(argc, argv)) return *code;
  if (absl::Status s = common_.Validate(); !s.ok()) return ExitCodeFor(name_, s);
  if (absl::Status s = validate(); !s.ok()) return ExitCodeFor(name_, s);
  host_ = std::make_unique<ServiceHost>(name_, common_.server);
  const int code = ExitCodeFor(name_, run());
  host_.reset();
  return code;
}

absl::Status ServiceMain::Start(const std::vector<grpc::Service*>& services) {
  absl::Status s = host_->Start(services);
  // A certificate or key file that cannot be used is a bad option (exit code 2), as it is for
  // every other file an option names; anything else is a failure to start.
  if (absl::IsInvalidArgument(s)) return s;
  if (!s.ok()) return StartError("cannot start", s);
  return absl::OkStatus();
}

}  // namespace rwg::core
