// sip-edge: the SIP/TLS edge toward remote phones (R-SIP).
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/core/cert_metrics.h"
#include "services/core/devices.h"
#include "services/core/log.h"
#include "services/core/options.h"
#include "services/core/server.h"
#include "services/sip_edge/edge.h"
#include "services/sip_edge/sofia_log.h"

namespace {

using namespace rwg;

// sofia-sip reads its TLS identity from a directory: agent.pem (key and chain), cafile.pem.
// sofia-sip's TLS directory: agent.pem (key and chain, for the phones' listener and as rwg's
// client certificate toward the iPBX) and cafile.pem (what the iPBX's certificate must chain
// to: `ca_file`, else the system's trusted CAs).
// Debian's bundle of the system's trusted CAs (package ca-certificates).
constexpr char kSystemCaFile[] = "/etc/ssl/certs/ca-certificates.crt";

absl::StatusOr<std::string> MakeCertDir(const std::string& cert_file, const std::string& key_file,
                                        const std::string& ca_file) {
  absl::StatusOr<std::string> cert = core::ReadFile(cert_file);
  if (!cert.ok())
    return absl::InvalidArgumentError(absl::StrCat("sip-tls-cert-file: ", cert.status().message()));
  absl::StatusOr<std::string> key = core::ReadFile(key_file);
  if (!key.ok())
    return absl::InvalidArgumentError(absl::StrCat("sip-tls-key-file: ", key.status().message()));
  absl::StatusOr<std::string> ca = core::ReadFile(ca_file.empty() ? kSystemCaFile : ca_file);
  if (!ca.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        ca_file.empty() ? absl::StrCat("the system's trusted CAs (", kSystemCaFile, ")")
                        : std::string("icp-ca-file"),
        ": ", ca.status().message()));
  }
  char tmpl[] = "/tmp/rwg-sip-tls-XXXXXX";
  if (mkdtemp(tmpl) == nullptr)
    return absl::InternalError("cannot create a directory for TLS files");
  std::string dir = tmpl;
  {
    std::ofstream agent(dir + "/agent.pem", std::ios::trunc);
    agent << *key << "\n" << *cert;
    std::ofstream cafile(dir + "/cafile.pem", std::ios::trunc);
    cafile << *ca;
  }
  chmod((dir + "/agent.pem").c_str(), 0600);
  return dir;
}

int Main(int argc, char** argv) {
  core::BlockTerminationSignals();
  core::ServerFlags server;
  server.grpc_listen = "127.0.0.1:50052";
  server.metrics_listen = "127.0.0.1:9462";
  sip_edge::EdgeOptions edge;
  std::string redis_address = "127.0.0.1:6379";
  std::string secret_key_file;
  std::string sip_cert, sip_key;
  // MD5 first: many SIP stacks answer only the first challenge and know only MD5; those that
  // give up on any other algorithm get MD5 alone (digest-md5-only-user-agents).
  std::string algorithms = "md5,sha-256";
  int config_refresh_ms = 2000;
  core::Options opts("sip-edge", "rwg sip-edge: SIP/TLS edge for remote phones");
  server.Register(opts);
  opts.Add("redis-address", redis_address, "Redis host:port or unix:/path");
  opts.Add("secret-key-file", secret_key_file, "key that decrypts device secrets (as control)")
      ->required();
  edge.tls_listen = "config";
  edge.tcp_listen = "config";
  std::string redis_password_file;
  opts.Add("sip-tls-listen", edge.tls_listen,
           "SIP over TLS toward phones: host:port, empty for off, or config (sip.tls exposure "
           "and ports.sip_tls of the gateway configuration)");
  opts.Add("sip-tcp-listen", edge.tcp_listen,
           "SIP over TCP toward phones: host:port, empty for off, or config (sip.tcp and "
           "ports.sip_tcp)");
  edge.udp_listen = "config";
  opts.Add("sip-udp-listen", edge.udp_listen,
           "SIP over UDP toward phones: host:port, empty for off, or config (sip.udp, disabled "
           "by default, and ports.sip_udp)");
  opts.Add("redis-password-file", redis_password_file, "file holding the Redis password");
  opts.Add("sip-tls-cert-file", sip_cert, "PEM certificate chain for SIP over TLS");
  opts.Add("sip-tls-key-file", sip_key, "PEM private key for SIP over TLS");
  opts.Add("sip-advertise-host", edge.set_advertise_host,
           "host (public name or address) in the Via of requests to phones, in place of the "
           "address the listeners bind (e.g. a pod's); empty: that address");
  opts.Add("icp-listen", edge.icp_listen, "TCP listener the iPBX sends requests to");
  opts.Add("icp-advertise", edge.icp_advertise,
           "host:port the iPBX reaches icp-listen at (default: icp-listen)");
  opts.Add("instance", edge.instance, "name of this instance (unique per Redis)");
  opts.Add("digest-algorithms", algorithms, "challenge order, from md5 and sha-256");
  std::string md5_only = "baresip";
  opts.Add("digest-md5-only-user-agents", md5_only,
           "comma-separated User-Agent substrings of phones challenged with MD5 alone (their "
           "SIP stack gives up on any other algorithm); empty for none");
  opts.Add("min-expires", edge.min_expires, "shortest registration accepted (seconds)");
  opts.Add("max-expires", edge.max_expires, "longest registration granted (seconds)");
  opts.Add("default-expires", edge.default_expires, "registration time when the phone gives none");
  opts.Add("upstream-timeout-ms", edge.upstream_timeout_ms, "time the iPBX has to answer");
  opts.Add("upstream-expires", edge.upstream_expires,
           "registration time asked of the iPBX (0: the phone's); rwg refreshes it itself");
  opts.Add("config-refresh-ms", config_refresh_ms,
           "how often the gateway configuration is re-read");
  opts.Add("tcp-keepalive-seconds", edge.tcp_keepalive_seconds,
           "a phone's TCP/TLS connection silent this long is probed; one that answers no probe "
           "for 30 s more is closed and the phone marked unreachable (0: off)");
  opts.Add("max-connections-per-source", edge.max_connections_per_source,
           "TCP/TLS connections one source (IPv4 address or IPv6 /64) may hold open; beyond, "
           "new ones are closed at once (0: no limit)");
  std::string relay_token_file;
  opts.Add("relay-token-file", relay_token_file,
           "file holding the media relays' API token (calls allocate media through them)");
  opts.Add("relay-ca-file", edge.relay_ca_file,
           "PEM CA of the media relays' API certificates (empty: the system's trusted CAs); "
           "the certificate must name the address the relay advertises");
  opts.Add("icp-ca-file", edge.icp_ca_file,
           "PEM CAs the iPBX's SIP/TLS certificate must chain to (empty: the system's trusted "
           "CAs); its certificate must also name the iPBX's host");
  opts.Flag("icp-tls-insecure", edge.icp_tls_insecure,
            "accept any certificate from the iPBX over SIP/TLS (whoever sits in between then "
            "reads the ICP-side digests and SRTP keys): for a lab only");
  opts.Flag("relay-plaintext", edge.relay_plaintext,
            "speak plaintext gRPC to the media relays (development only: the token and the "
            "calls' SRTP keys cross unprotected)");
  opts.Add("max-calls-per-device", edge.max_calls_per_device,
           "calls one device may have through this instance at a time (more: 486 Busy Here; "
           "emergency calls always go)");
  opts.Add("max-subscriptions-per-device", edge.max_subscriptions_per_device,
           "subscriptions (message waiting, BLF keys) one device may hold at a time (more: 403)");
  opts.Add("srtp-suite", edge.set_srtp_suite,
           "SRTP suite offered to phones: AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32");
  int ban_seconds = 300, window_seconds = 2, auth_window_seconds = 300, auth_ban_seconds = 600;
  opts.Add("pike-requests", edge.protection.requests,
           "requests a source may send per pike-window-seconds before it is banned");
  opts.Add("pike-window-seconds", window_seconds, "request counting window");
  opts.Add("ban-seconds", ban_seconds, "how long a flooding source stays banned");
  opts.Add("auth-failures", edge.protection.auth_failures,
           "failed digest answers for one user from one source before that pair is banned");
  opts.Add("auth-window-seconds", auth_window_seconds, "failed authentication counting window");
  opts.Add("auth-ban-seconds", auth_ban_seconds, "how long a source+user pair stays banned");
  int exit_code = 0;
  absl::Status parsed = opts.Parse(argc, argv, &exit_code);
  if (!parsed.ok()) {
    if (exit_code != 0) std::cerr << "sip-edge: " << parsed.message() << "\n";
    return exit_code;
  }
  core::log::Init("sip-edge", server.log_level);
  sip_edge::RedirectSofiaLogs();  // sofia-sip's diagnostics as log records too
  if (edge.tcp_keepalive_seconds < 0 || edge.tcp_keepalive_seconds > 7200) {
    std::cerr << "sip-edge: tcp-keepalive-seconds: between 0 (off) and 7200\n";
    return 2;
  }
  if (edge.max_calls_per_device < 1 || edge.max_calls_per_device > 1000) {
    std::cerr << "sip-edge: max-calls-per-device: between 1 and 1000\n";
    return 2;
  }
  if (edge.max_subscriptions_per_device < 1 || edge.max_subscriptions_per_device > 10000) {
    std::cerr << "sip-edge: max-subscriptions-per-device: between 1 and 10000\n";
    return 2;
  }
  if (edge.max_connections_per_source < 0) {
    std::cerr << "sip-edge: max-connections-per-source: 0 (no limit) or more\n";
    return 2;
  }
  if (edge.set_srtp_suite != "AES_CM_128_HMAC_SHA1_80" &&
      edge.set_srtp_suite != "AES_CM_128_HMAC_SHA1_32") {
    std::cerr << "sip-edge: srtp-suite: AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32\n";
    return 2;
  }
  if (!relay_token_file.empty()) {
    absl::StatusOr<std::string> token = core::ReadFile(relay_token_file);
    if (!token.ok()) {
      std::cerr << "sip-edge: relay-token-file: " << token.status().message() << "\n";
      return 2;
    }
    edge.relay_token = std::string(absl::StripTrailingAsciiWhitespace(*token));
  }
  if (!edge.relay_ca_file.empty()) {
    if (edge.icp_tls_insecure) {
      core::log::Warn(
          "the iPBX's SIP/TLS certificate is not verified: whoever sits between rwg "
          "and the iPBX can read the ICP-side credentials and SRTP keys",
          {{"option", "icp-tls-insecure"}});
    }
    if (edge.relay_plaintext) {
      std::cerr << "sip-edge: relay-ca-file and relay-plaintext exclude each other\n";
      return 2;
    }
    absl::StatusOr<std::string> ca = core::ReadFile(edge.relay_ca_file);
    if (!ca.ok()) {
      std::cerr << "sip-edge: relay-ca-file: " << ca.status().message() << "\n";
      return 2;
    }
  }
  if (edge.icp_tls_insecure) {
    core::log::Warn(
        "the iPBX's SIP/TLS certificate is not verified: whoever sits between rwg "
        "and the iPBX can read the ICP-side credentials and SRTP keys",
        {{"option", "icp-tls-insecure"}});
  }
  if (edge.relay_plaintext) {
    core::log::Warn(
        "plaintext gRPC to the media relays: the relay token and SRTP keys cross "
        "the network unprotected; use it only on a development machine",
        {{"option", "relay-plaintext"}});
  }
  if (edge.relay_token.empty()) {
    core::log::Warn("no relay-token-file: the media relays will refuse every call's media", {});
  }
  edge.protection.window = absl::Seconds(window_seconds);
  edge.protection.ban = absl::Seconds(ban_seconds);
  edge.protection.auth_window = absl::Seconds(auth_window_seconds);
  edge.protection.auth_ban = absl::Seconds(auth_ban_seconds);

  edge.algorithms.clear();
  for (absl::string_view a : absl::StrSplit(algorithms, ',', absl::SkipWhitespace())) {
    std::optional<sip_edge::DigestAlgorithm> alg = sip_edge::ParseAlgorithm(a);
    if (!alg) {
      std::cerr << "sip-edge: digest-algorithms: '" << a << "' is not md5 or sha-256\n";
      return 2;
    }
    edge.algorithms.push_back(*alg);
  }
  if (edge.algorithms.empty()) {
    std::cerr << "sip-edge: digest-algorithms: name at least one\n";
    return 2;
  }
  for (absl::string_view ua : absl::StrSplit(md5_only, ',', absl::SkipWhitespace())) {
    edge.md5_only_user_agents.push_back(absl::AsciiStrToLower(absl::StripAsciiWhitespace(ua)));
  }
  if (!edge.icp_listen.empty() && edge.icp_advertise.empty() &&
      (absl::StartsWith(edge.icp_listen, "0.0.0.0:") || absl::StartsWith(edge.icp_listen, ":"))) {
    std::cerr << "sip-edge: icp-advertise: required when icp-listen binds every address ("
              << edge.icp_listen << "); give the address the iPBX reaches this instance at\n";
    return 2;
  }
  absl::StatusOr<std::string> key = core::SecretBox::LoadKeyFile(secret_key_file);
  if (!key.ok()) {
    std::cerr << "sip-edge: " << key.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
      core::SecretBox::Create(*key, core::Random::System());
  if (!box.ok()) {
    std::cerr << "sip-edge: " << box.status().message() << "\n";
    return 2;
  }
  {
    // Instances sign the requests they relay to each other with a key derived from the
    // shared secret key.
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    static constexpr char kLabel[] = "rwg sip-edge forwarding";
    HMAC(EVP_sha256(), key->data(), static_cast<int>(key->size()),
         reinterpret_cast<const unsigned char*>(kLabel), sizeof(kLabel) - 1, md, &len);
    edge.forward_key.assign(reinterpret_cast<char*>(md), len);
  }
  // The SIP settings of the admin API decide which set-side listeners run (R-CFG).
  core::RedisOptions ro;
  ro.address = redis_address;
  if (!redis_password_file.empty()) {
    absl::StatusOr<std::string> pw = core::ReadFile(redis_password_file);
    if (!pw.ok()) {
      std::cerr << "sip-edge: redis-password-file: " << pw.status().message() << "\n";
      return 2;
    }
    ro.password = std::string(absl::StripTrailingAsciiWhitespace(*pw));
  }
  core::RedisClient redis(ro);
  sip_edge::GatewayConfigWatcher config(redis);
  absl::Status cfg = config.Start(std::chrono::milliseconds(config_refresh_ms));
  if (edge.tls_listen == "config" || edge.tcp_listen == "config" || edge.udp_listen == "config") {
    for (int i = 0; !cfg.ok(); ++i) {
      if (i % 10 == 0) {
        core::log::Warn("waiting for the gateway configuration to choose the SIP listeners",
                        {{"error", std::string(cfg.message())}});
      }
      if (core::TerminationRequested(absl::Seconds(1))) return 0;
      cfg = config.last_status();
    }
    auto view = config.Get();
    edge.tls_listen = sip_edge::ResolveListen(edge.tls_listen, *view, sip_edge::ListenerKind::kTls);
    edge.tcp_listen = sip_edge::ResolveListen(edge.tcp_listen, *view, sip_edge::ListenerKind::kTcp);
    edge.udp_listen = sip_edge::ResolveListen(edge.udp_listen, *view, sip_edge::ListenerKind::kUdp);
  } else if (!cfg.ok()) {
    core::log::Warn("gateway configuration not readable yet; retrying",
                    {{"error", std::string(cfg.message())}});
  }
  if (!edge.tls_listen.empty()) {
    if (sip_cert.empty() || sip_key.empty()) {
      std::cerr << "sip-edge: sip-tls-listen needs sip-tls-cert-file and sip-tls-key-file\n";
      return 2;
    }
    absl::StatusOr<std::string> dir = MakeCertDir(sip_cert, sip_key, edge.icp_ca_file);
    if (!dir.ok()) {
      std::cerr << "sip-edge: " << dir.status().message() << "\n";
      return 2;
    }
    edge.tls_cert_dir = *dir;
  }

  // Devices are cached; the edge's 1 s sweep drops the cache when control changed a device.
  core::DeviceDirectory devices(redis, **box, /*cache=*/true);

  core::ServiceHost host("sip-edge", server);
  if (!edge.tls_listen.empty())
    (void)core::ExportCertificateExpiry(host.registry(), "sip_tls", sip_cert);
  sip_edge::Edge sip(edge, redis, devices, config, core::SystemClock::Get(), core::Random::System(),
                     host.registry());
  absl::Status started = sip.Start();
  if (!started.ok()) {
    core::log::Error("cannot start SIP", {{"error", std::string(started.message())}});
    return 1;
  }
  started = host.Start({});
  if (!started.ok()) {
    core::log::Error("cannot start", {{"error", std::string(started.message())}});
    return 1;
  }
  // Health follows Redis: without it no phone can be authenticated.
  host.WatchHealth([&redis] { return redis.Ping().ok(); });
  host.WaitForTermination();
  sip.Stop();
  config.Stop();
  if (!edge.tls_cert_dir.empty()) {
    std::remove((edge.tls_cert_dir + "/agent.pem").c_str());
    std::remove((edge.tls_cert_dir + "/cafile.pem").c_str());
    rmdir(edge.tls_cert_dir.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
