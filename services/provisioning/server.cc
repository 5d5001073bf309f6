#include "services/provisioning/server.h"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/optional.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/provisioning/http_rules.h"
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

// A Beast body that sends `length` bytes of a file from `offset` (a whole file, or one
// range of it), read with pread in 64 KiB pieces: nothing is loaded whole into memory.
struct FileRangeBody {
  struct value_type {
    std::shared_ptr<OpenFile> file;             // read from the file...
    std::shared_ptr<const std::string> memory;  // ...or sent from memory (cached small files)
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  static uint64_t size(const value_type& v) { return v.length; }

  class writer {
   public:
    using const_buffers_type = asio::const_buffer;
    template <bool isRequest, class Fields>
    writer(const http::header<isRequest, Fields>&, const value_type& v) : v_(v) {}
    void init(beast::error_code& ec) {
      pos_ = v_.offset;
      remain_ = v_.length;
      ec = {};
    }
    boost::optional<std::pair<const_buffers_type, bool>> get(beast::error_code& ec) {
      if (remain_ == 0) {
        ec = {};
        return boost::none;
      }
      if (v_.memory != nullptr) {
        remain_ = 0;
        ec = {};
        return {{const_buffers_type(v_.memory->data() + v_.offset, v_.length), false}};
      }
      const size_t want = static_cast<size_t>(std::min<uint64_t>(remain_, sizeof(buf_)));
      const ssize_t n = ::pread(v_.file->fd, buf_, want, static_cast<off_t>(pos_));
      if (n <= 0) {  // the file shrank or failed under us: end the connection
        ec = beast::errc::make_error_code(beast::errc::io_error);
        return boost::none;
      }
      pos_ += static_cast<uint64_t>(n);
      remain_ -= static_cast<uint64_t>(n);
      ec = {};
      return {{const_buffers_type(buf_, static_cast<size_t>(n)), remain_ > 0}};
    }

   private:
    const value_type& v_;
    uint64_t pos_ = 0;
    uint64_t remain_ = 0;
    char buf_[64 * 1024];
  };
};

using Request = http::request<http::empty_body>;

std::string PeerIp(const tcp::socket& s) {
  beast::error_code ec;
  tcp::endpoint ep = s.remote_endpoint(ec);
  if (ec) return "";
  asio::ip::address a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a.to_string();
}

// Small files of the store kept in memory with their validators, checked against the file
// system (one fstatat) on every request: a replaced or rewritten file is read again at once.
class FileCache {
 public:
  static constexpr uint64_t kMaxFile = 256 * 1024;
  static constexpr uint64_t kMaxTotal = 64 * 1024 * 1024;

  struct Entry {
    FileInfo info;
    std::string etag;
    std::string last_modified;
    std::shared_ptr<const std::string> data;
  };

  std::shared_ptr<const Entry> Get(const std::string& name, const FileInfo& now) {
    std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    if (total_ + e->info.size > kMaxTotal) {
      entries_.clear();
      total_ = 0;
    }
    auto [it, added] = entries_.try_emplace(name, e);
    if (added) total_ += e->info.size;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_;
  uint64_t total_ = 0;
};

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
        tls_(ssl::context::tls_server),
        client_tls_(ssl::context::tls_client),
        acceptor_(ioc_),
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
        bans_(prometheus::BuildCounter()
                  .Name("rwg_provisioning_bans_total")
                  .Help("Sources banned for missing the hash too often")
                  .Register(registry)
                  .Add({})),
        refused_(prometheus::BuildCounter()
                     .Name("rwg_provisioning_refused_connections_total")
                     .Help("Connections closed at once: banned source")
                     .Register(registry)
                     .Add({})),
        upstream_seconds_(prometheus::BuildHistogram()
                              .Name("rwg_provisioning_upstream_seconds")
                              .Help("Time the iPBX's XML port took to answer a proxied request")
                              .Register(registry)
                              .Add({}, prometheus::Histogram::BucketBoundaries{
                                           0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})) {}

  absl::Status Start();
  void Stop();
  int port() const { return port_; }

  class Session;

  // The answer to one request: status, headers and a body of one of three kinds.
  struct Answer {
    http::status status = http::status::ok;
    std::string kind = "other";
    std::string text;  // error bodies
    std::shared_ptr<OpenFile> file;
    std::shared_ptr<const std::string> memory;
    uint64_t offset = 0;
    uint64_t length = 0;
    std::vector<std::pair<http::field, std::string>> headers;
    bool head = false;
    bool close = false;  // end the connection after this answer
    bool proxy = false;  // to be answered by the iPBX's XML port (Session::Proxy)
  };
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
  ssl::context& tls() { return tls_; }
  bool Banned(const std::string& ip) const { return state_.Banned(ip); }
  XmlUpstream Upstream() const { return state_.Upstream(); }
  ssl::context& client_tls() { return client_tls_; }
  bool VerifyUpstream() const { return !options_.xml_ca_file.empty(); }
  absl::Duration XmlTimeout() const { return options_.xml_timeout; }
  void ObserveUpstream(absl::Duration d) { upstream_seconds_.Observe(absl::ToDoubleSeconds(d)); }
  void CountRefused() { refused_.Increment(); }

 private:
  void Accept();
  Answer Error(http::status s, const char* text, const char* kind = "other") {
    Answer a;
    a.status = s;
    a.kind = kind;
    a.text = text;
    return a;
  }
  Answer Miss(const std::string& source);
  Answer ServeFile(const Request& req, const std::string& name);

  ServerOptions options_;
  SharedState& state_;
  core::Clock& clock_;
  MissCounter misses_;
  FileCache cache_;
  asio::io_context ioc_;
  ssl::context tls_;
  ssl::context client_tls_;
  tcp::acceptor acceptor_;
  int store_fd_ = -1;
  int port_ = 0;
  std::vector<std::thread> threads_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& bytes_;
  prometheus::Counter& hash_misses_;
  prometheus::Counter& bans_;
  prometheus::Counter& refused_;
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
    started_ = absl::Now();
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(server_.XmlTimeout())));
    if (!SSL_set_tlsext_host_name(stream_.native_handle(), up_.host.c_str())) {
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
          if (ec) return self->Fail(ec);
          beast::get_lowest_layer(self->stream_)
              .async_connect(r, [self](beast::error_code ec, const tcp::endpoint&) {
                if (ec) return self->Fail(ec);
                self->stream_.async_handshake(ssl::stream_base::client,
                                              [self](beast::error_code ec) {
                                                if (ec) return self->Fail(ec);
                                                self->Write();
                                              });
              });
        });
  }

 private:
  void Write() {
    http::async_write(stream_, *req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail(ec);
      self->parser_.body_limit(1024 * 1024);
      http::async_read(self->stream_, self->buffer_, self->parser_,
                       [self](beast::error_code ec, size_t) {
                         if (ec) return self->Fail(ec);
                         self->Done();
                       });
    });
  }

  void Done() {
    server_.ObserveUpstream(absl::Now() - started_);
    const auto& res = parser_.get();
    Answer a;
    a.status = res.result();
    a.kind = "xml";
    a.text = res.body();
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
      done(std::move(a));
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

// One TLS connection: handshake, then requests one after the other (keep-alive).
class ProvisioningServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Impl& server)
      : server_(server), source_(PeerIp(socket)), stream_(std::move(socket), server.tls()) {}

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()]() { self->Handshake(); });
  }

 private:
  void Handshake() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
    stream_.async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](beast::error_code ec) {
                              if (!ec) self->Read();
                            });
  }

  void Read() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(0);
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(server_.IdleTimeout())));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      return Close();
    }
    started_ = absl::Now();
    if (ec) {
      // Malformed, oversized or with a body: answered 400 and the connection ends.
      target_ = "<unparsed>";
      method_ = "-";
      Answer a;
      a.status = http::status::bad_request;
      a.text = "bad request\n";
      a.close = true;
      return Send(std::move(a), 11);
    }
    const Request& req = parser_->get();
    method_ = std::string(req.method_string());
    target_ = RedactHash(absl::string_view(req.target().data(), req.target().size()));
    Answer a = server_.Handle(req, source_);
    if (!req.keep_alive()) a.close = true;
    if (a.proxy) return Proxy(req, a.close);
    Send(std::move(a), req.version());
  }

  // An XML feature: the request goes to the iPBX's XML port with its path and query; its
  // answer comes back (status, Content-Type, body).
  void Proxy(const Request& req, bool close) {
    XmlUpstream up = server_.Upstream();
    const unsigned version = req.version();
    if (up.host.empty()) {
      Answer a;
      a.status = http::status::bad_gateway;
      a.kind = "xml";
      a.text = "no iPBX XML destination is configured\n";
      a.close = close;
      return Send(std::move(a), version);
    }
    auto out = std::make_shared<http::request<http::empty_body>>(req.method(), req.target(), 11);
    out->set(http::field::host, absl::StrCat(up.host, ":", up.port));
    out->set("X-Forwarded-For", source_);
    for (http::field f :
         {http::field::user_agent, http::field::accept, http::field::accept_language}) {
      if (auto it = req.find(f); it != req.end()) out->set(f, it->value());
    }
    out->keep_alive(false);
    auto call = std::make_shared<XmlCall>(stream_.get_executor(), server_, std::move(up), out,
                                          [self = shared_from_this(), close, version](Answer a) {
                                            a.close = a.close || close;
                                            self->Send(std::move(a), version);
                                          });
    call->Run();
  }

  void Send(Answer a, unsigned version) {
    status_ = static_cast<int>(a.status);
    const bool close = a.close;
    auto common = [&](auto& res) {
      for (auto& [f, v] : a.headers) res.set(f, v);
      res.set(http::field::server, "rwg");
      if (a.file == nullptr && a.memory == nullptr && !a.text.empty() &&
          res.find(http::field::content_type) == res.end()) {
        res.set(http::field::content_type, "text/plain; charset=utf-8");
      }
      res.keep_alive(!close);
    };
    if (a.head) {
      // HEAD: the GET's headers (its Content-Length included), no body.
      auto res = std::make_shared<http::response<http::empty_body>>(a.status, version);
      common(*res);
      if (a.status != http::status::not_modified) {
        res->set(
            http::field::content_length,
            std::to_string(a.file != nullptr || a.memory != nullptr ? a.length : a.text.size()));
      }
      body_bytes_ = 0;
      server_.Count(a, 0);
      return Write(res, close);
    }
    if (a.file != nullptr || a.memory != nullptr) {
      auto res = std::make_shared<http::response<FileRangeBody>>(a.status, version);
      common(*res);
      res->body() = FileRangeBody::value_type{a.file, a.memory, a.offset, a.length};
      res->content_length(a.length);
      body_bytes_ = a.length;
      server_.Count(a, a.length);
      return Write(res, close);
    }
    auto res = std::make_shared<http::response<http::string_body>>(a.status, version);
    common(*res);
    res->body() = std::move(a.text);
    res->prepare_payload();
    body_bytes_ = res->body().size();
    server_.Count(a, body_bytes_);
    Write(res, close);
  }

  template <class Response>
  void Write(std::shared_ptr<Response> res, bool close) {
    if constexpr (std::is_same_v<Response, http::response<http::empty_body>>) {
      // A HEAD answer: the serializer must not try to send the announced body.
      auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
      sr->split(false);
      http::async_write_header(
          stream_, *sr, [self = shared_from_this(), res, sr, close](beast::error_code ec, size_t) {
            self->OnWrite(ec, close);
          });
    } else {
      http::async_write(stream_, *res,
                        [self = shared_from_this(), res, close](beast::error_code ec, size_t) {
                          self->OnWrite(ec, close);
                        });
    }
  }

  void OnWrite(beast::error_code ec, bool close) {
    if (server_.AccessLog()) {
      core::log::Info("request",
                      {{"source", source_},
                       {"method", method_},
                       {"path", target_},
                       {"status", std::to_string(status_)},
                       {"bytes", std::to_string(body_bytes_)},
                       {"ms", absl::StrCat(absl::ToDoubleMilliseconds(absl::Now() - started_))},
                       {"error", ec ? ec.message() : ""}});
    }
    if (ec) return;
    if (close) return Close();
    Read();
  }

  void Close() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().close(ignored);
    });
  }

  Impl& server_;
  std::string source_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  boost::optional<http::request_parser<http::empty_body>> parser_;
  absl::Time started_;
  std::string method_;
  std::string target_;
  int status_ = 0;
  uint64_t body_bytes_ = 0;
};

ProvisioningServer::Impl::Answer ProvisioningServer::Impl::Miss(const std::string& source) {
  hash_misses_.Increment();
  if (misses_.Miss(source)) {
    state_.Ban(source,
               absl::StrCat(options_.ban_misses, " hash misses within ",
                            absl::FormatDuration(options_.ban_window)),
               options_.ban_length);
    bans_.Increment();
    core::log::Warn("provisioning source banned",
                    {{"source", source},
                     {"misses", std::to_string(options_.ban_misses)},
                     {"for", absl::FormatDuration(options_.ban_length)}});
  }
  return Error(http::status::not_found, "not found\n");
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
    e->last_modified = HttpDate(e->info.modified);
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
  a.headers = {{http::field::etag, etag},
               {http::field::last_modified, cached->last_modified},
               {http::field::accept_ranges, "bytes"},
               {http::field::cache_control, "no-cache"},
               {http::field::date, DateNow(clock_.Now())}};
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
  a.headers.push_back({http::field::content_type, ContentTypeFor(name)});
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
  beast::error_code ec;
  tls_.use_certificate_chain_file(options_.cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls-cert-file: '", options_.cert_file, "': ", ec.message()));
  }
  tls_.use_private_key_file(options_.key_file, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls-key-file: '", options_.key_file, "': ", ec.message()));
  }
  SSL_CTX_set_min_proto_version(client_tls_.native_handle(), TLS1_2_VERSION);
  if (!options_.xml_ca_file.empty()) {
    client_tls_.load_verify_file(options_.xml_ca_file, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("xml-ca-file: '", options_.xml_ca_file, "': ", ec.message()));
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
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("listen on ", options_.listen, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  Accept();
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this]() { ioc_.run(); });
  }
  return absl::OkStatus();
}

void ProvisioningServer::Impl::Accept() {
  auto on_accept = [this](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      const std::string ip = PeerIp(s);
      if (state_.Banned(ip)) {
        CountRefused();  // dropped before any TLS work
        beast::error_code ignored;
        s.close(ignored);
      } else {
        beast::error_code ignored;
        s.set_option(tcp::no_delay(true), ignored);  // answers leave at once, not after an ACK
        std::make_shared<Session>(std::move(s), *this)->Run();
      }
    }
    Accept();
  };
  // A connection's handlers run one at a time: on a strand when several threads serve.
  if (options_.threads > 1) {
    acceptor_.async_accept(asio::make_strand(ioc_), std::move(on_accept));
  } else {
    acceptor_.async_accept(ioc_.get_executor(), std::move(on_accept));
  }
}

void ProvisioningServer::Impl::Stop() {
  beast::error_code ignored;
  asio::post(ioc_, [this]() {
    beast::error_code e;
    acceptor_.close(e);
  });
  ioc_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
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
