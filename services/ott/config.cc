#include "services/ott/config.h"

#include "services/core/service_main.h"

namespace rwg::ott {

using core::OptionError;

void Config::Register(core::Options& o) {
  o.Add("listen", listen, "HTTPS listener, host:port (443 in front of it on Kubernetes)");
  o.Add("cert-dir", cert_dir,
        "directory of certificates: <dir>/<fqdn>/tls.crt and tls.key, read again when they "
        "change");
  o.Add("threads", threads, "serving threads, each with its own listening socket");
  o.Add("max-connections", max_connections, "open HTTPS connections; more are closed at once");
  o.Add("max-connections-per-source", max_connections_per_source,
        "open connections one source (IPv4 address, IPv6 /64) may hold");
  o.Add("requests-per-source", requests_per_source,
        "requests per second one source may make (bursts of twice as many); more get 429");
  o.Add("ban-refusals", ban_refusals,
        "refusals (unknown host, path off the lists, failed login) from one source within a "
        "minute that ban it for 10 minutes");
  o.Add("backend-connect-timeout-seconds", backend_connect_timeout_seconds,
        "the application must accept the connection (and TLS) within this, else 502");
  o.Add("backend-timeout-seconds", backend_timeout_seconds,
        "the application's answer must start within this, else 504");
  o.Add("header-timeout-seconds", header_timeout_seconds,
        "a connection's TLS handshake and first request header must come within this");
  o.Add("idle-timeout-seconds", idle_timeout_seconds,
        "a kept-alive connection waiting for its next request is closed after this");
  o.Add("session-minutes", session_minutes, "length of an rwg login session (admin paths)");
  o.Add("login-failures", login_failures, "failed logins in a row that lock an account");
  o.Add("lockout-minutes", lockout_minutes, "how long a locked account stays locked");
  o.Add("max-request-body-mib", max_request_body_mib, "largest request body forwarded (MiB)");
  o.Add("access-log", access_log, "one log line per request (true/false)");
}

absl::Status Config::Validate() const {
  auto range = [](const char* name, int v, int lo, int hi) -> absl::Status {
    if (v < lo || v > hi) {
      return OptionError(name, absl::StrCat("between ", lo, " and ", hi));
    }
    return absl::OkStatus();
  };
  if (cert_dir.empty()) return OptionError("cert-dir", "required");
  for (absl::Status s :
       {range("threads", threads, 1, 64), range("max-connections", max_connections, 1, 1000000),
        range("max-connections-per-source", max_connections_per_source, 1, 100000),
        range("requests-per-source", requests_per_source, 1, 1000000),
        range("ban-refusals", ban_refusals, 1, 100000),
        range("backend-connect-timeout-seconds", backend_connect_timeout_seconds, 1, 300),
        range("backend-timeout-seconds", backend_timeout_seconds, 1, 3600),
        range("header-timeout-seconds", header_timeout_seconds, 1, 300),
        range("idle-timeout-seconds", idle_timeout_seconds, 1, 3600),
        range("session-minutes", session_minutes, 1, 7 * 24 * 60),
        range("login-failures", login_failures, 1, 100),
        range("lockout-minutes", lockout_minutes, 1, 24 * 60),
        range("max-request-body-mib", max_request_body_mib, 1, 4096)}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

ProxyOptions Config::Proxy() const {
  ProxyOptions p;
  p.listen = listen;
  p.threads = threads;
  p.max_connections = max_connections;
  p.max_connections_per_source = max_connections_per_source;
  p.header_timeout = absl::Seconds(header_timeout_seconds);
  p.idle_timeout = absl::Seconds(idle_timeout_seconds);
  p.backend_connect_timeout = absl::Seconds(backend_connect_timeout_seconds);
  p.backend_timeout = absl::Seconds(backend_timeout_seconds);
  p.max_request_body_bytes = static_cast<uint64_t>(max_request_body_mib) << 20;
  p.login.failures = login_failures;
  p.login.lockout = absl::Minutes(lockout_minutes);
  p.login.session = absl::Minutes(session_minutes);
  p.access_log = access_log;
  return p;
}

StateOptions Config::State() const {
  StateOptions s;
  s.requests_per_second = requests_per_source;
  s.ban_refusals = ban_refusals;
  return s;
}

}  // namespace rwg::ott
