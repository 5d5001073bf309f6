// The provisioning server's serving threads (see worker.h): EpollWorker, its connections'
// state machine (handshake, reading, waiting for the XML proxy, writing), admission,
// response rendering, the access log and the sweep of slow connections.
#include "services/provisioning/worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>
#include <cerrno>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/core/address.h"
#include "services/core/log.h"
#include "services/provisioning/request_path.h"

namespace rwg::provisioning {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

ConnectionMetrics::ConnectionMetrics(prometheus::Registry& registry)
    : refused_(prometheus::BuildCounter()
                   .Name("rwg_provisioning_refused_connections_total")
                   .Help("Connections closed at once, by reason (banned, limit, source_limit)")
                   .Register(registry)),
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
                       .Add({})) {
  for (const char* reason : {"banned", "limit", "source_limit"}) {
    refused_.Add({{"reason", reason}});
  }
  for (const char* phase : {"handshake", "header", "idle", "proxy"}) {
    timeouts_.Add({{"phase", phase}});
  }
}

namespace {

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

// One serving thread: its own listening socket (SO_REUSEPORT: the kernel spreads connections
// over the threads) and epoll set, TLS by OpenSSL directly on each connection's socket, Beast's
// parser fed with what SSL_read gives. Every connection belongs to one thread for its life.
class EpollWorker final : public Worker {
 public:
  EpollWorker(WorkerContext& ctx, int listen_fd) : ctx_(ctx), listen_fd_(listen_fd) {}
  ~EpollWorker() override {
    for (auto& [fd, c] : conns_) {
      Free(*c);
      ctx_.per_source.Release(c->key);
      ctx_.metrics.connections().Decrement();
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

  void Run() override {
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
          ctx_.errors.Record("connection", std::current_exception());
          if (auto it = conns_.find(fd); it != conns_.end()) Close(*it->second);
        }
      }
      if (now_ - swept >= absl::Seconds(1)) {
        swept = now_;
        try {
          SweepIdle();
        } catch (...) {
          ctx_.errors.Record("sweep", std::current_exception());
        }
      }
    }
  }

  void Stop() override {
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
        ctx_.errors.Record("accept", std::current_exception());
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
      if (ctx_.state.Banned(key)) {
        ctx_.metrics.Refused("banned");  // dropped before any TLS work
        ::close(fd);
        return;
      }
      if (static_cast<int>(conns_.size()) >= ConnectionLimit()) {
        ctx_.metrics.Refused("limit");
        ::close(fd);
        return;
      }
      if (!ctx_.per_source.Acquire(key)) {
        ctx_.metrics.Refused("source_limit");  // this source holds its share already
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
      c->ssl = SSL_new(ctx_.tls);
      if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) {
        Free(*c);
        ctx_.per_source.Release(c->key);
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
        ctx_.per_source.Release(c->key);
      } else {
        ::close(fd);
        ctx_.per_source.Release(key);
      }
      throw;
    }
    Conn& ref = *conns_[fd];
    ctx_.metrics.connections().Increment();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
    ev.data.fd = fd;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    try {
      Drive(ref);
    } catch (...) {
      ctx_.errors.Record("connection", std::current_exception());
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
      a = ctx_.handler.Handle(req, c.key, c.source);
      if (!req.keep_alive()) a.close = true;
      if (a.proxy) {
        Proxy(c, req, a.close);
        return true;
      }
    } catch (...) {
      a = ctx_.errors.AnswerFor("request", std::current_exception(), a.kind.c_str());
    }
    Respond(c, std::move(a));
    return true;
  }

  void Proxy(Conn& c, const Request& req, bool close) {
    c.state = State::kWaiting;
    c.close_after = close;
    c.active = now_;
    XmlUpstream up = ctx_.state.Upstream();
    if (up.host.empty()) {
      Answer a;
      a.status = http::status::bad_gateway;
      a.kind = "xml";
      a.text = "no iPBX XML destination is configured\n";
      a.close = close;
      a.head = req.method() == http::verb::head;
      return Respond(c, std::move(a));
    }
    const uint64_t id = c.id;
    const bool head = req.method() == http::verb::head;
    ctx_.proxy.Forward(up, req, c.source, [this, id, head](Answer a) {
      a.head = head;  // the iPBX's headers, no body
      Deliver(id, std::move(a));
    });
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
        ctx_.errors.Record("connection", std::current_exception());
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
                    "\r\nServer: rwg\r\nDate: ", DateNow(ctx_.clock.Now()), "\r\n");
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
    ctx_.handler.Count(a, c.body_bytes);
    c.state = State::kWriting;
  }

  void Finished(Conn& c, const std::string& error) {
    if (c.status == 0) return;
    if (ctx_.options.access_log) {
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
    ctx_.per_source.Release(c.key);
    by_id_.erase(c.id);
    conns_.erase(fd);  // destroys c
    ctx_.metrics.connections().Decrement();
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

  int ConnectionLimit() const {
    return std::max(1, ctx_.options.max_connections / std::max(1, ctx_.options.threads));
  }

  // Closes the connections that are too slow. Deadlines are absolute: a request's header
  // must be complete within the header timeout of its first byte however the bytes trickle
  // in (a byte now and then does not keep a connection); only between requests, and while a
  // response is being sent, does progress count (the idle timeout).
  void SweepIdle() {
    const absl::Duration idle = ctx_.options.idle_timeout;
    const absl::Duration header = ctx_.options.header_timeout;
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
          if (now_ - c->active > ctx_.proxy.WaitLimit()) phase = "proxy";
          break;
      }
      if (phase != nullptr) stale.emplace_back(fd, phase);
    }
    for (const auto& [fd, phase] : stale) {
      ctx_.metrics.Timeout(phase);
      Close(*conns_[fd]);
    }
  }

  WorkerContext& ctx_;
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

}  // namespace

absl::StatusOr<std::unique_ptr<Worker>> NewWorker(WorkerContext& ctx, int listen_fd) {
  auto w = std::make_unique<EpollWorker>(ctx, listen_fd);
  if (absl::Status s = w->Init(); !s.ok()) return s;
  return w;
}

}  // namespace rwg::provisioning
