#include "services/sync/http_server.h"

#include <openssl/ssl.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <array>
#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/address.h"
#include "services/core/connections_per_source.h"
#include "services/core/log.h"
#include "services/core/tls_identity.h"

namespace rwg::sync {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// What every connection shares with the server; kept alive by the connections themselves, so
// that a connection a handler still holds (a long poll) may outlive the server object.
struct Shared {
  Shared(const HttpServerOptions& o, HttpHandler& h, prometheus::Registry& registry)
      : options(o),
        handler(h),
        per_source(o.max_connections_per_source, static_cast<size_t>(o.max_connections)),
        open(prometheus::BuildGauge()
                 .Name("rwg_sync_connections_open")
                 .Help("HTTPS connections open on the sync API")
                 .Register(registry)
                 .Add({})),
        refused_family(prometheus::BuildCounter()
                           .Name("rwg_sync_connections_refused_total")
                           .Help("HTTPS connections closed at once or failed before a request, "
                                 "by reason")
                           .Register(registry)),
        over_source(refused_family.Add({{"reason", "per_source_limit"}})),
        over_total(refused_family.Add({{"reason", "connection_limit"}})),
        handshake(refused_family.Add({{"reason", "tls_handshake"}})),
        bad_request(refused_family.Add({{"reason", "bad_request"}})),
        timeout(refused_family.Add({{"reason", "timeout"}})) {}

  HttpServerOptions options;
  HttpHandler& handler;
  core::ConnectionsPerSource per_source;
  std::atomic<int> connections{0};
  prometheus::Gauge& open;
  prometheus::Family<prometheus::Counter>& refused_family;
  prometheus::Counter& over_source;
  prometheus::Counter& over_total;
  prometheus::Counter& handshake;
  prometheus::Counter& bad_request;
  prometheus::Counter& timeout;
  std::atomic<bool> stopping{false};
};

HttpResponse PlainError(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = absl::StrCat(R"({"error":")", message, "\"}");
  return r;
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, ssl::context& tls, std::shared_ptr<Shared> shared,
             asio::thread_pool& workers, std::string source, std::string source_key)
      : stream_(std::move(socket), tls),
        shared_(std::move(shared)),
        workers_(workers),
        source_(std::move(source)),
        source_key_(std::move(source_key)) {
    shared_->open.Increment();
  }
  ~Connection() {
    shared_->per_source.Release(source_key_);
    shared_->connections.fetch_sub(1);
    shared_->open.Decrement();
  }

  void Start() {
    beast::get_lowest_layer(stream_).expires_after(Chrono(shared_->options.handshake_timeout));
    stream_.async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](beast::error_code ec) {
                              if (ec) {
                                self->shared_->handshake.Increment();
                                return;
                              }
                              self->Read(true);
                            });
  }

 private:
  void Read(bool first) {
    if (shared_->stopping.load()) return;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_->options.max_header_bytes));
    parser_->body_limit(shared_->options.max_body_bytes);
    beast::get_lowest_layer(stream_).expires_after(
        Chrono(first ? shared_->options.request_timeout : shared_->options.idle_timeout));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset) {
      return;  // the client closed
    }
    if (ec == beast::error::timeout) {
      if (buffer_.size() > 0 || parser_->got_some()) shared_->timeout.Increment();
      return;
    }
    if (ec) {
      shared_->bad_request.Increment();
      const int status = ec == http::error::body_limit     ? 413
                         : ec == http::error::header_limit ? 431
                                                           : 400;
      HttpResponse r =
          PlainError(status, status == 413   ? "request body too large"
                             : status == 431 ? "request header too large"
                                             : absl::StrCat("malformed request: ", ec.message()));
      keep_alive_ = false;
      Write(std::move(r));
      return;
    }
    const http::request<http::string_body>& req = parser_->get();
    keep_alive_ = req.keep_alive();
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    request.host = std::string(req[http::field::host]);
    request.authorization = std::string(req[http::field::authorization]);
    request.content_type = std::string(req[http::field::content_type]);
    request.body = req.body();
    request.source = source_;
    // The handler may wait on Redis: off the I/O thread. No read is pending meanwhile, so no
    // deadline runs while a long poll waits.
    beast::get_lowest_layer(stream_).expires_never();
    asio::post(workers_, [self = shared_from_this(), request = std::move(request)]() mutable {
      auto answered = std::make_shared<std::atomic<bool>>(false);
      HttpHandler::Respond respond = [self, answered](HttpResponse r) {
        if (answered->exchange(true)) return;
        asio::post(self->stream_.get_executor(),
                   [self, r = std::move(r)]() mutable { self->Write(std::move(r)); });
      };
      try {
        self->shared_->handler.Handle(std::move(request), respond);
      } catch (const std::exception& e) {
        core::log::Error("sync request failed", {{"error", e.what()}});
        respond(PlainError(500, "internal error"));
      } catch (...) {
        core::log::Error("sync request failed", {{"error", "unknown exception"}});
        respond(PlainError(500, "internal error"));
      }
    });
  }

  void Write(HttpResponse r) {
    if (shared_->stopping.load()) return;
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(r.status));
    res->set(http::field::server, "rwg-sync");
    res->set(http::field::content_type, r.content_type);
    res->set(http::field::cache_control, "no-store");
    for (const auto& [name, value] : r.headers) res->set(name, value);
    res->keep_alive(keep_alive_);
    res->body() = std::move(r.body);
    res->prepare_payload();
    beast::get_lowest_layer(stream_).expires_after(Chrono(shared_->options.write_timeout));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec) {
                          self->Close();
                        } else if (!self->keep_alive_) {
                          self->Linger();
                        } else {
                          self->Read(false);
                        }
                      });
  }

  // Before closing after an answer, reads and drops what the client is still sending (the
  // rest of a body or header refused as too large) for a moment: closing with unread data
  // would reset the connection, and the client could lose the answer.
  void Linger() {
    if (lingered_ == 0) {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    }
    if (lingered_ > 4 * shared_->options.max_body_bytes) {
      Close();
      return;
    }
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) {
                                self->Close();
                                return;
                              }
                              self->lingered_ += n + 1;
                              self->Linger();
                            });
  }

  void Close() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().close(ignored);
    });
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  std::shared_ptr<Shared> shared_;
  asio::thread_pool& workers_;
  std::string source_;
  std::string source_key_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  size_t lingered_ = 0;
  std::array<char, 16384> drain_{};
};

}  // namespace

class HttpServer::Impl {
 public:
  Impl(const HttpServerOptions& options, HttpHandler& handler, prometheus::Registry& registry)
      : shared_(std::make_shared<Shared>(options, handler, registry)),
        registry_(registry),
        tls_(ssl::context::tls_server),
        acceptor_(asio::make_strand(io_)),
        workers_(static_cast<size_t>(std::max(1, options.worker_threads))) {}
  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop();
  int port() const { return port_; }

 private:
  void Accept();

  std::shared_ptr<Shared> shared_;
  asio::io_context io_;
  prometheus::Registry& registry_;
  // The certificate, read again when its files change; outlives the context that calls it.
  std::unique_ptr<core::CertificateWatcher> certificate_;
  ssl::context tls_;
  tcp::acceptor acceptor_;
  asio::thread_pool workers_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  bool stopped_ = false;
};

absl::Status HttpServer::Impl::Start() {
  const HttpServerOptions& o = shared_->options;
  SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
  tls_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::single_dh_use);
  SSL_CTX_set_options(tls_.native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  absl::StatusOr<std::unique_ptr<core::CertificateWatcher>> certificate =
      core::CertificateWatcher::Create({.endpoint = "https",
                                        .cert_file = o.cert_file,
                                        .key_file = o.key_file,
                                        .cert_option = "https-cert-file",
                                        .key_option = "https-key-file"},
                                       registry_);
  if (!certificate.ok()) return certificate.status();
  certificate_ = *std::move(certificate);
  certificate_->InstallOn(tls_.native_handle());
  const size_t colon = o.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(o.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("listen: '", o.listen, "' is not host:port"));
  }
  std::string host = o.listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host.empty() ? "::" : host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("listen: '", host, "' is not an IP address"));
  }
  const tcp::endpoint ep(address, static_cast<uint16_t>(port));
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", o.listen, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  Accept();
  for (int i = 0; i < std::max(1, o.io_threads); ++i) {
    threads_.emplace_back([this] {
      try {
        io_.run();
      } catch (const std::exception& e) {
        core::log::Error("sync listener thread failed", {{"error", e.what()}});
      }
    });
  }
  return absl::OkStatus();
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      beast::error_code peer_ec;
      const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
      std::string source = peer_ec ? "" : peer.address().to_string();
      if (peer.address().is_v6() && peer.address().to_v6().is_v4_mapped()) {
        source = asio::ip::make_address_v4(asio::ip::v4_mapped, peer.address().to_v6()).to_string();
      }
      const std::string key = core::SourceKey(source);
      if (shared_->connections.fetch_add(1) >= shared_->options.max_connections) {
        shared_->connections.fetch_sub(1);
        shared_->over_total.Increment();
        socket.close(peer_ec);
      } else if (!shared_->per_source.Acquire(key)) {
        shared_->connections.fetch_sub(1);
        shared_->over_source.Increment();
        socket.close(peer_ec);
      } else {
        std::make_shared<Connection>(std::move(socket), tls_, shared_, workers_, source, key)
            ->Start();
      }
    }
    Accept();
  });
}

void HttpServer::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  shared_->stopping.store(true);
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
  });
  io_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  workers_.join();
}

HttpServer::HttpServer(const HttpServerOptions& options, HttpHandler& handler,
                       prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(options, handler, registry)) {}
HttpServer::~HttpServer() = default;
absl::Status HttpServer::Start() { return impl_->Start(); }
void HttpServer::Stop() { impl_->Stop(); }
int HttpServer::port() const { return impl_->port(); }

}  // namespace rwg::sync
