#include "services/provisioning/config.h"

#include <algorithm>
#include <thread>

#include "services/core/service_main.h"

namespace rwg::provisioning {

using core::OptionError;

Config::Config() {
  server.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

void Config::Register(core::Options& o) {
  o.Add("listen", server.listen, "host:port phones download from (HTTPS)");
  o.Add("https-cert-file", server.cert_file, "PEM certificate chain of the HTTPS port")->required();
  o.Add("https-key-file", server.key_file, "PEM private key of the HTTPS port")->required();
  o.Add("store-dir", server.store_dir, "directory of the files phones fetch")->required();
  o.Add("instance", instance, "name of this instance (in bans it makes)");
  o.Add("threads", server.threads, "HTTPS serving threads (default: one per core)");
  o.Add("max-connections", server.max_connections,
        "open HTTPS connections at most; more are closed at once");
  o.Add("max-connections-per-source", server.max_connections_per_source,
        "open HTTPS connections one source (an IPv4 address, an IPv6 /64) may hold; more are "
        "closed at once");
  o.Add("ban-misses", server.ban_misses, "hash misses from one source that ban it");
  o.Add("ban-mac-misses", server.ban_mac_misses,
        "requests for different MAC files the store does not have (under the right hash) "
        "from one source that ban it");
  o.Add("ban-window-seconds", ban_window_seconds, "window the misses are counted in");
  o.Add("ban-seconds", ban_seconds, "how long a ban lasts");
  o.Add("idle-timeout-seconds", idle_seconds,
        "a connection waiting for its next request, or not reading its response, is closed "
        "after this");
  o.Add("header-timeout-seconds", header_seconds,
        "a request's header must be complete within this of its first byte (of the "
        "connection's start for the first request), however slowly it comes");
  o.Add("access-log", server.access_log, "one log line per request (true/false)");
  o.Add("api-token-file", api_token_file,
        "file holding the token callers of rwg.provisioning.v1 present as 'authorization: "
        "Bearer <token>'")
      ->required();
  o.Add("max-file-mb", max_file_mb, "largest file the store API takes, in MiB");
  o.Add("xml-timeout-ms", xml_timeout_ms,
        "the iPBX's XML port must answer a proxied request within this (else 504)");
  o.Add("xml-ca-file", server.xml_ca_file,
        "CA certificates to verify the iPBX's XML port with (default: the system's CA store)");
  o.Flag("xml-insecure-skip-verify", server.xml_insecure_skip_verify,
         "do not verify the iPBX's XML port's certificate nor its host name (anyone on the "
         "path can then impersonate the iPBX)");
}

absl::Status Config::Validate() const {
  if (server.threads < 1 || server.threads > 256) {
    return OptionError("threads", "between 1 and 256");
  }
  if (server.ban_misses < 1) return OptionError("ban-misses", "1 or more");
  if (server.ban_mac_misses < 1) return OptionError("ban-mac-misses", "1 or more");
  if (server.max_connections < 1) return OptionError("max-connections", "1 or more");
  if (server.max_connections_per_source < 1) {
    return OptionError("max-connections-per-source", "1 or more");
  }
  if (ban_window_seconds < 1 || ban_seconds < 1 || idle_seconds < 1 || header_seconds < 1) {
    return OptionError(
        "ban-window-seconds, ban-seconds, idle-timeout-seconds, header-timeout-seconds",
        "1 or more");
  }
  if (xml_timeout_ms < 100 || xml_timeout_ms > 60000) {
    return OptionError("xml-timeout-ms", "between 100 and 60000");
  }
  if (server.xml_insecure_skip_verify && !server.xml_ca_file.empty()) {
    return OptionError("xml-insecure-skip-verify and xml-ca-file", "one or the other");
  }
  if (max_file_mb < 1) return OptionError("max-file-mb", "1 or more");
  return absl::OkStatus();
}

ServerOptions Config::Server() const {
  ServerOptions o = server;
  o.ban_window = absl::Seconds(ban_window_seconds);
  o.ban_length = absl::Seconds(ban_seconds);
  o.idle_timeout = absl::Seconds(idle_seconds);
  o.header_timeout = absl::Seconds(header_seconds);
  o.xml_timeout = absl::Milliseconds(xml_timeout_ms);
  return o;
}

}  // namespace rwg::provisioning
