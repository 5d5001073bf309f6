// The provisioning HTTPS server (see server.h): ProvisioningServer::Impl puts the parts
// together and owns them: the server's TLS settings, one listening socket and serving thread
// per Worker (worker.h), the RequestHandler (request_handler.h) with the store and its file
// cache (file_cache.h), and the XmlProxy (xml_proxy.h).
#include "services/provisioning/server.h"

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/error.hpp>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/connections_per_source.h"
#include "services/core/tls_identity.h"
#include "services/provisioning/answer.h"
#include "services/provisioning/request_handler.h"
#include "services/provisioning/worker.h"
#include "services/provisioning/xml_proxy.h"

namespace rwg::provisioning {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

class ProvisioningServer::Impl {
 public:
  Impl(ServerOptions options, SharedState& state, core::Clock& clock,
       prometheus::Registry& registry)
      : options_(std::move(options)),
        errors_(registry),
        handler_(options_, state, clock, registry),
        per_source_(options_.max_connections_per_source,
                    static_cast<size_t>(std::max(1, options_.max_connections))),
        tls_(ssl::context::tls_server),
        registry_(registry),
        metrics_(registry),
        proxy_(NewXmlProxy({.timeout = options_.xml_timeout,
                            .ca_file = options_.xml_ca_file,
                            .insecure_skip_verify = options_.xml_insecure_skip_verify},
                           errors_, registry)),
        context_{options_, tls_.native_handle(), state,   clock, handler_, *proxy_,
                 errors_,  per_source_,          metrics_} {}

  absl::Status Start();
  void Stop();
  int port() const { return port_; }

 private:
  ServerOptions options_;
  InternalErrors errors_;
  RequestHandler handler_;
  core::ConnectionsPerSource per_source_;
  // The certificate, read again when its files change; outlives the context that calls it.
  std::unique_ptr<core::CertificateWatcher> certificate_;
  ssl::context tls_;
  prometheus::Registry& registry_;
  ConnectionMetrics metrics_;
  std::unique_ptr<XmlProxy> proxy_;
  WorkerContext context_;
  int port_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
};

absl::Status ProvisioningServer::Impl::Start() {
  if (absl::Status s = handler_.OpenStore(); !s.ok()) return s;
  // TLS 1.2 and 1.3 only; OpenSSL's default ciphers, server preference.
  SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
  tls_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::single_dh_use);
  SSL_CTX_set_options(tls_.native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Resumption goes by session tickets (stateless), so no server-side session cache: it
  // would cost an insertion per handshake and a sweep of the whole cache every 255.
  SSL_CTX_set_session_cache_mode(tls_.native_handle(), SSL_SESS_CACHE_OFF);
  // One TLS 1.3 ticket per connection, not OpenSSL's two: a phone fetches its files one
  // connection after another, and each resumed connection brings it a fresh ticket. The second
  // cost every handshake a copy of the session and its encryption.
  SSL_CTX_set_num_tickets(tls_.native_handle(), 1);
  // Read what the socket holds in one go, not a record header then its body.
  SSL_CTX_set_read_ahead(tls_.native_handle(), 1);
  absl::StatusOr<std::unique_ptr<core::CertificateWatcher>> certificate =
      core::CertificateWatcher::Create({.endpoint = "https",
                                        .cert_file = options_.cert_file,
                                        .key_file = options_.key_file,
                                        .cert_option = "https-cert-file",
                                        .key_option = "https-key-file"},
                                       registry_);
  if (!certificate.ok()) return certificate.status();
  certificate_ = *std::move(certificate);
  certificate_->InstallOn(tls_.native_handle());
  if (absl::Status s = proxy_->Start(); !s.ok()) return s;
  const size_t colon = options_.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen: '", options_.listen, "' is not host:port"));
  }
  std::string host = options_.listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  asio::ip::address address = asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("listen: '", host, "' is not an IP address"));
  }
  tcp::endpoint ep(address, static_cast<unsigned short>(port));
  // One listening socket per serving thread on the same address (SO_REUSEPORT).
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    const int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (fd >= 0) {
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    tcp::endpoint bind_to(address, static_cast<unsigned short>(i == 0 ? port : port_));
    if (fd < 0 || ::bind(fd, bind_to.data(), static_cast<socklen_t>(bind_to.size())) != 0 ||
        ::listen(fd, SOMAXCONN) != 0) {
      const std::string why = strerror(errno);
      if (fd >= 0) ::close(fd);
      workers_.clear();
      return absl::UnavailableError(absl::StrCat("listen on ", options_.listen, ": ", why));
    }
    if (i == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in&>(ss).sin_port
                                            : reinterpret_cast<sockaddr_in6&>(ss).sin6_port);
    }
    absl::StatusOr<std::unique_ptr<Worker>> w = NewWorker(context_, fd);
    if (!w.ok()) return w.status();
    workers_.push_back(*std::move(w));
  }
  for (auto& w : workers_) threads_.emplace_back([w = w.get()]() { w->Run(); });
  return absl::OkStatus();
}

void ProvisioningServer::Impl::Stop() {
  for (auto& w : workers_) w->Stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  proxy_->Stop();
  workers_.clear();  // closes the connections left
  handler_.CloseStore();
}

ProvisioningServer::ProvisioningServer(ServerOptions options, SharedState& state,
                                       core::Clock& clock, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), state, clock, registry)) {}
ProvisioningServer::~ProvisioningServer() { Stop(); }
absl::Status ProvisioningServer::Start() { return impl_->Start(); }
void ProvisioningServer::Stop() { impl_->Stop(); }
int ProvisioningServer::port() const { return impl_->port(); }

}  // namespace rwg::provisioning
