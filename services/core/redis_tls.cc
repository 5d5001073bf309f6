#include "services/core/redis_tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/core/log.h"
#include "services/core/openssl_error.h"
#include "services/core/thread.h"
#include "services/core/tls_identity.h"

namespace rwg::core {
namespace {

// Bytes held per direction of a connection before the tunnel stops reading that side.
constexpr size_t kBufferCap = size_t{1} << 20;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

bool IsIpLiteral(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

absl::Status SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(address).substr(colon + 1), port) || *port < 1 ||
      *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis address '", address, "' is not host:port (TLS)"));
  }
  *host = address.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return absl::OkStatus();
}

// A client context from the files as they are now: TLS 1.2+, the peer verified, the client
// pair when configured. Errors name the option.
absl::StatusOr<SslCtxPtr> MakeContext(const RedisTlsOptions& o) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return absl::InternalError(absl::StrCat("redis TLS: ", OpenSslError()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_clear_mode(ctx.get(), SSL_MODE_AUTO_RETRY);
  if (o.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis-ca-file: the system's CAs cannot be read: ", OpenSslError()));
    }
  } else if (SSL_CTX_load_verify_locations(ctx.get(), o.ca_file.c_str(), nullptr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("redis-ca-file: no CA certificate read from ",
                                                   o.ca_file, ": ", OpenSslError()));
  }
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(o.cert_file.empty()
                                          ? "redis-cert-file: required with redis-key-file"
                                          : "redis-key-file: required with redis-cert-file");
  }
  if (!o.cert_file.empty()) {
    absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
        LoadTlsIdentity(o.cert_file, o.key_file, absl::Now());
    if (!id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis-cert-file/redis-key-file: ", id.status().message()));
    }
    if (!(*id)->UseOn(ctx.get())) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis-cert-file: the pair is refused: ", OpenSslError()));
    }
  }
  return ctx;
}

int MillisUntil(absl::Time deadline) {
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
}

// Waits until `fd` has one of `events`, the stop descriptor is readable, or the deadline
// passes. True when `fd` is ready.
bool WaitFor(int fd, short events, int stop, absl::Time deadline) {
  for (;;) {
    pollfd p[2] = {{fd, events, 0}, {stop, POLLIN, 0}};
    const int timeout = MillisUntil(deadline);
    const int n = poll(p, 2, timeout);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || p[1].revents != 0) return false;
    return p[0].revents != 0;
  }
}

class Tunnel final : public RedisTlsTunnel {
 public:
  Tunnel(RedisTlsOptions options, std::string dir, UniqueFd stop)
      : options_(std::move(options)), dir_(std::move(dir)), stop_(std::move(stop)) {}

  ~Tunnel() override {
    const uint64_t one = 1;
    (void)!write(stop_.get(), &one, sizeof(one));  // every thread polls it; it stays readable
    std::vector<Target*> targets;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [address, t] : targets_) targets.push_back(t.get());
    }
    for (Target* t : targets) {
      if (t->acceptor.joinable()) t->acceptor.join();
    }
    std::list<Connection> connections;
    {
      absl::MutexLock lock(&mu_);
      connections.swap(connections_);
    }
    for (Connection& c : connections) {
      if (c.thread.joinable()) c.thread.join();
    }
    absl::MutexLock lock(&mu_);
    for (auto& [address, t] : targets_) unlink(t->path.c_str());
    rmdir(dir_.c_str());
  }

  absl::StatusOr<std::string> LocalAddress(const std::string& address) override {
    std::unique_ptr<Target> retired;
    absl::StatusOr<std::string> local = LocalAddressLocked(address, &retired);
    if (retired != nullptr) {
      // Its acceptor stops and goes; its socket with it (outside the lock, which the acceptor
      // takes).
      const uint64_t one = 1;
      (void)!write(retired->stop.get(), &one, sizeof(one));  // readable from now on
      if (retired->acceptor.joinable()) retired->acceptor.join();
      unlink(retired->path.c_str());
    }
    return local;
  }

  std::string LastError(const std::string& address) const override {
    absl::MutexLock lock(&mu_);
    auto it = errors_.find(address);
    return it == errors_.end() ? std::string() : it->second;
  }

  size_t addresses() const override {
    absl::MutexLock lock(&mu_);
    return targets_.size();
  }

 private:
  // One Redis address: immutable once made, but for the acceptor thread joined at the end and
  // its use.
  struct Target {
    std::string address;
    std::string host;
    int port = 0;
    std::string path;
    UniqueFd listener;
    UniqueFd stop;  // an eventfd, readable once this address is retired
    std::thread acceptor;
    std::atomic<bool> retired{false};   // set under mu_
    std::atomic<uint64_t> last_use{0};  // the LocalAddress call that last gave it (LRU)
  };
  struct Connection {
    const Target* target = nullptr;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  absl::StatusOr<std::string> LocalAddressLocked(const std::string& address,
                                                 std::unique_ptr<Target>* retired) {
    absl::MutexLock lock(&mu_);
    ++uses_;
    if (auto it = targets_.find(address); it != targets_.end()) {
      it->second->last_use = uses_;
      return absl::StrCat("unix:", it->second->path);
    }
    auto t = std::make_unique<Target>();
    t->address = address;
    if (absl::Status s = SplitHostPort(address, &t->host, &t->port); !s.ok()) return s;
    auto victim = targets_.end();
    if (targets_.size() >= options_.max_addresses) {
      // Full: the address used least recently that no connection uses goes (with Sentinel,
      // masters of the past: every restarted Redis pod is a new address), once the new one's
      // socket is made.
      for (auto it = targets_.begin(); it != targets_.end(); ++it) {
        if (InUseLocked(*it->second)) continue;
        if (victim == targets_.end() ||
            it->second->last_use.load() < victim->second->last_use.load()) {
          victim = it;
        }
      }
      if (victim == targets_.end()) {
        return absl::ResourceExhaustedError(absl::StrCat("redis TLS: ", options_.max_addresses,
                                                         " Redis addresses in use at once; ",
                                                         address, " is not connected"));
      }
    }
    t->last_use = uses_;
    // Never a path used before: a client still holding a retired address's path must not
    // reach another Redis through it.
    t->path = absl::StrCat(dir_, "/", next_path_++, ".sock");
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (t->path.size() >= sizeof(sa.sun_path)) {
      return absl::FailedPreconditionError(
          absl::StrCat("redis TLS: socket path too long: ", t->path));
    }
    std::memcpy(sa.sun_path, t->path.c_str(), t->path.size() + 1);
    t->listener = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (t->listener.get() < 0 ||
        bind(t->listener.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
        listen(t->listener.get(), 128) != 0) {
      return absl::UnavailableError(
          absl::StrCat("redis TLS: cannot listen on ", t->path, ": ", std::strerror(errno)));
    }
    t->stop = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (t->stop.get() < 0) {
      unlink(t->path.c_str());
      return absl::InternalError(absl::StrCat("redis TLS: eventfd: ", std::strerror(errno)));
    }
    if (victim != targets_.end()) {
      victim->second->retired = true;
      errors_.erase(victim->first);
      log::Info("Redis TLS address retired", {{"address", victim->first}});
      *retired = std::move(victim->second);
      targets_.erase(victim);
    }
    Target* raw = t.get();
    t->acceptor = std::thread([this, raw] { Accept(raw); });
    std::string local = absl::StrCat("unix:", t->path);
    targets_.emplace(address, std::move(t));
    return local;
  }

  // Whether a connection to `t` is still being carried.
  bool InUseLocked(const Target& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return std::any_of(connections_.begin(), connections_.end(),
                       [&](const Connection& c) { return c.target == &t && !c.done.load(); });
  }

  void Accept(Target* t) {
    NameThisThread("redis-tls-acc");
    for (;;) {
      pollfd p[3] = {
          {t->listener.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}, {t->stop.get(), POLLIN, 0}};
      if (poll(p, 3, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents != 0 || p[2].revents != 0) return;
      const int fd = accept4(t->listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          pollfd s[2] = {{stop_.get(), POLLIN, 0}, {t->stop.get(), POLLIN, 0}};
          poll(s, 2, 100);  // out of descriptors: do not spin
        }
        continue;
      }
      absl::MutexLock lock(&mu_);
      if (t->retired) {  // retired while this connection was being accepted
        close(fd);
        return;
      }
      for (auto it = connections_.begin(); it != connections_.end();) {
        if (it->done.load()) {
          it->thread.join();
          it = connections_.erase(it);
        } else {
          ++it;
        }
      }
      if (connections_.size() >= options_.max_connections) {
        close(fd);  // the client sees its connection closed: Redis unavailable to it
        SetErrorLocked(t->address, absl::StrCat("more than ", options_.max_connections,
                                                " TLS connections to Redis at once"));
        continue;
      }
      Connection& c = connections_.emplace_back();
      c.target = t;
      c.thread = std::thread([this, t, fd, &c] {
        Carry(*t, UniqueFd(fd));
        c.done.store(true);
      });
    }
  }

  void SetError(const std::string& address, const std::string& error) {
    absl::MutexLock lock(&mu_);
    SetErrorLocked(address, error);
  }

  void SetErrorLocked(const std::string& address, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string& last = errors_[address];
    if (last == error) return;
    if (!error.empty()) {
      log::Warn("Redis TLS connection failed", {{"address", address}, {"error", error}});
    } else {
      log::Info("Redis TLS connection made", {{"address", address}});
    }
    last = error;
  }

  // TCP to the target within `deadline`.
  absl::StatusOr<UniqueFd> Dial(const Target& t, absl::Time deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(t.port);
    if (const int e = getaddrinfo(t.host.c_str(), port.c_str(), &hints, &res); e != 0) {
      return absl::UnavailableError(absl::StrCat("cannot resolve ", t.host, ": ", gai_strerror(e)));
    }
    std::string why = "no address";
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      UniqueFd fd(socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (fd.get() < 0) {
        why = std::strerror(errno);
        continue;
      }
      if (connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
        why = std::strerror(errno);
        continue;
      }
      if (!WaitFor(fd.get(), POLLOUT, stop_.get(), deadline)) {
        why = "connect timed out";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        why = std::strerror(err != 0 ? err : errno);
        continue;
      }
      const int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      freeaddrinfo(res);
      return fd;
    }
    freeaddrinfo(res);
    return absl::UnavailableError(absl::StrCat("connect: ", why));
  }

  // TLS over `tcp` within `deadline`, Redis's certificate verified.
  absl::StatusOr<SslPtr> Handshake(const Target& t, SSL_CTX* ctx, int tcp, absl::Time deadline) {
    SslPtr ssl(SSL_new(ctx));
    if (!ssl || SSL_set_fd(ssl.get(), tcp) != 1) {
      return absl::InternalError(absl::StrCat("TLS: ", OpenSslError()));
    }
    const std::string& name = options_.server_name.empty() ? t.host : options_.server_name;
    if (IsIpLiteral(name)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl.get(), name.c_str());
      SSL_set1_host(ssl.get(), name.c_str());
    }
    for (;;) {
      const int r = SSL_connect(ssl.get());
      if (r == 1) return ssl;
      const int e = SSL_get_error(ssl.get(), r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!WaitFor(tcp, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, stop_.get(), deadline)) {
          return absl::DeadlineExceededError("TLS handshake timed out");
        }
        continue;
      }
      const long verify = SSL_get_verify_result(ssl.get());  // NOLINT(google-runtime-int)
      if (verify != X509_V_OK) {
        return absl::UnavailableError(absl::StrCat("TLS: Redis's certificate is refused for ", name,
                                                   ": ", X509_verify_cert_error_string(verify)));
      }
      return absl::UnavailableError(
          absl::StrCat("TLS handshake failed: ", e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
                                                     ? std::string("connection closed by Redis")
                                                     : OpenSslError()));
    }
  }

  // One client connection (`app`, hiredis's end) carried to Redis over TLS.
  void Carry(const Target& t, UniqueFd app) {
    NameThisThread("redis-tls");
    const absl::Time deadline = absl::Now() + options_.handshake_timeout;
    absl::StatusOr<SslCtxPtr> ctx = MakeContext(options_);
    if (!ctx.ok()) {
      SetError(t.address, std::string(ctx.status().message()));
      return;
    }
    absl::StatusOr<UniqueFd> tcp = Dial(t, deadline);
    if (!tcp.ok()) {
      SetError(t.address, std::string(tcp.status().message()));
      return;
    }
    absl::StatusOr<SslPtr> ssl = Handshake(t, ctx->get(), tcp->get(), deadline);
    if (!ssl.ok()) {
      SetError(t.address, std::string(ssl.status().message()));
      return;
    }
    // With TLS 1.3 a refused client certificate comes after the handshake, as an alert: the
    // connection is known good only once Redis has sent something.
    Pump(t, ssl->get(), tcp->get(), app.get());
    SSL_shutdown(ssl->get());  // close_notify, not waiting for Redis's
    ERR_clear_error();
  }

  // Carries bytes both ways until either side closes (or fails) and what it sent is passed on.
  void Pump(const Target& t, SSL* ssl, int tcp, int app) {
    bool answered = false;
    std::string to_redis;
    std::string to_app;
    bool app_eof = false;    // hiredis closed its end
    bool redis_eof = false;  // Redis closed (or the TLS connection failed)
    bool app_hup = false;
    bool tcp_hup = false;
    bool want_read = false;   // a TLS write waits for bytes from Redis
    bool want_write = false;  // a TLS read or write waits for room toward Redis
    char buf[16384];
    for (;;) {
      want_read = false;
      want_write = false;
      while (!redis_eof && to_app.size() < kBufferCap) {
        const int n = SSL_read(ssl, buf, sizeof(buf));
        if (n > 0) {
          to_app.append(buf, static_cast<size_t>(n));
          if (!answered) SetError(t.address, "");
          answered = true;
          continue;
        }
        const int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) want_write = true;
        if (e == SSL_ERROR_SSL) SetError(t.address, absl::StrCat("TLS: ", OpenSslError()));
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) redis_eof = true;
        break;
      }
      while (!to_app.empty()) {
        const ssize_t n = send(app, to_app.data(), to_app.size(), MSG_NOSIGNAL);
        if (n > 0) {
          to_app.erase(0, static_cast<size_t>(n));
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          break;
        } else {
          return;  // hiredis went away
        }
      }
      if (redis_eof && to_app.empty()) return;
      while (!app_eof && to_redis.size() < kBufferCap) {
        const ssize_t n = recv(app, buf, sizeof(buf), 0);
        if (n > 0) {
          to_redis.append(buf, static_cast<size_t>(n));
        } else if (n == 0) {
          app_eof = true;
        } else if (errno == EINTR) {
          continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
          break;
        } else {
          return;
        }
      }
      while (!to_redis.empty()) {
        const int n = SSL_write(ssl, to_redis.data(),
                                static_cast<int>(std::min<size_t>(to_redis.size(), INT_MAX)));
        if (n > 0) {
          to_redis.erase(0, static_cast<size_t>(n));
          continue;
        }
        const int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) {
          want_write = true;
        } else if (e == SSL_ERROR_WANT_READ) {
          want_read = true;
        } else {
          return;  // Redis went away
        }
        break;
      }
      if (app_eof && to_redis.empty()) return;
      if (app_hup && tcp_hup) return;
      if (SSL_pending(ssl) > 0 && to_app.size() < kBufferCap) continue;
      short app_events = 0;
      if (!app_eof && to_redis.size() < kBufferCap) app_events |= POLLIN;
      if (!to_app.empty()) app_events |= POLLOUT;
      short tcp_events = 0;
      if ((!redis_eof && to_app.size() < kBufferCap) || want_read) tcp_events |= POLLIN;
      if (want_write) tcp_events |= POLLOUT;
      pollfd p[3] = {{app_hup ? -1 : app, app_events, 0},
                     {tcp_hup ? -1 : tcp, tcp_events, 0},
                     {stop_.get(), POLLIN, 0}};
      if (poll(p, 3, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[2].revents != 0) return;
      if ((p[0].revents & (POLLERR | POLLNVAL)) != 0) return;
      if ((p[0].revents & POLLHUP) != 0) app_hup = true;
      if ((p[1].revents & POLLNVAL) != 0) return;
      if ((p[1].revents & (POLLHUP | POLLERR)) != 0) tcp_hup = true;
    }
  }

  const RedisTlsOptions options_;
  const std::string dir_;
  const UniqueFd stop_;  // an eventfd, readable once the tunnel stops

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Target>> targets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> errors_ ABSL_GUARDED_BY(mu_);
  std::list<Connection> connections_ ABSL_GUARDED_BY(mu_);
  uint64_t uses_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_path_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> RedisTlsTunnel::Start(RedisTlsOptions options) {
  if (absl::StatusOr<SslCtxPtr> ctx = MakeContext(options); !ctx.ok()) return ctx.status();
  const char* tmp = std::getenv("TMPDIR");
  std::string dir =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/rwg-redis-tls-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {  // mode 0700: only this user reaches the sockets
    return absl::FailedPreconditionError(absl::StrCat(
        "redis TLS: cannot make a directory for its sockets (", dir, "): ", std::strerror(errno)));
  }
  UniqueFd stop(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (stop.get() < 0) {
    rmdir(dir.c_str());
    return absl::InternalError(absl::StrCat("redis TLS: eventfd: ", std::strerror(errno)));
  }
  return std::make_shared<Tunnel>(std::move(options), std::move(dir), std::move(stop));
}

}  // namespace rwg::core
