// provisioning: the HTTPS download server phones fetch their configuration from (R-PROV).
#include <sys/resource.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/core/cert_metrics.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/core/options.h"
#include "services/core/server.h"
#include "services/provisioning/server.h"
#include "services/provisioning/state.h"
#include "services/provisioning/store_service.h"

namespace {

using namespace rwg;

int Fail(const std::string& what) {
  std::cerr << "provisioning: " << what << "\n";
  return 2;
}

int Main(int argc, char** argv) {
  core::BlockTerminationSignals();
  core::ServerFlags server;
  server.grpc_listen = "127.0.0.1:50054";
  server.metrics_listen = "127.0.0.1:9464";
  provisioning::ServerOptions o;
  o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string redis_address = "127.0.0.1:6379";
  std::string redis_password_file, secret_key_file, instance = "provisioning-0";
  int ban_window_seconds = 60, ban_seconds = 600, idle_seconds = 30, header_seconds = 10;
  core::Options opts("provisioning", "rwg provisioning: phones' configuration over HTTPS");
  server.Register(opts);
  opts.Add("listen", o.listen, "host:port phones download from (HTTPS)");
  opts.Add("https-cert-file", o.cert_file, "PEM certificate chain of the HTTPS port")->required();
  opts.Add("https-key-file", o.key_file, "PEM private key of the HTTPS port")->required();
  opts.Add("store-dir", o.store_dir, "directory of the files phones fetch")->required();
  opts.Add("redis-address", redis_address, "Redis host:port or unix:/path");
  opts.Add("redis-password-file", redis_password_file, "file holding the Redis password");
  opts.Add("secret-key-file", secret_key_file, "key that opens the hash key kept by control")
      ->required();
  opts.Add("instance", instance, "name of this instance (in bans it makes)");
  opts.Add("threads", o.threads, "HTTPS serving threads (default: one per core)");
  opts.Add("max-connections", o.max_connections,
           "open HTTPS connections at most; more are closed at once");
  opts.Add("max-connections-per-source", o.max_connections_per_source,
           "open HTTPS connections one source (an IPv4 address, an IPv6 /64) may hold; more are "
           "closed at once");
  opts.Add("ban-misses", o.ban_misses, "hash misses from one source that ban it");
  opts.Add("ban-mac-misses", o.ban_mac_misses,
           "requests for different MAC files the store does not have (under the right hash) "
           "from one source that ban it");
  opts.Add("ban-window-seconds", ban_window_seconds, "window the misses are counted in");
  opts.Add("ban-seconds", ban_seconds, "how long a ban lasts");
  opts.Add("idle-timeout-seconds", idle_seconds,
           "a connection waiting for its next request, or not reading its response, is closed "
           "after this");
  opts.Add("header-timeout-seconds", header_seconds,
           "a request's header must be complete within this of its first byte (of the "
           "connection's start for the first request), however slowly it comes");
  opts.Add("access-log", o.access_log, "one log line per request (true/false)");
  std::string api_token_file;
  opts.Add("api-token-file", api_token_file,
           "file holding the token callers of rwg.provisioning.v1 present as 'authorization: "
           "Bearer <token>'")
      ->required();
  int max_file_mb = 1024;
  opts.Add("max-file-mb", max_file_mb, "largest file the store API takes, in MiB");
  int xml_timeout_ms = 5000;
  opts.Add("xml-timeout-ms", xml_timeout_ms,
           "the iPBX's XML port must answer a proxied request within this (else 504)");
  opts.Add("xml-ca-file", o.xml_ca_file,
           "CA certificates to verify the iPBX's XML port with (default: the system's CA store)");
  opts.Flag("xml-insecure-skip-verify", o.xml_insecure_skip_verify,
            "do not verify the iPBX's XML port's certificate nor its host name (anyone on the "
            "path can then impersonate the iPBX)");
  int exit_code = 0;
  absl::Status parsed = opts.Parse(argc, argv, &exit_code);
  if (!parsed.ok()) {
    if (exit_code != 0) std::cerr << "provisioning: " << parsed.message() << "\n";
    return exit_code;
  }
  core::log::Init("provisioning", server.log_level);
  if (o.threads < 1 || o.threads > 256) return Fail("threads: between 1 and 256");
  if (o.ban_misses < 1) return Fail("ban-misses: 1 or more");
  if (o.ban_mac_misses < 1) return Fail("ban-mac-misses: 1 or more");
  if (o.max_connections < 1) return Fail("max-connections: 1 or more");
  if (o.max_connections_per_source < 1) return Fail("max-connections-per-source: 1 or more");
  // Every connection is a descriptor: take what the hard limit allows.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  if (ban_window_seconds < 1 || ban_seconds < 1 || idle_seconds < 1 || header_seconds < 1) {
    return Fail(
        "ban-window-seconds, ban-seconds, idle-timeout-seconds, header-timeout-seconds: 1 or "
        "more");
  }
  o.ban_window = absl::Seconds(ban_window_seconds);
  o.ban_length = absl::Seconds(ban_seconds);
  o.idle_timeout = absl::Seconds(idle_seconds);
  o.header_timeout = absl::Seconds(header_seconds);
  if (xml_timeout_ms < 100 || xml_timeout_ms > 60000) {
    return Fail("xml-timeout-ms: between 100 and 60000");
  }
  o.xml_timeout = absl::Milliseconds(xml_timeout_ms);
  if (o.xml_insecure_skip_verify && !o.xml_ca_file.empty()) {
    return Fail("xml-insecure-skip-verify and xml-ca-file: one or the other");
  }

  if (max_file_mb < 1) return Fail("max-file-mb: 1 or more");
  absl::StatusOr<std::string> token = core::ReadFile(api_token_file);
  if (!token.ok()) return Fail(absl::StrCat("api-token-file: ", token.status().message()));
  const std::string api_token(absl::StripAsciiWhitespace(*token));
  if (api_token.size() < 16) return Fail("api-token-file: the token needs 16 characters or more");
  absl::StatusOr<std::string> key = core::SecretBox::LoadKeyFile(secret_key_file);
  if (!key.ok()) return Fail(std::string(key.status().message()));
  absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
      core::SecretBox::Create(*key, core::Random::System());
  if (!box.ok()) return Fail(std::string(box.status().message()));
  core::RedisOptions ro;
  ro.address = redis_address;
  if (!redis_password_file.empty()) {
    absl::StatusOr<std::string> pw = core::ReadFile(redis_password_file);
    if (!pw.ok()) return Fail(absl::StrCat("redis-password-file: ", pw.status().message()));
    ro.password = std::string(absl::StripTrailingAsciiWhitespace(*pw));
  }
  core::RedisClient redis(ro);
  provisioning::SharedState state(redis, **box, core::SystemClock::Get(), instance);
  // Without the hash every request would be a miss: wait for Redis rather than serve 404s.
  absl::Status ready = state.Start(absl::Seconds(1));
  if (!ready.ok()) {
    core::log::Warn("hash key not read yet; retrying every second",
                    {{"error", std::string(ready.message())}});
  }
  if (o.xml_insecure_skip_verify) {
    core::log::Warn(
        "the iPBX's XML port is not verified (--xml-insecure-skip-verify): anyone on the path "
        "can impersonate the iPBX to phones",
        {});
  }
  core::ServiceHost host("provisioning", server);
  (void)core::ExportCertificateExpiry(host.registry(), "https", o.cert_file);
  provisioning::ProvisioningServer https(o, state, core::SystemClock::Get(), host.registry());
  if (absl::Status s = https.Start(); !s.ok()) return Fail(std::string(s.message()));
  provisioning::StoreServiceImpl store(o.store_dir, api_token, core::Random::System(),
                                       static_cast<uint64_t>(max_file_mb) << 20);
  if (absl::Status s = host.Start({&store}); !s.ok()) {
    core::log::Error("cannot start", {{"error", std::string(s.message())}});
    return 1;
  }
  core::log::Info("provisioning ready", {{"listen", o.listen},
                                         {"port", std::to_string(https.port())},
                                         {"store", o.store_dir},
                                         {"threads", std::to_string(o.threads)}});
  host.WatchHealth([&state]() { return state.last_status().ok(); });
  host.WaitForTermination();
  https.Stop();
  state.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
