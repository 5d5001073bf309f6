#include "services/sip_edge/config.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/core/service_main.h"
#include "services/sip_edge/digest.h"

namespace rwg::sip_edge {

using core::OptionError;

Config::Config() {
  edge.tls_listen = "config";
  edge.tcp_listen = "config";
  edge.udp_listen = "config";
}

void Config::Register(core::Options& o) {
  o.Add("sip-tls-listen", edge.tls_listen,
        "SIP over TLS toward phones: host:port, empty for off, or config (sip.tls exposure "
        "and ports.sip_tls of the gateway configuration)");
  o.Add("sip-tcp-listen", edge.tcp_listen,
        "SIP over TCP toward phones: host:port, empty for off, or config (sip.tcp and "
        "ports.sip_tcp)");
  o.Add("sip-udp-listen", edge.udp_listen,
        "SIP over UDP toward phones: host:port, empty for off, or config (sip.udp, disabled "
        "by default, and ports.sip_udp)");
  o.Add("sip-tls-cert-file", sip_cert_file, "PEM certificate chain for SIP over TLS");
  o.Add("sip-tls-key-file", sip_key_file, "PEM private key for SIP over TLS");
  o.Add("sip-advertise-host", edge.set_advertise_host,
        "host (public name or address) in the Via of requests to phones, in place of the "
        "address the listeners bind (e.g. a pod's); empty: that address");
  o.Add("icp-listen", edge.icp_listen, "TCP listener the iPBX sends requests to");
  o.Add("icp-advertise", edge.icp_advertise,
        "host:port the iPBX reaches icp-listen at (default: icp-listen)");
  o.Add("instance", edge.instance, "name of this instance (unique per Redis)");
  o.Add("digest-algorithms", algorithms, "challenge order, from md5 and sha-256");
  o.Add("digest-md5-only-user-agents", md5_only,
        "comma-separated User-Agent substrings of phones challenged with MD5 alone (their "
        "SIP stack gives up on any other algorithm); empty for none");
  o.Add("min-expires", edge.min_expires, "shortest registration accepted (seconds)");
  o.Add("max-expires", edge.max_expires, "longest registration granted (seconds)");
  o.Add("default-expires", edge.default_expires, "registration time when the phone gives none");
  o.Add("upstream-timeout-ms", edge.upstream_timeout_ms, "time the iPBX has to answer");
  o.Add("upstream-expires", edge.upstream_expires,
        "registration time asked of the iPBX (0: the phone's); rwg refreshes it itself");
  o.Add("config-refresh-ms", config_refresh_ms, "how often the gateway configuration is re-read");
  o.Add("tcp-keepalive-seconds", edge.tcp_keepalive_seconds,
        "a phone's TCP/TLS connection silent this long is probed; one that answers no probe "
        "for 30 s more is closed and the phone marked unreachable (0: off)");
  o.Add("max-connections-per-source", edge.max_connections_per_source,
        "TCP/TLS connections one source (IPv4 address or IPv6 /64) may hold open; beyond, "
        "new ones are closed at once (0: no limit)");
  o.Add("relay-token-file", relay_token_file,
        "file holding the media relays' API token (calls allocate media through them)");
  o.Add("relay-ca-file", edge.relay_ca_file,
        "PEM CA of the media relays' API certificates (empty: the system's trusted CAs); "
        "the certificate must name the address the relay advertises");
  o.Add("icp-ca-file", edge.icp_ca_file,
        "PEM CAs the iPBX's SIP/TLS certificate must chain to (empty: the system's trusted "
        "CAs); its certificate must also name the iPBX's host");
  o.Flag("icp-tls-insecure", edge.icp_tls_insecure,
         "accept any certificate from the iPBX over SIP/TLS (whoever sits in between then "
         "reads the ICP-side digests and SRTP keys): for a lab only");
  o.Flag("relay-plaintext", edge.relay_plaintext,
         "speak plaintext gRPC to the media relays (development only: the token and the "
         "calls' SRTP keys cross unprotected)");
  o.Add("max-calls-per-device", edge.max_calls_per_device,
        "calls one device may have through this instance at a time (more: 486 Busy Here; "
        "emergency calls always go)");
  o.Add("max-subscriptions-per-device", edge.max_subscriptions_per_device,
        "subscriptions (message waiting, BLF keys) one device may hold at a time (more: 403)");
  o.Add("srtp-suite", edge.set_srtp_suite,
        "SRTP suite offered to phones: AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32");
  o.Add("pike-requests", edge.protection.requests,
        "requests a source may send per pike-window-seconds before it is banned");
  o.Add("pike-window-seconds", window_seconds, "request counting window");
  o.Add("ban-seconds", ban_seconds, "how long a flooding source stays banned");
  o.Add("auth-failures", edge.protection.auth_failures,
        "failed digest answers for one user from one source before that pair is banned");
  o.Add("auth-window-seconds", auth_window_seconds, "failed authentication counting window");
  o.Add("auth-ban-seconds", auth_ban_seconds, "how long a source+user pair stays banned");
}

absl::Status Config::Validate() const { return Edge().status(); }

bool Config::ListenersFromConfig() const {
  return edge.tls_listen == "config" || edge.tcp_listen == "config" || edge.udp_listen == "config";
}

absl::StatusOr<EdgeOptions> Config::Edge() const {
  EdgeOptions e = edge;
  if (e.tcp_keepalive_seconds < 0 || e.tcp_keepalive_seconds > 7200) {
    return OptionError("tcp-keepalive-seconds", "between 0 (off) and 7200");
  }
  if (e.max_calls_per_device < 1 || e.max_calls_per_device > 1000) {
    return OptionError("max-calls-per-device", "between 1 and 1000");
  }
  if (e.max_subscriptions_per_device < 1 || e.max_subscriptions_per_device > 10000) {
    return OptionError("max-subscriptions-per-device", "between 1 and 10000");
  }
  if (e.max_connections_per_source < 0) {
    return OptionError("max-connections-per-source", "0 (no limit) or more");
  }
  if (e.set_srtp_suite != "AES_CM_128_HMAC_SHA1_80" &&
      e.set_srtp_suite != "AES_CM_128_HMAC_SHA1_32") {
    return OptionError("srtp-suite", "AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32");
  }
  if (!e.relay_ca_file.empty() && e.relay_plaintext) {
    return absl::InvalidArgumentError("relay-ca-file and relay-plaintext exclude each other");
  }
  e.protection.window = absl::Seconds(window_seconds);
  e.protection.ban = absl::Seconds(ban_seconds);
  e.protection.auth_window = absl::Seconds(auth_window_seconds);
  e.protection.auth_ban = absl::Seconds(auth_ban_seconds);
  e.algorithms.clear();
  for (absl::string_view a : absl::StrSplit(algorithms, ',', absl::SkipWhitespace())) {
    std::optional<DigestAlgorithm> alg = ParseAlgorithm(a);
    if (!alg) {
      return OptionError("digest-algorithms", absl::StrCat("'", a, "' is not md5 or sha-256"));
    }
    e.algorithms.push_back(*alg);
  }
  if (e.algorithms.empty()) return OptionError("digest-algorithms", "name at least one");
  for (absl::string_view ua : absl::StrSplit(md5_only, ',', absl::SkipWhitespace())) {
    e.md5_only_user_agents.push_back(absl::AsciiStrToLower(absl::StripAsciiWhitespace(ua)));
  }
  if (!e.icp_listen.empty() && e.icp_advertise.empty() &&
      (absl::StartsWith(e.icp_listen, "0.0.0.0:") || absl::StartsWith(e.icp_listen, ":"))) {
    return OptionError("icp-advertise",
                       absl::StrCat("required when icp-listen binds every address (", e.icp_listen,
                                    "); give the address the iPBX reaches this instance at"));
  }
  return e;
}

}  // namespace rwg::sip_edge
