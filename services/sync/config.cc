#include "services/sync/config.h"

#include "services/core/service_main.h"

namespace rwg::sync {

using core::OptionError;

void Config::Register(core::Options& o) {
  o.Add("listen", server.listen, "host:port the iPBX calls the sync API on (HTTPS)");
  o.Add("https-cert-file", server.cert_file, "PEM certificate chain of the HTTPS port")->required();
  o.Add("https-key-file", server.key_file, "PEM private key of the HTTPS port")->required();
  o.Add("worker-threads", server.worker_threads, "threads answering requests");
  o.Add("max-connections", server.max_connections,
        "open HTTPS connections at most; more are closed at once");
  o.Add("max-connections-per-source", server.max_connections_per_source,
        "open HTTPS connections one source (an IPv4 address, an IPv6 /64) may hold");
  o.Add("request-timeout-seconds", request_timeout_seconds,
        "a request must arrive whole within this of its connection's start");
  o.Add("idle-timeout-seconds", idle_timeout_seconds,
        "a kept-alive connection waiting for its next request is closed after this");
  o.Add("timestamp-window-seconds", window_seconds,
        "how far a request's oauth_timestamp may be from rwg's clock, either way");
  o.Add("max-wait-seconds", max_wait_seconds, "longest wait= of a changes request (long poll)");
  o.Add("max-waiting", max_waiters, "changes requests waiting at once; more are answered 503");
  o.Add("realm", realm, "the realm of WWW-Authenticate: OAuth in refusals");
  o.Add("callback-ca-file", callback_ca_file,
        "PEM CA certificates a consumer's callback server must chain to (default: the system's)");
  o.Add("callback-timeout-seconds", callback_timeout_seconds,
        "a change notice POSTed to a callback URL must be answered within this");
}

absl::Status Config::Validate() const {
  if (server.worker_threads < 1 || server.worker_threads > 64) {
    return OptionError("worker-threads", "between 1 and 64");
  }
  if (server.max_connections < 1) return OptionError("max-connections", "1 or more");
  if (server.max_connections_per_source < 1) {
    return OptionError("max-connections-per-source", "1 or more");
  }
  if (request_timeout_seconds < 1) return OptionError("request-timeout-seconds", "1 or more");
  if (idle_timeout_seconds < 1) return OptionError("idle-timeout-seconds", "1 or more");
  if (window_seconds < 10 || window_seconds > 3600) {
    return OptionError("timestamp-window-seconds", "between 10 and 3600");
  }
  if (max_wait_seconds < 0 || max_wait_seconds > 300) {
    return OptionError("max-wait-seconds", "between 0 and 300");
  }
  if (max_waiters < 1) return OptionError("max-waiting", "1 or more");
  if (callback_timeout_seconds < 1 || callback_timeout_seconds > 60) {
    return OptionError("callback-timeout-seconds", "between 1 and 60");
  }
  if (realm.empty() || realm.find_first_of("\"\\\r\n") != std::string::npos) {
    return OptionError("realm", "a non-empty name without quotes, backslashes or line breaks");
  }
  return absl::OkStatus();
}

HttpServerOptions Config::Server() const {
  HttpServerOptions o = server;
  o.request_timeout = absl::Seconds(request_timeout_seconds);
  o.idle_timeout = absl::Seconds(idle_timeout_seconds);
  return o;
}

SyncApiOptions Config::Api() const {
  SyncApiOptions o;
  o.realm = realm;
  o.max_wait = absl::Seconds(max_wait_seconds);
  o.max_waiters = max_waiters;
  o.window = absl::Seconds(window_seconds);
  return o;
}

HttpsPosterOptions Config::Callbacks() const {
  HttpsPosterOptions o;
  o.ca_file = callback_ca_file;
  o.timeout = absl::Seconds(callback_timeout_seconds);
  return o;
}

}  // namespace rwg::sync
