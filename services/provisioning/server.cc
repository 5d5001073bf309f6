#include "services/provisioning/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/optional.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/core/address.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/provisioning/http_rules.h"
#include "services/provisioning/limits.h"
#include "services/provisioning/misses.h"
#include "services/provisioning/request_path.h"

namespace rwg::provisioning {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// An open file of the store, closed when the last response using it is written.
struct OpenFile {
  explicit OpenFile(int f) : fd(f) {}
  ~OpenFile() {
    if (fd >= 0) ::close(fd);
  }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  int fd;
};

using Request = http::request<http::empty_body>;

// Small files of the store kept in memory with their validators, checked against the file
// system (one fstatat) on every request: a replaced or rewritten file is read again at once.
class FileCache {
 public:
  static constexpr uint64_t kMaxFile = uint64_t{256} * 1024;
  static constexpr uint64_t kMaxTotal = uint64_t{64} * 1024 * 1024;

  struct Entry {
    FileInfo info;
    std::string etag;
    std::shared_ptr<const std::string> data;
    // Header lines every answer for the file carries (ETag, Last-Modified, Accept-Ranges,
    // Cache-Control), and its Content-Type line: rendered once.
    std::string validators;
    std::string type;
  };

  std::shared_ptr<const Entry> Get(const std::string& name, const FileInfo& now) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return nullptr;
    const FileInfo& was = it->second->info;
    if (was.inode != now.inode || was.size != now.size || was.modified != now.modified) {
      total_ -= it->second->info.size;
      entries_.erase(it);
      return nullptr;
    }
    return it->second;
  }

  void Put(const std::string& name, std::shared_ptr<const Entry> e) {
    absl::MutexLock lock(&mu_);
    if (total_ + e->info.size > kMaxTotal) {
      entries_.clear();
      total_ = 0;
    }
    auto [it, added] = entries_.try_emplace(name, e);
    if (added) total_ += e->info.size;
  }

 private:
  absl::Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
};

// Sources whose unknown-MAC requests are counted at once: each may hold up to
// --ban-mac-misses MAC addresses, so fewer than the hash misses' 100,000.
constexpr size_t kMaxMacMissSources = 10000;

// The Date header, formatted once a second per thread.
const std::string& DateNow(absl::Time now) {
  thread_local int64_t second = -1;
  thread_local std::string text;
  const int64_t s = absl::ToUnixSeconds(now);
  if (s != second) {
    second = s;
    text = HttpDate(now);
  }
  return text;
}

FileInfo InfoOf(const struct stat& st) {
  FileInfo info;
  info.size = static_cast<uint64_t>(st.st_size);
  info.inode = static_cast<uint64_t>(st.st_ino);
  info.modified = absl::TimeFromTimespec(st.st_mtim);
  return info;
}

}  // namespace

class ProvisioningServer::Impl {
 public:
  Impl(ServerOptions options, SharedState& state, core::Clock& clock,
       prometheus::Registry& registry)
      : options_(std::move(options)),
        state_(state),
        clock_(clock),
        misses_(options_.ban_misses, options_.ban_window, clock),
        mac_misses_(options_.ban_mac_misses, options_.ban_window, clock, kMaxMacMissSources),
        per_source_(options_.max_connections_per_source,
                    static_cast<size_t>(std::max(1, options_.max_connections))),
        tls_(ssl::context::tls_server),
        client_tls_(ssl::context::tls_client),
        requests_(prometheus::BuildCounter()
                      .Name("rwg_provisioning_requests_total")
                      .Help("Requests answered, by status and file kind")
                      .Register(registry)),
        bytes_(prometheus::BuildCounter()
                   .Name("rwg_provisioning_bytes_total")
                   .Help("Body bytes sent")
                   .Register(registry)
                   .Add({})),
        hash_misses_(prometheus::BuildCounter()
                         .Name("rwg_provisioning_hash_misses_total")
                         .Help("Requests under a wrong or missing hash")
                         .Register(registry)
                         .Add({})),
        mac_misses_total_(prometheus::BuildCounter()
                              .Name("rwg_provisioning_mac_misses_total")
                              .Help("Requests under the hash for a MAC file the store does not "
                                    "have")
                              .Register(registry)
                              .Add({})),
        bans_(prometheus::BuildCounter()
                  .Name("rwg_provisioning_bans_total")
                  .Help("Sources banned for missing the hash, or asking for unknown MAC files, "
                        "too often")
                  .Register(registry)
                  .Add({})),
        refused_(prometheus::BuildCounter()
                     .Name("rwg_provisioning_refused_connections_total")
                     .Help("Connections closed at once, by reason (banned, limit, source_limit)")
                     .Register(registry)),
        internal_errors_(prometheus::BuildCounter()
                             .Name("rwg_provisioning_internal_errors_total")
                             .Help("Failures inside the service while serving (the request got "
                                   "500, or its connection was closed); it keeps serving")
                             .Register(registry)
                             .Add({})),
        timeouts_(prometheus::BuildCounter()
                      .Name("rwg_provisioning_timeouts_total")
                      .Help("Connections closed for being too slow, by phase (handshake: TLS "
                            "handshake; header: a request header not complete in time; idle: "
                            "no next request, or a response not read; proxy: no answer from "
                            "the XML proxy)")
                      .Register(registry)),
        connections_(prometheus::BuildGauge()
                         .Name("rwg_provisioning_connections")
                         .Help("Open HTTPS connections")
                         .Register(registry)
                         .Add({})),
        upstream_seconds_(prometheus::BuildHistogram()
                              .Name("rwg_provisioning_upstream_seconds")
                              .Help("Time the iPBX's XML port took to answer a proxied request")
                              .Register(registry)
                              .Add({}, prometheus::Histogram::BucketBoundaries{
                                           0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})) {
    // Every series an alert or a dashboard reads exists from the start, at 0.
    for (const char* reason : {"banned", "limit", "source_limit"}) {
      refused_.Add({{"reason", reason}});
    }
    for (const char* phase : {"handshake", "header", "idle", "proxy"}) {
      timeouts_.Add({{"phase", phase}});
    }
  }

  absl::Status Start();
  void Stop();
  int port() const { return port_; }

  class Worker;

  // The answer to one request: status, headers and a body of one of three kinds.
  struct Answer {
    http::status status = http::status::ok;
    std::string kind = "other";
    std::string text;  // error bodies
    std::shared_ptr<OpenFile> file;
    std::shared_ptr<const std::string> memory;
    std::shared_ptr<const FileCache::Entry> entry;  // a file's prebuilt header lines
    bool with_type = false;                         // ...its Content-Type line too
    uint64_t offset = 0;
    uint64_t length = 0;
    std::vector<std::pair<http::field, std::string>> headers;
    bool head = false;
    bool close = false;  // end the connection after this answer
    bool proxy = false;  // to be answered by the iPBX's XML port (Worker::Proxy)
  };
  // `source` is the requester's core::SourceKey (what misses and bans go by).
  Answer Handle(const Request& req, const std::string& source);
  void Count(const Answer& a, uint64_t body_bytes) {
    // Each thread keeps the counters it used (Family::Add hashes the labels under a lock).
    thread_local std::unordered_map<std::string, prometheus::Counter*> counters;
    std::string key = absl::StrCat(static_cast<int>(a.status), "/", a.kind);
    auto it = counters.find(key);
    if (it == counters.end()) {
      prometheus::Counter& c =
          requests_.Add({{"status", std::to_string(static_cast<int>(a.status))}, {"kind", a.kind}});
      it = counters.emplace(std::move(key), &c).first;
    }
    it->second->Increment();
    bytes_.Increment(static_cast<double>(body_bytes));
  }
  bool AccessLog() const { return options_.access_log; }
  absl::Duration IdleTimeout() const { return options_.idle_timeout; }
  absl::Duration HeaderTimeout() const { return options_.header_timeout; }
  ssl::context& tls() { return tls_; }
  bool Banned(const std::string& ip) const { return state_.Banned(ip); }
  XmlUpstream Upstream() const { return state_.Upstream(); }
  const std::string& Date() const { return DateNow(clock_.Now()); }
  ssl::context& client_tls() { return client_tls_; }
  asio::any_io_executor proxy_executor() { return ioc_.get_executor(); }
  bool VerifyUpstream() const { return !options_.xml_insecure_skip_verify; }
  absl::Duration XmlTimeout() const { return options_.xml_timeout; }
  void ObserveUpstream(absl::Duration d) { upstream_seconds_.Observe(absl::ToDoubleSeconds(d)); }
  void CountRefused(const char* reason) { refused_.Add({{"reason", reason}}).Increment(); }
  void CountTimeout(const char* phase) { timeouts_.Add({{"phase", phase}}).Increment(); }
  // Counts and logs what was thrown while serving (`where`); never throws itself.
  void InternalError(const char* where, const std::exception_ptr& thrown) noexcept {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(thrown);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    try {
      internal_errors_.Increment();
      core::log::Error("internal error while serving", {{"where", where}, {"error", what}});
    } catch (...) {
    }
  }
  // The answer to a request whose handling threw: 500, and the connection ends.
  Answer InternalErrorAnswer(const char* where, const std::exception_ptr& thrown,
                             const char* kind) {
    InternalError(where, thrown);
    Answer a;
    a.status = http::status::internal_server_error;
    a.kind = kind;
    a.text = "internal error\n";
    a.close = true;
    return a;
  }
  // The longest a connection waits for a proxied answer (the proxy ends it sooner).
  absl::Duration ProxyWaitLimit() const { return options_.xml_timeout + absl::Seconds(5); }
  ConnectionsPerSource& per_source() { return per_source_; }
  prometheus::Gauge& connections() { return connections_; }
  int ConnectionLimit() const {
    return std::max(1, options_.max_connections / std::max(1, options_.threads));
  }

 private:
  Answer Error(http::status s, const char* text, const char* kind = "other") {
    Answer a;
    a.status = s;
    a.kind = kind;
    a.text = text;
    return a;
  }
  Answer Miss(const std::string& source);
  void MacMiss(const std::string& source, const std::string& mac);
  void BanFor(const std::string& source, const std::string& reason);
  Answer ServeFile(const Request& req, const std::string& name);

  ServerOptions options_;
  SharedState& state_;
  core::Clock& clock_;
  MissCounter misses_;
  MissCounter mac_misses_;
  ConnectionsPerSource per_source_;
  FileCache cache_;
  asio::io_context ioc_;  // the XML proxy's client connections
  ssl::context tls_;
  ssl::context client_tls_;
  int store_fd_ = -1;
  int port_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::thread proxy_thread_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> proxy_work_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& bytes_;
  prometheus::Counter& hash_misses_;
  prometheus::Counter& mac_misses_total_;
  prometheus::Counter& bans_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Counter& internal_errors_;
  prometheus::Family<prometheus::Counter>& timeouts_;
  prometheus::Gauge& connections_;
  prometheus::Histogram& upstream_seconds_;
};

// One request to the iPBX's XML port over TLS, under one deadline for all of it.
class XmlCall : public std::enable_shared_from_this<XmlCall> {
 public:
  using Answer = ProvisioningServer::Impl::Answer;
  XmlCall(const asio::any_io_executor& ex, ProvisioningServer::Impl& server, XmlUpstream up,
          std::shared_ptr<http::request<http::empty_body>> req, std::function<void(Answer)> done)
      : server_(server),
        up_(std::move(up)),
        req_(std::move(req)),
        done_(std::move(done)),
        resolver_(ex),
        stream_(ex, server.client_tls()) {}

  void Run() {
    Guard([this]() { Start(); });
  }

 private:
  // Runs one step of the call; whatever it throws ends the call with a 500.
  template <typename F>
  void Guard(F&& step) {
    try {
      step();
    } catch (...) {
      Finish(server_.InternalErrorAnswer("xml proxy", std::current_exception(), "xml"));
    }
  }

  void Start() {
    started_ = absl::Now();
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(server_.XmlTimeout())));
    // Server name indication carries a host name, never an address (RFC 6066).
    beast::error_code not_ip;
    (void)asio::ip::make_address(up_.host, not_ip);  // only the error is wanted: not an address
    if (not_ip && !SSL_set_tlsext_host_name(stream_.native_handle(), up_.host.c_str())) {
      return Fail(
          beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
    }
    if (server_.VerifyUpstream()) {
      stream_.set_verify_mode(ssl::verify_peer);
      stream_.set_verify_callback(ssl::host_name_verification(up_.host));
    }
    resolver_.async_resolve(
        up_.host, std::to_string(up_.port),
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
          self->Guard([&]() {
            if (ec) return self->Fail(ec);
            beast::get_lowest_layer(self->stream_)
                .async_connect(r, [self](beast::error_code ec, const tcp::endpoint&) {
                  self->Guard([&]() {
                    if (ec) return self->Fail(ec);
                    self->stream_.async_handshake(ssl::stream_base::client,
                                                  [self](beast::error_code ec) {
                                                    self->Guard([&]() {
                                                      if (ec) return self->Fail(ec);
                                                      self->Write();
                                                    });
                                                  });
                  });
                });
          });
        });
  }

  void Write() {
    http::async_write(stream_, *req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->Guard([&]() {
        if (ec) return self->Fail(ec);
        self->parser_.body_limit(uint64_t{1024} * 1024);
        self->parser_.skip(self->req_->method() == http::verb::head);  // no body follows
        http::async_read(self->stream_, self->buffer_, self->parser_,
                         [self](beast::error_code ec, size_t) {
                           self->Guard([&]() {
                             if (ec) return self->Fail(ec);
                             self->Done();
                           });
                         });
      });
    });
  }

  void Done() {
    server_.ObserveUpstream(absl::Now() - started_);
    const auto& res = parser_.get();
    Answer a;
    // The iPBX's status as it is, even one Beast has no name for (it would make it 0); what
    // is not a final status is a broken answer.
    const unsigned code = res.result_int();
    a.status =
        code >= 200 && code <= 599 ? static_cast<http::status>(code) : http::status::bad_gateway;
    a.kind = "xml";
    a.text = res.body();
    // A HEAD answer: no body, the length the iPBX announced.
    if (parser_.content_length()) a.length = *parser_.content_length();
    if (auto it = res.find(http::field::content_type); it != res.end()) {
      a.headers.push_back({http::field::content_type, std::string(it->value())});
    }
    Finish(std::move(a));
  }

  void Fail(beast::error_code ec) {
    server_.ObserveUpstream(absl::Now() - started_);
    const bool timeout = ec == beast::error::timeout;
    core::log::Warn("iPBX XML port did not answer",
                    {{"upstream", absl::StrCat(up_.host, ":", up_.port)}, {"error", ec.message()}});
    Answer a;
    a.status = timeout ? http::status::gateway_timeout : http::status::bad_gateway;
    a.kind = "xml";
    a.text = timeout ? "the iPBX did not answer in time\n" : "the iPBX did not answer\n";
    Finish(std::move(a));
  }

  void Finish(Answer a) {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
    if (done_) {
      auto done = std::move(done_);
      done_ = nullptr;
      try {
        done(std::move(a));
      } catch (...) {
        // The phone's connection ends at its wait limit (Worker::SweepIdle).
        server_.InternalError("xml proxy answer", std::current_exception());
      }
    }
  }

  ProvisioningServer::Impl& server_;
  XmlUpstream up_;
  std::shared_ptr<http::request<http::empty_body>> req_;
  std::function<void(Answer)> done_;
  tcp::resolver resolver_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  absl::Time started_;
};

// One serving thread: its own listening socket (SO_REUSEPORT: the kernel spreads connections
// over the threads) and epoll set, TLS by OpenSSL directly on each connection's socket, Beast's
// parser fed with what SSL_read gives. Every connection belongs to one thread for its life.
class ProvisioningServer::Impl::Worker {
 public:
  Worker(Impl& server, int listen_fd) : server_(server), listen_fd_(listen_fd) {}
  ~Worker() {
    for (auto& [fd, c] : conns_) {
      Free(*c);
      server_.per_source().Release(c->key);
      server_.connections().Decrement();
    }
    if (ep_ >= 0) ::close(ep_);
    if (wake_ >= 0) ::close(wake_);
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  absl::Status Init() {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep_ < 0 || wake_ < 0) return absl::InternalError("epoll/eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd_;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.fd = wake_;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, wake_, &ev);
    return absl::OkStatus();
  }

  void Run() {
    epoll_event events[256];
    absl::Time swept = absl::Now();
    while (!stop_.load(std::memory_order_relaxed)) {
      const int n = ::epoll_wait(ep_, events, 256, accept_paused_until_ ? 20 : 1000);
      now_ = absl::Now();
      if (accept_paused_until_ && now_ >= *accept_paused_until_) ResumeAccepting();
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        // Nothing thrown while serving leaves the thread: it is counted and logged, the
        // connection it happened on is closed, and the others go on.
        try {
          if (fd == listen_fd_) {
            AcceptAll();
          } else if (fd == wake_) {
            uint64_t v;
            (void)!::read(wake_, &v, sizeof(v));  // resets the eventfd; EAGAIN: already reset
            TakeDelivered();
          } else if (auto it = conns_.find(fd); it != conns_.end()) {
            Drive(*it->second);
          }
        } catch (...) {
          server_.InternalError("connection", std::current_exception());
          if (auto it = conns_.find(fd); it != conns_.end()) Close(*it->second);
        }
      }
      if (now_ - swept >= absl::Seconds(1)) {
        swept = now_;
        try {
          SweepIdle();
        } catch (...) {
          server_.InternalError("sweep", std::current_exception());
        }
      }
    }
  }

  void Stop() {
    stop_ = true;
    Wake();
  }

  // A proxied request's answer, from the proxy's thread.
  void Deliver(uint64_t id, Answer a) {
    {
      absl::MutexLock lock(&mu_);
      delivered_.emplace_back(id, std::move(a));
    }
    Wake();
  }

 private:
  enum class State { kHandshake, kReading, kWaiting, kWriting };
  struct Conn {
    uint64_t id = 0;
    int fd = -1;
    SSL* ssl = nullptr;
    std::string source;  // the address, for logs and X-Forwarded-For
    std::string key;     // what limits and bans go by (core::SourceKey: an IPv6 /64)
    State state = State::kHandshake;
    std::string in;  // read and decrypted, not parsed yet
    boost::optional<http::request_parser<http::empty_body>> parser;
    std::string out;  // to encrypt and send
    size_t out_pos = 0;
    std::shared_ptr<OpenFile> file;  // a large file's body, read as it is sent
    uint64_t file_pos = 0;
    uint64_t file_left = 0;
    bool close_after = false;
    unsigned version = 11;  // the request's HTTP version (10 or 11)
    absl::Time accepted;
    absl::Time active;  // the last read or write
    // When the request being read began (its first byte; the connection's start for the
    // first request): its header must be complete within the header timeout of this.
    std::optional<absl::Time> request_began;
    // For the access log.
    absl::Time started;
    std::string method;
    std::string target;
    int status = 0;
    uint64_t body_bytes = 0;
  };

  void Wake() {
    const uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof(one));  // a full eventfd wakes the loop as well
  }

  void AcceptAll() {
    while (true) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        // Out of descriptors: stop accepting for a moment rather than spin on the socket.
        if (errno == EMFILE || errno == ENFILE) PauseAccepting();
        return;  // EAGAIN, or a connection that went away meanwhile
      }
      try {
        Admit(fd, ss);
      } catch (...) {
        server_.InternalError("accept", std::current_exception());
      }
    }
  }

  // Closes an accepted socket at once when its source is banned or holds its share of
  // connections already (or the thread holds its share), else opens a connection on it.
  // Whatever happens, the socket is either closed or a connection's.
  void Admit(int fd, const sockaddr_storage& ss) {
    std::string ip, key;
    try {
      ip = AddressText(ss);
      key = core::SourceKey(ip);
      if (server_.Banned(key)) {
        server_.CountRefused("banned");  // dropped before any TLS work
        ::close(fd);
        return;
      }
      if (static_cast<int>(conns_.size()) >= server_.ConnectionLimit()) {
        server_.CountRefused("limit");
        ::close(fd);
        return;
      }
      if (!server_.per_source().Acquire(key)) {
        server_.CountRefused("source_limit");  // this source holds its share already
        ::close(fd);
        return;
      }
    } catch (...) {
      ::close(fd);
      throw;
    }
    Open(fd, std::move(ip), std::move(key));
  }

  // Takes an accepted socket (whose source holds its per-source place already) as a
  // connection; on any failure the socket is closed and the place given back.
  void Open(int fd, std::string ip, std::string key) {
    std::unique_ptr<Conn> c;
    try {
      c = std::make_unique<Conn>();
      c->fd = fd;
      c->key = std::move(key);
      c->source = std::move(ip);
      c->id = next_id_++;
      c->accepted = now_;
      c->active = now_;
      c->request_began = now_;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      c->ssl = SSL_new(server_.tls().native_handle());
      if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) {
        Free(*c);
        server_.per_source().Release(c->key);
        return;
      }
      SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      SSL_set_accept_state(c->ssl);
      by_id_[c->id] = fd;
      conns_.try_emplace(fd).first->second = std::move(c);
    } catch (...) {
      if (c != nullptr) {
        by_id_.erase(c->id);
        Free(*c);
        server_.per_source().Release(c->key);
      } else {
        ::close(fd);
        server_.per_source().Release(key);
      }
      throw;
    }
    Conn& ref = *conns_[fd];
    server_.connections().Increment();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
    ev.data.fd = fd;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    try {
      Drive(ref);
    } catch (...) {
      server_.InternalError("connection", std::current_exception());
      if (auto it = conns_.find(fd); it != conns_.end()) Close(*it->second);
    }
  }

  void PauseAccepting() {
    ::epoll_ctl(ep_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    accept_paused_until_ = now_ + absl::Milliseconds(100);
    core::log::Warn("out of file descriptors; not accepting for 100 ms", {});
  }

  void ResumeAccepting() {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd_;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd_, &ev);
    accept_paused_until_.reset();
  }

  static std::string AddressText(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof(buf));
      return buf;
    }
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      ::inet_ntop(AF_INET, a.s6_addr + 12, buf, sizeof(buf));
    } else {
      ::inet_ntop(AF_INET6, &a, buf, sizeof(buf));
    }
    return buf;
  }

  // Moves a connection on as far as its socket allows.
  void Drive(Conn& c) {
    while (true) {
      switch (c.state) {
        case State::kHandshake: {
          const int r = SSL_do_handshake(c.ssl);
          if (r == 1) {
            c.state = State::kReading;
            continue;
          }
          if (!Retry(c, r)) return Close(c);
          return;
        }
        case State::kReading: {
          if (Parse(c)) continue;  // a request is answered (or being proxied)
          char buf[16 * 1024];
          const int r = SSL_read(c.ssl, buf, sizeof(buf));
          if (r > 0) {
            c.in.append(buf, static_cast<size_t>(r));
            c.active = now_;
            if (!c.request_began) c.request_began = now_;
            continue;
          }
          if (!Retry(c, r)) return Close(c);
          return;
        }
        case State::kWaiting:
          return;
        case State::kWriting: {
          if (c.out_pos < c.out.size()) {
            const int r =
                SSL_write(c.ssl, c.out.data() + c.out_pos,
                          static_cast<int>(std::min<size_t>(c.out.size() - c.out_pos, 1 << 30)));
            if (r > 0) {
              c.out_pos += static_cast<size_t>(r);
              c.active = now_;
              continue;
            }
            if (!Retry(c, r)) return Close(c);
            return;
          }
          if (c.file_left > 0) {
            const size_t want =
                static_cast<size_t>(std::min<uint64_t>(c.file_left, uint64_t{64} * 1024));
            c.out.resize(want);
            const ssize_t n =
                ::pread(c.file->fd, c.out.data(), want, static_cast<off_t>(c.file_pos));
            if (n <= 0) return Close(c);  // the file shrank or failed under us
            c.out.resize(static_cast<size_t>(n));
            c.out_pos = 0;
            c.file_pos += static_cast<uint64_t>(n);
            c.file_left -= static_cast<uint64_t>(n);
            continue;
          }
          Finished(c, "");
          c.file.reset();
          c.out.clear();
          c.out_pos = 0;
          if (c.close_after) return Close(c);
          c.state = State::kReading;
          // The next request's clock starts with its first byte (now, if it was pipelined);
          // until then the connection is idle.
          c.active = now_;
          if (!c.in.empty()) c.request_began = now_;
          continue;
        }
      }
    }
  }

  // True when SSL's answer only means "wait for the socket".
  bool Retry(Conn& c, int r) {
    const int err = SSL_get_error(c.ssl, r);
    ERR_clear_error();
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
  }

  // Parses what was read; true when a request was taken (answered, or handed to the proxy).
  bool Parse(Conn& c) {
    if (c.in.empty()) return false;
    if (!c.parser) {
      c.parser.emplace();
      c.parser->header_limit(8 * 1024);
      c.parser->body_limit(0);
      c.parser->eager(true);
    }
    beast::error_code ec;
    const size_t used = c.parser->put(asio::buffer(c.in), ec);
    c.in.erase(0, used);
    if (ec == http::error::need_more) {
      if (c.in.size() > size_t{16} * 1024) {
        ec = http::error::header_limit;
      } else {
        return false;
      }
    }
    c.started = now_;
    c.request_began.reset();
    if (ec || !c.parser->is_done()) {
      // Malformed, oversized or with a body: answered 400 and the connection ends.
      c.method = "-";
      c.target = "<unparsed>";
      c.version = 11;
      c.parser.reset();
      c.in.clear();
      Answer a;
      a.status = http::status::bad_request;
      a.text = "bad request\n";
      a.close = true;
      Respond(c, std::move(a));
      return true;
    }
    Request req = c.parser->release();
    c.parser.reset();
    c.version = req.version();
    c.method = std::string(req.method_string());
    c.target = RedactHash(absl::string_view(req.target().data(), req.target().size()));
    Answer a;
    try {
      a = server_.Handle(req, c.key);
      if (!req.keep_alive()) a.close = true;
      if (a.proxy) {
        Proxy(c, req, a.close);
        return true;
      }
    } catch (...) {
      a = server_.InternalErrorAnswer("request", std::current_exception(), a.kind.c_str());
    }
    Respond(c, std::move(a));
    return true;
  }

  void Proxy(Conn& c, const Request& req, bool close) {
    c.state = State::kWaiting;
    c.close_after = close;
    c.active = now_;
    XmlUpstream up = server_.Upstream();
    if (up.host.empty()) {
      Answer a;
      a.status = http::status::bad_gateway;
      a.kind = "xml";
      a.text = "no iPBX XML destination is configured\n";
      a.close = close;
      a.head = req.method() == http::verb::head;
      return Respond(c, std::move(a));
    }
    auto out = std::make_shared<http::request<http::empty_body>>(req.method(), req.target(), 11);
    out->set(http::field::host, absl::StrCat(up.host, ":", up.port));
    out->set("X-Forwarded-For", c.source);
    for (http::field f :
         {http::field::user_agent, http::field::accept, http::field::accept_language}) {
      if (auto it = req.find(f); it != req.end()) out->set(f, it->value());
    }
    out->keep_alive(false);
    const uint64_t id = c.id;
    const bool head = req.method() == http::verb::head;
    auto call = std::make_shared<XmlCall>(server_.proxy_executor(), server_, std::move(up), out,
                                          [this, id, head](Answer a) {
                                            a.head = head;  // the iPBX's headers, no body
                                            Deliver(id, std::move(a));
                                          });
    asio::post(server_.proxy_executor(), [call]() { call->Run(); });
  }

  void TakeDelivered() {
    std::vector<std::pair<uint64_t, Answer>> batch;
    {
      absl::MutexLock lock(&mu_);
      batch.swap(delivered_);
    }
    for (auto& [id, a] : batch) {
      auto it = by_id_.find(id);
      if (it == by_id_.end()) continue;  // the phone went away meanwhile
      const int fd = it->second;
      Conn& c = *conns_[fd];
      if (c.state != State::kWaiting) continue;
      try {
        a.close = a.close || c.close_after;
        Respond(c, std::move(a));
        Drive(c);
      } catch (...) {
        server_.InternalError("connection", std::current_exception());
        if (auto again = conns_.find(fd); again != conns_.end()) Close(*again->second);
      }
    }
  }

  // Renders the answer's head (and a body from memory) into `out`; a file is read as it goes.
  void Respond(Conn& c, Answer a) {
    const unsigned version = c.version;
    c.status = static_cast<int>(a.status);
    c.close_after = a.close;
    std::string& o = c.out;
    o.clear();
    c.out_pos = 0;
    absl::StrAppend(&o, version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ", c.status, " ",
                    absl::string_view(http::obsolete_reason(a.status).data(),
                                      http::obsolete_reason(a.status).size()),
                    "\r\nServer: rwg\r\nDate: ", server_.Date(), "\r\n");
    if (a.entry != nullptr) {
      o += a.entry->validators;
      if (a.with_type) o += a.entry->type;
    }
    bool has_type = a.with_type;
    for (const auto& [f, v] : a.headers) {
      has_type = has_type || f == http::field::content_type;
      const auto name = http::to_string(f);
      absl::StrAppend(&o, absl::string_view(name.data(), name.size()), ": ", v, "\r\n");
    }
    const bool body_kind = a.file != nullptr || a.memory != nullptr;
    if (!body_kind && !a.text.empty() && !has_type) {
      o += "Content-Type: text/plain; charset=utf-8\r\n";
    }
    // A text answer's length is its text's (a proxied HEAD answer's, the one the iPBX gave).
    const uint64_t length = body_kind ? a.length : std::max<uint64_t>(a.text.size(), a.length);
    if (a.status != http::status::not_modified) {
      absl::StrAppend(&o, "Content-Length: ", length, "\r\n");
    }
    if (a.close) {
      o += "Connection: close\r\n";
    } else if (version == 10) {
      o += "Connection: keep-alive\r\n";
    }
    o += "\r\n";
    c.body_bytes = a.head || a.status == http::status::not_modified ? 0 : length;
    if (!a.head && a.status != http::status::not_modified) {
      if (a.memory != nullptr) {
        o.append(a.memory->data() + a.offset, a.length);
      } else if (a.file != nullptr) {
        c.file = std::move(a.file);
        c.file_pos = a.offset;
        c.file_left = a.length;
      } else {
        o += a.text;
      }
    }
    server_.Count(a, c.body_bytes);
    c.state = State::kWriting;
  }

  void Finished(Conn& c, const std::string& error) {
    if (c.status == 0) return;
    if (server_.AccessLog()) {
      core::log::Info("request",
                      {{"source", c.source},
                       {"method", c.method},
                       {"path", c.target},
                       {"status", std::to_string(c.status)},
                       {"bytes", std::to_string(c.body_bytes)},
                       {"ms", absl::StrCat(absl::ToDoubleMilliseconds(now_ - c.started))},
                       {"error", error}});
    }
    c.status = 0;
  }

  void Close(Conn& c) {
    if (c.state == State::kWriting) {
      try {
        Finished(c, "connection lost");
      } catch (...) {
        // Only the access log line is lost; the connection is closed all the same.
      }
    }
    const int fd = c.fd;
    Free(c);
    server_.per_source().Release(c.key);
    by_id_.erase(c.id);
    conns_.erase(fd);  // destroys c
    server_.connections().Decrement();
  }

  static void Free(Conn& c) {
    if (c.ssl != nullptr) {
      SSL_set_quiet_shutdown(c.ssl, 0);
      (void)SSL_shutdown(c.ssl);  // close_notify if the socket takes it; no waiting for the peer's
      ERR_clear_error();
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  }

  // Closes the connections that are too slow. Deadlines are absolute: a request's header
  // must be complete within the header timeout of its first byte however the bytes trickle
  // in (a byte now and then does not keep a connection); only between requests, and while a
  // response is being sent, does progress count (the idle timeout).
  void SweepIdle() {
    const absl::Duration idle = server_.IdleTimeout();
    const absl::Duration header = server_.HeaderTimeout();
    std::vector<std::pair<int, const char*>> stale;
    for (auto& [fd, c] : conns_) {
      const char* phase = nullptr;
      switch (c->state) {
        case State::kHandshake:
          // The handshake gets 10 s at most, and is part of the first request's header time.
          if (now_ - c->accepted > std::min({idle, header, absl::Seconds(10)})) {
            phase = "handshake";
          }
          break;
        case State::kReading:
          if (c->request_began) {
            if (now_ - *c->request_began > header) phase = "header";
          } else if (now_ - c->active > idle) {
            phase = "idle";
          }
          break;
        case State::kWriting:
          if (now_ - c->active > idle) phase = "idle";
          break;
        case State::kWaiting:  // the proxy's deadline ends it; this is a safety net
          if (now_ - c->active > server_.ProxyWaitLimit()) phase = "proxy";
          break;
      }
      if (phase != nullptr) stale.emplace_back(fd, phase);
    }
    for (const auto& [fd, phase] : stale) {
      server_.CountTimeout(phase);
      Close(*conns_[fd]);
    }
  }

  Impl& server_;
  int listen_fd_;
  int ep_ = -1;
  int wake_ = -1;
  std::atomic<bool> stop_{false};
  absl::Time now_ = absl::Now();
  uint64_t next_id_ = 1;
  std::optional<absl::Time> accept_paused_until_;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;  // by socket
  std::unordered_map<uint64_t, int> by_id_;
  absl::Mutex mu_;
  std::vector<std::pair<uint64_t, Answer>> delivered_ ABSL_GUARDED_BY(mu_);
};

void ProvisioningServer::Impl::BanFor(const std::string& source, const std::string& reason) {
  state_.Ban(source, reason, options_.ban_length);
  bans_.Increment();
  core::log::Warn(
      "provisioning source banned",
      {{"source", source}, {"reason", reason}, {"for", absl::FormatDuration(options_.ban_length)}});
}

ProvisioningServer::Impl::Answer ProvisioningServer::Impl::Miss(const std::string& source) {
  hash_misses_.Increment();
  if (misses_.Miss(source)) {
    BanFor(source, absl::StrCat(options_.ban_misses, " hash misses within ",
                                absl::FormatDuration(options_.ban_window)));
  }
  return Error(http::status::not_found, "not found\n");
}

// A MAC file the store does not have, asked for under the right hash: a phone that is not
// provisioned yet asks for its own again and again (one miss), someone enumerating MAC
// addresses for many (many misses). Files every phone asks for that a site may not have
// (aastra.cfg, startup.cfg, <model>.cfg, security.tuz, firmware, certificates...) do not
// carry a MAC and are not counted.
void ProvisioningServer::Impl::MacMiss(const std::string& source, const std::string& mac) {
  if (mac.empty()) return;
  mac_misses_total_.Increment();
  if (mac_misses_.Miss(source, mac)) {
    BanFor(source, absl::StrCat(options_.ban_mac_misses, " unknown MAC files within ",
                                absl::FormatDuration(options_.ban_window)));
  }
}

ProvisioningServer::Impl::Answer ProvisioningServer::Impl::Handle(const Request& req,
                                                                  const std::string& source) {
  if (state_.Banned(source)) {
    Answer a = Error(http::status::forbidden, "forbidden\n");
    a.close = true;
    return a;
  }
  const bool head = req.method() == http::verb::head;
  if (req.method() != http::verb::get && !head) {
    Answer a = Error(http::status::method_not_allowed, "method not allowed\n");
    a.headers.push_back({http::field::allow, "GET, HEAD"});
    return a;
  }
  const absl::string_view target(req.target().data(), req.target().size());
  // The hash is judged first, in constant time, on the raw first segment: a wrong one gets
  // the same 404 whatever the rest of the path.
  std::shared_ptr<const std::string> key = state_.Hash();
  const size_t end = target.size() > 1 ? target.find_first_of("/?", 1) : absl::string_view::npos;
  const absl::string_view first =
      target.size() > 1 && target[0] == '/'
          ? target.substr(1, end == absl::string_view::npos ? absl::string_view::npos : end - 1)
          : absl::string_view();
  if (key == nullptr || key->empty() || !core::ConstantTimeEquals(first, *key)) {
    Answer a = Miss(source);
    a.head = head;
    return a;
  }
  absl::StatusOr<RequestPath> path = ParseRequestPath(target);
  if (!path.ok()) {
    Answer a = absl::IsInvalidArgument(path.status())
                   ? Error(http::status::bad_request, "bad request\n")
                   : Error(http::status::not_found, "not found\n");
    a.head = head;
    return a;
  }
  if (path->kind == RequestPath::Kind::kProxy) {
    Answer a;
    a.kind = "xml";
    a.proxy = true;
    return a;
  }
  Answer a = ServeFile(req, path->file);
  if (a.status == http::status::not_found) MacMiss(source, MacOfFile(path->file));
  a.head = head;
  return a;
}

ProvisioningServer::Impl::Answer ProvisioningServer::Impl::ServeFile(const Request& req,
                                                                     const std::string& name) {
  const char* kind = FileKind(name);
  // AT_SYMLINK_NOFOLLOW / O_NOFOLLOW: a symbolic link in the store is never followed out of it.
  struct stat st {};
  if (::fstatat(store_fd_, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
    return Error(http::status::not_found, "not found\n", kind);
  }
  std::shared_ptr<const FileCache::Entry> cached = cache_.Get(name, InfoOf(st));
  std::shared_ptr<OpenFile> file;
  if (cached == nullptr) {
    const int fd = ::openat(store_fd_, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return Error(http::status::not_found, "not found\n", kind);
    file = std::make_shared<OpenFile>(fd);
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      return Error(http::status::not_found, "not found\n", kind);
    }
    auto e = std::make_shared<FileCache::Entry>();
    e->info = InfoOf(st);
    e->etag = ETagFor(e->info);
    e->validators =
        absl::StrCat("ETag: ", e->etag, "\r\nLast-Modified: ", HttpDate(e->info.modified),
                     "\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\n");
    e->type = absl::StrCat("Content-Type: ", ContentTypeFor(name), "\r\n");
    if (e->info.size <= FileCache::kMaxFile) {
      auto data = std::make_shared<std::string>(e->info.size, '\0');
      if (::pread(fd, data->data(), data->size(), 0) == static_cast<ssize_t>(data->size())) {
        e->data = std::move(data);
        cache_.Put(name, e);
      }
    }
    cached = std::move(e);
  }
  const FileInfo& info = cached->info;
  const std::string& etag = cached->etag;
  Answer a;
  a.kind = kind;
  a.entry = cached;
  auto header = [&](http::field f) {
    auto it = req.find(f);
    return it == req.end() ? absl::string_view()
                           : absl::string_view(it->value().data(), it->value().size());
  };
  if (NotModified(header(http::field::if_none_match), header(http::field::if_modified_since), etag,
                  info.modified)) {
    a.status = http::status::not_modified;
    return a;
  }
  ByteRange range;
  switch (ParseRange(header(http::field::range), header(http::field::if_range), info.size, etag,
                     info.modified, &range)) {
    case RangeResult::kUnsatisfiable:
      a.status = http::status::range_not_satisfiable;
      a.headers.push_back({http::field::content_range, absl::StrCat("bytes */", info.size)});
      return a;
    case RangeResult::kPartial:
      a.status = http::status::partial_content;
      a.headers.push_back({http::field::content_range,
                           absl::StrCat("bytes ", range.start, "-", range.start + range.length - 1,
                                        "/", info.size)});
      a.offset = range.start;
      a.length = range.length;
      break;
    case RangeResult::kWhole:
      a.length = info.size;
      break;
  }
  a.with_type = true;
  if (cached->data != nullptr) {
    a.memory = cached->data;
  } else {
    a.file = std::move(file);
  }
  return a;
}

absl::Status ProvisioningServer::Impl::Start() {
  store_fd_ = ::open(options_.store_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (store_fd_ < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("store-dir: cannot open '", options_.store_dir, "': ", strerror(errno)));
  }
  // TLS 1.2 and 1.3 only; OpenSSL's default ciphers, server preference.
  SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
  tls_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::single_dh_use);
  SSL_CTX_set_options(tls_.native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Resumption goes by session tickets (stateless), so no server-side session cache: it
  // would cost an insertion per handshake and a sweep of the whole cache every 255.
  SSL_CTX_set_session_cache_mode(tls_.native_handle(), SSL_SESS_CACHE_OFF);
  // Read what the socket holds in one go, not a record header then its body.
  SSL_CTX_set_read_ahead(tls_.native_handle(), 1);
  beast::error_code ec;
  tls_.use_certificate_chain_file(options_.cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("https-cert-file: '", options_.cert_file, "': ", ec.message()));
  }
  tls_.use_private_key_file(options_.key_file, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("https-key-file: '", options_.key_file, "': ", ec.message()));
  }
  SSL_CTX_set_min_proto_version(client_tls_.native_handle(), TLS1_2_VERSION);
  if (!options_.xml_ca_file.empty()) {
    client_tls_.load_verify_file(options_.xml_ca_file, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("xml-ca-file: '", options_.xml_ca_file, "': ", ec.message()));
    }
  } else if (!options_.xml_insecure_skip_verify) {
    client_tls_.set_default_verify_paths(ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("the system's CA store (for the iPBX's XML port): ", ec.message()));
    }
  }
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
    auto w = std::make_unique<Worker>(*this, fd);
    if (absl::Status s = w->Init(); !s.ok()) return s;
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) threads_.emplace_back([w = w.get()]() { w->Run(); });
  proxy_work_.emplace(asio::make_work_guard(ioc_));
  proxy_thread_ = std::thread([this]() {
    // A handler that throws does not end the proxy: the error is counted and it runs on.
    while (true) {
      try {
        ioc_.run();
        return;
      } catch (...) {
        InternalError("xml proxy", std::current_exception());
      }
    }
  });
  return absl::OkStatus();
}

void ProvisioningServer::Impl::Stop() {
  for (auto& w : workers_) w->Stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  proxy_work_.reset();
  ioc_.stop();
  if (proxy_thread_.joinable()) proxy_thread_.join();
  workers_.clear();  // closes the connections left
  if (store_fd_ >= 0) ::close(store_fd_);
  store_fd_ = -1;
}

ProvisioningServer::ProvisioningServer(ServerOptions options, SharedState& state,
                                       core::Clock& clock, prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), state, clock, registry)) {}
ProvisioningServer::~ProvisioningServer() { Stop(); }
absl::Status ProvisioningServer::Start() { return impl_->Start(); }
void ProvisioningServer::Stop() { impl_->Stop(); }
int ProvisioningServer::port() const { return impl_->port(); }

}  // namespace rwg::provisioning
