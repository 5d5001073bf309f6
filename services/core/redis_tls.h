// Redis over TLS (Redis 6+ `tls-port`) for clients built on hiredis 0.14, which speaks only
// plaintext: a tunnel inside the process.
//
// For each Redis address (host:port) a client connects to, the tunnel listens on a Unix socket
// in a directory of its own (mode 0700, under $TMPDIR or /tmp); hiredis connects there, and the
// tunnel carries the bytes over a TLS connection it makes to the address. One thread per
// connection (a service holds a handful: its pool, a subscription, the Sentinel checks).
//
// TLS 1.2 or later; Redis's certificate is always verified: against `ca_file`, or the system's
// trust store when none is given, for `server_name`, or the address's host when none is given
// (an IP address is then checked against the certificate's IP addresses). With Sentinel, the
// master's address is an IP address the sentinels give: set `server_name` to the name in the
// Redis certificates. A client certificate is presented when Redis asks for one
// (`tls-auth-clients`). The CA file and the client pair are read for every new connection, so
// rotated files are used from the next connection on without a restart.
//
// The process must ignore SIGPIPE (rwg's services do): a write toward a Redis that has just
// closed its end would raise it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rwg::core {

struct RedisTlsOptions {
  std::string ca_file;      // PEM CAs that sign Redis's certificate; empty: the system's
  std::string cert_file;    // client certificate chain (PEM), with key_file, or neither
  std::string key_file;     // its private key
  std::string server_name;  // the name Redis's certificate must carry; empty: the host
  absl::Duration handshake_timeout = absl::Seconds(5);  // TCP connect + TLS handshake
  size_t max_connections = 256;                         // at once, every address together
  size_t max_addresses = 64;  // Redis addresses known at once (Sentinel, failovers)
};

class RedisTlsTunnel {
 public:
  // Checks that the files are readable and usable (errors name the option: redis-ca-file,
  // redis-cert-file, redis-key-file) and makes the socket directory.
  static absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> Start(RedisTlsOptions options);
  virtual ~RedisTlsTunnel() = default;

  // "unix:<socket>" that carries a connection to `address` (host:port or [v6]:port) over TLS.
  // The same address gives the same socket while it is known. With max_addresses known, a new
  // one retires the address used least recently that carries no connection (its socket goes;
  // a new socket never takes a retired one's name). InvalidArgument for a malformed address,
  // ResourceExhausted when all max_addresses carry connections.
  virtual absl::StatusOr<std::string> LocalAddress(const std::string& address) = 0;

  // How many addresses are known (each has a socket and a thread waiting on it).
  virtual size_t addresses() const = 0;

  // Why the last connection to `address` failed (connect, handshake, verification), or empty
  // when the last one succeeded or none was tried. For the errors clients report: hiredis
  // only sees its Unix connection closed.
  virtual std::string LastError(const std::string& address) const = 0;
};

}  // namespace rwg::core
