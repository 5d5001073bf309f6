// The sync API's HTTPS listener (R-SYNC): TLS 1.2+ on Boost.Beast/Asio, with the limits an
// internet-facing listener needs: connections in all and per source (an IPv4 address or an
// IPv6 /64), a deadline for a request's header and body however slowly they come, an idle
// deadline between requests, and bounded header and body sizes. Requests go to an HttpHandler
// on a small pool of worker threads (handlers may wait on Redis); a handler answers now or
// later (a long poll), from any thread, exactly once.
#pragma once

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace rwg::sync {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as sent
  std::string host;    // the Host header
  std::string authorization;
  std::string content_type;
  std::string body;
  std::string source;  // the peer's address ("192.0.2.7", "2001:db8::1")
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
};

// Answers one request. Called on a worker thread; the answer goes through `respond`, once.
class HttpHandler {
 public:
  using Respond = std::function<void(HttpResponse)>;
  virtual ~HttpHandler() = default;
  virtual void Handle(HttpRequest request, Respond respond) = 0;
};

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8443";  // host:port; port 0 picks one
  std::string cert_file;
  std::string key_file;
  int io_threads = 1;
  int worker_threads = 4;
  int max_connections = 512;
  int max_connections_per_source = 16;
  absl::Duration handshake_timeout = absl::Seconds(10);
  // From a request's first byte (or the connection's start) to its last.
  absl::Duration request_timeout = absl::Seconds(15);
  // Waiting for the next request on a kept-alive connection.
  absl::Duration idle_timeout = absl::Seconds(60);
  // Writing an answer.
  absl::Duration write_timeout = absl::Seconds(30);
  size_t max_header_bytes = size_t{16} * 1024;
  size_t max_body_bytes = size_t{1024} * 1024;
};

class HttpServer {
 public:
  // `handler` must outlive the server.
  HttpServer(const HttpServerOptions& options, HttpHandler& handler,
             prometheus::Registry& registry);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the certificate and key (InvalidArgument naming the option), listens and serves.
  absl::Status Start();
  // Stops accepting, closes every connection and waits for the threads; answers given later
  // are dropped.
  void Stop();
  int port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwg::sync
