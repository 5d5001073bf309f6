// sip-edge: the SIP/TLS edge toward remote phones (R-SIP).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "services/core/devices.h"
#include "services/core/log.h"
#include "services/core/service_main.h"
#include "services/core/tls_identity.h"
#include "services/sip_edge/config.h"
#include "services/sip_edge/edge.h"
#include "services/sip_edge/sofia_log.h"
#include "services/sip_edge/tls_dir.h"
#include "services/sip_edge/tls_keepalive.h"

namespace {

using namespace rwg;

// Instances sign the requests they relay to each other with a key derived from the shared
// secret key.
std::string ForwardKey(const std::string& key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  static constexpr char kLabel[] = "rwg sip-edge forwarding";
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(kLabel), sizeof(kLabel) - 1, md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

void WarnOfInsecureOptions(const sip_edge::EdgeOptions& edge) {
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
}

absl::Status Run(core::ServiceMain& m, const sip_edge::Config& c) {
  sip_edge::RedirectSofiaLogs();  // sofia-sip's diagnostics as log records too
  absl::StatusOr<sip_edge::EdgeOptions> edge = c.Edge();
  if (!edge.ok()) return edge.status();
  absl::StatusOr<std::string> relay_token =
      core::ReadSecretFile("relay-token-file", c.relay_token_file);
  if (!relay_token.ok()) return relay_token.status();
  edge->relay_token = *relay_token;
  if (!edge->relay_ca_file.empty()) {
    absl::StatusOr<std::string> ca = core::ReadFile(edge->relay_ca_file);
    if (!ca.ok()) return core::OptionError("relay-ca-file", ca.status().message());
  }
  WarnOfInsecureOptions(*edge);
  absl::StatusOr<core::AtRestKey> key =
      core::LoadAtRestKey(m.common().secret_key_file, core::Random::System());
  if (!key.ok()) return key.status();
  edge->forward_key = ForwardKey(key->raw);
  // The TLS transports' certificate, toward phones and as rwg's client certificate toward the
  // iPBX: read again when its files change or on SIGHUP. Checked before anything waits or
  // listens, so that a bad pair stops the start at once.
  std::unique_ptr<core::CertificateWatcher> sip_certificate;
  if (!c.sip_cert_file.empty() && !c.sip_key_file.empty()) {
    absl::StatusOr<std::unique_ptr<core::CertificateWatcher>> w =
        core::CertificateWatcher::Create({.endpoint = "sip_tls",
                                          .cert_file = c.sip_cert_file,
                                          .key_file = c.sip_key_file,
                                          .cert_option = "sip-tls-cert-file",
                                          .key_option = "sip-tls-key-file"},
                                         m.host().registry());
    if (!w.ok()) return w.status();
    sip_certificate = *std::move(w);
  }
  absl::StatusOr<core::RedisOptions> ro = core::RedisOptionsFrom(m.common(), &m.host().registry());
  if (!ro.ok()) return ro.status();
  core::RedisClient redis(*ro);

  // The SIP settings of the admin API decide which set-side listeners run (R-CFG).
  sip_edge::GatewayConfigWatcher config(redis);
  absl::Status cfg = config.Start(std::chrono::milliseconds(c.config_refresh_ms));
  if (c.ListenersFromConfig()) {
    cfg =
        core::WaitForDependency("waiting for the gateway configuration to choose the SIP listeners",
                                [&, first = true]() mutable {
                                  if (first) {
                                    first = false;
                                    return cfg;
                                  }
                                  return config.last_status();
                                });
    if (absl::IsCancelled(cfg)) return cfg;
    auto view = config.Get();
    using sip_edge::ListenerKind;
    edge->tls_listen = sip_edge::ResolveListen(edge->tls_listen, *view, ListenerKind::kTls);
    edge->tcp_listen = sip_edge::ResolveListen(edge->tcp_listen, *view, ListenerKind::kTcp);
    edge->udp_listen = sip_edge::ResolveListen(edge->udp_listen, *view, ListenerKind::kUdp);
  } else if (!cfg.ok()) {
    core::log::Warn("gateway configuration not readable yet; retrying",
                    {{"error", std::string(cfg.message())}});
  }
  std::unique_ptr<sip_edge::SofiaTlsDir> tls_dir;
  if (!edge->tls_listen.empty()) {
    if (c.sip_cert_file.empty() || c.sip_key_file.empty()) {
      return core::OptionError("sip-tls-listen", "needs sip-tls-cert-file and sip-tls-key-file");
    }
    absl::StatusOr<std::unique_ptr<sip_edge::SofiaTlsDir>> dir =
        sip_edge::SofiaTlsDir::Create(c.sip_cert_file, c.sip_key_file, edge->icp_ca_file);
    // Exit code 2 for every reason, as for an unreadable file.
    if (!dir.ok()) return absl::InvalidArgumentError(dir.status().message());
    tls_dir = *std::move(dir);
    edge->tls_cert_dir = tls_dir->path();
  }

  // Devices are cached; the edge's 1 s sweep drops the cache when control changed a device.
  core::DeviceDirectory devices(redis, *key->box, /*cache=*/true);
  core::ServiceHost& host = m.host();
  if (!edge->tls_listen.empty()) sip_edge::ServeTlsCertificate(sip_certificate.get());
  sip_edge::Edge sip(*edge, redis, devices, config, core::SystemClock::Get(),
                     core::Random::System(), host.registry());
  if (absl::Status s = sip.Start(); !s.ok()) return core::StartError("cannot start SIP", s);
  if (!edge->tls_listen.empty() && sip_edge::TlsTransportsServed() == 0) {
    core::log::Warn(
        "the SIP TLS certificate will not be read again without a restart: "
        "sofia-sip's TLS transports were not reachable");
  }
  // Every transport is created: sofia-sip holds the key, the certificates and the CAs in
  // memory, and nothing reads the files again. The private key does not stay on disk (nor
  // behind a process that is killed).
  tls_dir.reset();
  if (absl::Status s = m.Start({}); !s.ok()) return s;
  // Health follows Redis: without it no phone can be authenticated.
  host.WatchHealth([&redis] { return redis.Ping().ok(); });
  host.WaitForTermination();
  sip.Stop();
  sip_edge::ServeTlsCertificate(nullptr);
  config.Stop();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  core::ServiceMain m("sip-edge", "rwg sip-edge: SIP/TLS edge for remote phones", "127.0.0.1:50052",
                      "127.0.0.1:9462");
  sip_edge::Config config;
  m.common().RegisterRedis(m.options());
  m.common().RegisterSecretKey(m.options(), "key that decrypts device secrets (as control)");
  config.Register(m.options());
  return m.Main(
      argc, argv, [&] { return config.Validate(); }, [&] { return Run(m, config); });
}
