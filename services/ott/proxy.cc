// The OTT reverse proxy (see proxy.h): TLS with a certificate per FQDN chosen by SNI, the
// request's checks (host, path lists, limits, bans), rwg's own login for admin paths, and the
// forwarding to the application with its headers, bodies streamed both ways, WebSocket
// upgrades, timeouts and kept-alive application connections.
// The connections themselves are ott::Stream (stream.h): OpenSSL on the socket, deadlines
// checked by each serving thread's sweep.
// Why it is about 1,450 lines: every step above runs inside one Asio coroutine per client
// connection (Serve → Handle → LoginPage | Forward), and the steps share that coroutine's
// streams, buffers and outcome; GCC 12 miscompiles some coroutine patterns (see the comments
// where they are avoided), so the code is kept in one place where that care is visible. The
// parts without coroutines are units of their own: paths (paths.cc), domains and accounts
// (store.cc), certificates, limits and bans (state.cc). The next split would take the header
// helpers at the top (request/response field filtering, cookies, forms) into a unit with unit
// tests of its own.

#include "services/ott/proxy.h"

// Asio's C++20 coroutines (GCC enables them by itself; clang-based tools need telling).
#include <utility>
#ifndef BOOST_ASIO_HAS_CO_AWAIT
#define BOOST_ASIO_HAS_CO_AWAIT 1
#endif
#ifndef BOOST_ASIO_HAS_STD_COROUTINE
#define BOOST_ASIO_HAS_STD_COROUTINE 1
#endif

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "services/core/address.h"
#include "services/core/connections_per_source.h"
#include "services/core/log.h"
#include "services/ott/field_arena.h"
#include "services/ott/login_page.h"
#include "services/ott/paths.h"
#include "services/ott/stream.h"

// GCC 12 at -O2, inlining one coroutine into another, pairs the global operator new inside
// Asio's frame allocator (thread_info_base::allocate) with the frame's class operator delete,
// which hands the block back to that same allocator: a matched pair it reports as mismatched.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace rwg::ott {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
// Everything runs on its serving thread's io_context, named by its own executor type: no
// type-erased executor copied, compared and dispatched through on every operation.
using Executor = asio::io_context::executor_type;
// Parsers whose header fields live in a FieldArena.
using RequestParser = http::request_parser<http::buffer_body, ArenaAllocator<char>>;
using ResponseParser = http::response_parser<http::buffer_body, ArenaAllocator<char>>;
template <class T>
using awaitable = asio::awaitable<T, Executor>;
constexpr asio::use_awaitable_t<Executor> use_awaitable;
using Socket = Stream::Socket;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
using Resolver = asio::ip::basic_resolver<tcp, Executor>;

void ConfigureServerTls(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                               SSL_OP_NO_RENEGOTIATION | SSL_OP_SINGLE_DH_USE);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_read_ahead(ctx, 1);
}

namespace {

const std::string kCookie = "__Host-rwg-ott";
// The chunk of a body relayed at once.
constexpr size_t kScratch = size_t{32} * 1024;
// A download's piece, read from the application and sent on at once: four TLS records, which
// the client's stream sends with one system call.
constexpr size_t kBulk = size_t{64} * 1024;
// How long an application's resolved addresses are used (on the monotonic clock: a wall clock
// stepped back does not keep them longer), and how many names a worker keeps.
constexpr std::chrono::seconds kResolvedFor{30};
constexpr size_t kMaxResolved = 1024;
const std::string kLoginPath = "/.rwg/login";
const std::string kLogoutPath = "/.rwg/logout";

using Headers = std::vector<std::pair<std::string, std::string>>;

Headers Redirect(const std::string& location) { return {{"Location", location}}; }

Headers RedirectWithCookie(const std::string& location, const std::string& cookie) {
  return {{"Location", location}, {"Set-Cookie", cookie}};
}

Headers LoginPageHeaders() {
  return {{"Content-Security-Policy",
           "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
           "frame-ancestors 'none'"},
          {"X-Frame-Options", "DENY"}};
}

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

bool IsTimeout(const beast::error_code& ec) {
  return ec == beast::error::timeout || ec == asio::error::timed_out;
}

bool IsClosed(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == http::error::partial_message;
}

// Headers that belong to one connection (RFC 9110 §7.6.1) or that rwg sets itself.
bool DroppedRequestField(http::field f, beast::string_view name) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::proxy_authenticate:
    case http::field::proxy_authorization:
    case http::field::te:
    case http::field::trailer:
    case http::field::upgrade:
    case http::field::forwarded:
    case http::field::host:
    case http::field::cookie:
    case http::field::expect:  // rwg answers 100-continue itself
      return true;
    default:
      break;
  }
  return beast::iequals(name, "x-forwarded-for") || beast::iequals(name, "x-forwarded-proto") ||
         beast::iequals(name, "x-forwarded-host") || beast::iequals(name, "x-real-ip");
}

bool DroppedResponseField(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::proxy_authenticate:
    case http::field::te:
    case http::field::trailer:
    case http::field::upgrade:
      return true;
    default:
      return false;
  }
}

// Beast's string_view as Abseil's.
absl::string_view Sv(beast::string_view v) { return {v.data(), v.size()}; }

// The tokens of the Connection header: the fields they name are hop-by-hop too.
std::vector<std::string> ConnectionTokens(beast::string_view value) {
  std::vector<std::string> out;
  for (absl::string_view t : absl::StrSplit(Sv(value), ',')) {
    t = absl::StripAsciiWhitespace(t);
    if (!t.empty() && out.size() < 16) out.push_back(absl::AsciiStrToLower(t));
  }
  return out;
}

// The Cookie header without rwg's own cookie; the value of rwg's cookie in `ours`.
std::string StripOurCookie(beast::string_view header, std::string* ours) {
  std::vector<absl::string_view> kept;
  for (absl::string_view pair : absl::StrSplit(Sv(header), ';')) {
    absl::string_view p = absl::StripAsciiWhitespace(pair);
    if (p.empty()) continue;
    if (absl::StartsWith(p, kCookie) && p.size() > kCookie.size() && p[kCookie.size()] == '=') {
      if (ours != nullptr) *ours = std::string(p.substr(kCookie.size() + 1));
      continue;
    }
    kept.push_back(p);
  }
  return absl::StrJoin(kept, "; ");
}

std::string StatusClass(unsigned code) { return absl::StrCat(code / 100, "xx"); }

// A local path to go back to after the login: "/" for anything else (an absolute URL,
// "//host", a back-slash, control characters).
std::string SafeNext(absl::string_view next) {
  if (next.empty() || next.front() != '/' || absl::StartsWith(next, "//") || next.size() > 2048) {
    return "/";
  }
  for (char c : next) {
    if (c == '\\' || static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
      return "/";
    }
  }
  return std::string(next);
}

std::string UrlEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

// application/x-www-form-urlencoded → name/value pairs (at most 16).
std::vector<std::pair<std::string, std::string>> ParseForm(absl::string_view body) {
  auto decode = [](absl::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        out.push_back(' ');
      } else if (s[i] == '%' && i + 2 < s.size()) {
        int v = 0;
        if (absl::SimpleHexAtoi(s.substr(i + 1, 2), &v)) {
          out.push_back(static_cast<char>(v));
          i += 2;
        } else {
          out.push_back('%');
        }
      } else {
        out.push_back(s[i]);
      }
    }
    return out;
  };
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view kv : absl::StrSplit(body, '&')) {
    if (kv.empty()) continue;
    if (out.size() >= 16) break;
    const size_t eq = kv.find('=');
    out.emplace_back(decode(kv.substr(0, eq)),
                     eq == absl::string_view::npos ? "" : decode(kv.substr(eq + 1)));
  }
  return out;
}

std::string FormValue(const std::vector<std::pair<std::string, std::string>>& form,
                      absl::string_view name) {
  for (const auto& [k, v] : form) {
    if (k == name) return v;
  }
  return "";
}

// The query string of a request target, with its '?', or "".
std::string QueryOf(beast::string_view target) {
  absl::string_view t(target.data(), target.size());
  const size_t hash = t.find('#');
  t = t.substr(0, hash);
  const size_t q = t.find('?');
  return q == absl::string_view::npos ? "" : std::string(t.substr(q));
}

struct Metrics {
  explicit Metrics(prometheus::Registry& r)
      : requests(prometheus::BuildCounter()
                     .Name("rwg_ott_requests_total")
                     .Help("Requests answered, by domain (from the list), service and status "
                           "class")
                     .Register(r)),
        duration(prometheus::BuildHistogram()
                     .Name("rwg_ott_request_duration_seconds")
                     .Help("From a request's header to the end of its answer, by service")
                     .Register(r)),
        refused(prometheus::BuildCounter()
                    .Name("rwg_ott_refused_total")
                    .Help("Connections and requests refused, by reason")
                    .Register(r)),
        backend_errors(prometheus::BuildCounter()
                           .Name("rwg_ott_backend_errors_total")
                           .Help("Requests the application did not answer, by domain and "
                                 "reason (connect, tls, timeout, protocol)")
                           .Register(r)),
        logins(prometheus::BuildCounter()
                   .Name("rwg_ott_logins_total")
                   .Help("Logins on rwg's login page, by result")
                   .Register(r)),
        connections(prometheus::BuildGauge()
                        .Name("rwg_ott_connections_open")
                        .Help("HTTPS connections open")
                        .Register(r)
                        .Add({})),
        websockets(prometheus::BuildGauge()
                       .Name("rwg_ott_websockets_open")
                       .Help("WebSocket connections being relayed")
                       .Register(r)
                       .Add({})),
        exceptions(prometheus::BuildCounter()
                       .Name("rwg_ott_internal_errors_total")
                       .Help("Connections ended by an unexpected error in rwg (logged)")
                       .Register(r)
                       .Add({})) {
    for (const char* reason :
         {"tls_handshake", "connection_limit", "source_limit", "banned", "rate", "bad_request",
          "timeout", "unknown_host", "misdirected", "path", "login_failed"}) {
      refused.Add({{"reason", reason}});
    }
    for (const char* result : {"ok", "bad_credentials", "locked", "disabled", "error"}) {
      logins.Add({{"result", result}});
    }
  }
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& duration;
  prometheus::Family<prometheus::Counter>& refused;
  prometheus::Family<prometheus::Counter>& backend_errors;
  prometheus::Family<prometheus::Counter>& logins;
  prometheus::Gauge& connections;
  prometheus::Gauge& websockets;
  prometheus::Counter& exceptions;
  void Refused(const char* reason) { refused.Add({{"reason", reason}}).Increment(); }
};

const prometheus::Histogram::BucketBoundaries& DurationBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5,   1,    2.5,   5,    10,  30};
  return b;
}

using ClientStream = Stream;

// A connection to an application, plain or TLS.
struct Upstream {
  std::string key;
  std::shared_ptr<ssl::context> tls;  // the backend's TLS settings, while the SSL lives
  std::unique_ptr<Stream> stream;
  beast::flat_buffer buffer;
  absl::Time idle_since;
  bool reused = false;
  Stream& lowest() { return *stream; }
};

// What the access log and the metrics say of one request.
struct Outcome {
  unsigned status = 0;
  uint64_t bytes = 0;
  std::string account;
  bool keep_alive = false;
};

// The most of a body's framing (a chunk's size line with its extensions) held unparsed.
constexpr size_t kMaxUnparsed = size_t{16} * 1024;

// A message header being written up: pieces copied in with one room check per line and no
// zero-filling (a std::string checks and terminates at every piece, and cannot grow without
// writing zeros first). One allocation for a usual header.
class HeadText {
 public:
  void Append(std::initializer_list<absl::string_view> pieces) {
    size_t n = 0;
    for (absl::string_view p : pieces) n += p.size();
    char* d = Room(n);
    for (absl::string_view p : pieces) {
      // An empty piece may have no data at all (Beast's empty reason or missing field).
      if (p.empty()) continue;
      std::memcpy(d, p.data(), p.size());
      d += p.size();
    }
    size_ += n;
  }
  HeadText& operator+=(absl::string_view p) {
    Append({p});
    return *this;
  }
  void clear() { size_ = 0; }
  asio::const_buffer buffer() const { return {data_.get(), size_}; }

 private:
  // Where `n` more bytes go.
  char* Room(size_t n) {
    if (cap_ - size_ < n) {
      const size_t cap = std::max({size_t{1024}, 2 * cap_, size_ + n});
      std::unique_ptr<char[]> grown(new char[cap]);
      if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
      data_ = std::move(grown);
      cap_ = cap;
    }
    return data_.get() + size_;
  }
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t cap_ = 0;
};

// How much one read from a connection asks for: what the buffer has room for, at least 4 KiB.
size_t ReadSize(const beast::flat_buffer& buf) {
  return std::max<size_t>(buf.capacity() - buf.size(), 4096);
}

// Reading a message is a loop of a synchronous step (parse what the buffer holds) and, when
// the step asks for it, one read of the stream. The hot callers write the loop in place (a
// coroutine per header or body would cost a frame each time):
//   while (HeaderStep(buf, parser, ec) == Step::kRead) {
//     const size_t n = co_await stream.async_read_some(buf.prepare(ReadSize(buf)), ...ec);
//     if (HeaderReadEnds(ec, n, buf, parser)) break;
//   }
// and `ec` then says how it ended (nothing: the header is whole).
enum class Step { kDone, kRead };

// Parses what `buf` holds into `parser`'s header. kDone: the header is whole (`ec` cleared),
// or `ec` says what is wrong with it; kRead: another read is needed.
template <bool isRequest>
Step HeaderStep(beast::flat_buffer& buf, http::basic_parser<isRequest>& parser,
                beast::error_code& ec) {
  ec = {};
  if (buf.size() > 0) {
    const size_t used = parser.put(buf.data(), ec);
    buf.consume(used);
    if (parser.is_header_done()) {
      ec = {};
      return Step::kDone;
    }
    if (ec && ec != http::error::need_more) return Step::kDone;
    ec = {};
  }
  return Step::kRead;
}

// After a read of `n` bytes for a header with outcome `ec`: true when reading ends here, with
// Beast's error for the same cases (end_of_stream for a close before anything,
// partial_message for a close mid-header); else the bytes are committed to `buf`.
template <bool isRequest>
bool HeaderReadEnds(beast::error_code& ec, size_t n, beast::flat_buffer& buf,
                    const http::basic_parser<isRequest>& parser) {
  if (ec == asio::error::eof) {
    ec = (parser.got_some() || buf.size() > 0) ? http::error::partial_message
                                               : http::error::end_of_stream;
    return true;
  }
  if (ec) return true;
  buf.commit(n);
  return false;
}

// Parses what `buf` holds into the body buffer of `parser`'s message (body().data, `room`
// bytes when the step began). kDone when the message is done, the buffer is full, or some of
// the body arrived and the rest needs another read (a streamed answer goes on as it comes,
// not once 32 KiB have gathered), or `ec` says what is wrong; kRead: nothing to pass on yet.
template <bool isRequest, class Allocator>
Step BodyStep(beast::flat_buffer& buf,
              http::parser<isRequest, http::buffer_body, Allocator>& parser, size_t room,
              beast::error_code& ec) {
  auto& body = parser.get().body();
  ec = {};
  for (;;) {
    if (parser.is_done() || body.size == 0) return Step::kDone;
    if (buf.size() == 0) return Step::kRead;
    const size_t used = parser.put(buf.data(), ec);
    buf.consume(used);
    if (parser.is_done() || ec == http::error::need_buffer) {
      ec = {};
      return Step::kDone;
    }
    if (ec && ec != http::error::need_more) return Step::kDone;
    ec = {};
    // Something arrived and the rest needs another read: it goes on first.
    if (body.size < room && (buf.size() == 0 || used == 0)) return Step::kDone;
    if (used > 0 && buf.size() > 0) continue;
    // What the parser cannot use grows only by a chunk's size line: a line that never ends
    // (an endless chunk extension) ends the message instead of the buffer growing.
    if (buf.size() > kMaxUnparsed) {
      ec = http::error::bad_chunk;
      return Step::kDone;
    }
    return Step::kRead;
  }
}

// After a read of `n` bytes for a body with outcome `ec`: true when reading ends here (`ec`:
// how; nothing when the close ended an answer read until the close); else the bytes are
// committed to `buf`. A close without TLS's close_notify counts as a close: it ends an answer
// read until the close (many servers never send close_notify), and a sized or chunked one is
// then cut short whichever it was.
template <bool isRequest, class Allocator>
bool BodyReadEnds(beast::error_code& ec, size_t n, beast::flat_buffer& buf,
                  http::parser<isRequest, http::buffer_body, Allocator>& parser) {
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    beast::error_code eof;
    parser.put_eof(eof);
    ec = eof ? beast::error_code(http::error::partial_message) : beast::error_code{};
    return true;
  }
  if (ec) return true;
  buf.commit(n);
  return false;
}

// The body step and its reads, as one coroutine (where a frame more does not matter).
template <bool isRequest, class Allocator>
awaitable<beast::error_code> ReadBody(
    Stream& stream, beast::flat_buffer& buf,
    http::parser<isRequest, http::buffer_body, Allocator>& parser) {
  const size_t room = parser.get().body().size;
  beast::error_code ec;
  while (BodyStep(buf, parser, room, ec) == Step::kRead) {
    const size_t n = co_await stream.async_read_some(buf.prepare(ReadSize(buf)),
                                                     asio::redirect_error(use_awaitable, ec));
    if (BodyReadEnds(ec, n, buf, parser)) break;
  }
  co_return ec;
}

// One piece of a body as it goes on the wire, chunked or as it is: parts[0..count).
struct Framed {
  std::array<char, 24> size_line{};
  std::array<asio::const_buffer, 4> parts;
  size_t count = 0;
  void Set(const char* data, size_t n, bool chunked, bool last) {
    count = 0;
    if (chunked && n > 0) {
      const int len = std::snprintf(size_line.data(), size_line.size(), "%zx\r\n", n);
      parts[count++] = asio::buffer(size_line.data(), static_cast<size_t>(len));
    }
    if (n > 0) parts[count++] = asio::buffer(data, n);
    if (chunked && n > 0) parts[count++] = asio::buffer("\r\n", 2);
    if (chunked && last) parts[count++] = asio::buffer("0\r\n\r\n", 5);
  }
};

}  // namespace

class Proxy::Impl {
 public:
  Impl(ProxyOptions options, OttState& state, OttStore& store, core::Clock& clock,
       prometheus::Registry& registry)
      : o_(std::move(options)),
        state_(state),
        store_(store),
        clock_(clock),
        metrics_(registry),
        per_source_(o_.max_connections_per_source, static_cast<size_t>(o_.max_connections)),
        listener_tls_(ssl::context::tls_server),
        blocking_(static_cast<size_t>(std::max(1, o_.blocking_threads))) {}
  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop();
  int port() const { return port_; }

 private:
  // A domain's and service's request metrics, found once per worker (not by their labels on
  // every request: the families never drop a child, so the pointers stay valid).
  struct RequestMetrics {
    std::array<prometheus::Counter*, 10> by_class{};  // by status / 100 (0: nothing answered)
    prometheus::Histogram* duration = nullptr;
  };
  struct Worker {
    // Before the io_context: the streams its handlers hold leave the sweep when it goes.
    Sweep sweep;
    asio::io_context io{1};
    std::optional<Timer> sweep_timer;
    std::optional<Acceptor> acceptor;
    std::unordered_map<std::string, std::vector<std::unique_ptr<Upstream>>> idle;
    // The applications' addresses by "<host> <port>", as resolved (see Resolve).
    struct Resolved {
      Resolver::results_type endpoints;
      std::chrono::steady_clock::time_point until;
    };
    std::unordered_map<std::string, Resolved> resolved;
    // By domain and service ("<domain> <service>"): as many as domains were configured.
    std::unordered_map<std::string, RequestMetrics> request_metrics;
    std::string metrics_key;  // CountRequest's key, built here
    std::thread thread;
  };
  // Counts one request of `domain` and `service` answered with `status` in `seconds`.
  void CountRequest(Worker& w, absl::string_view domain, absl::string_view service, unsigned status,
                    double seconds);

  static int OnServerName(SSL* ssl, int* alert, void* arg);
  // Expires the worker's streams past their deadline, every 100 ms.
  void SweepEvery(Worker& w);
  awaitable<void> Accept(Worker& w);
  // The addresses of `host`: an address as it is; a name from the worker's cache, resolved
  // again once kResolvedFor has passed or after a connection to it failed (`forget`).
  awaitable<Resolver::results_type> Resolve(Worker& w, const std::string& host, uint16_t port,
                                            beast::error_code& ec);
  static void Forget(Worker& w, const std::string& host, uint16_t port);
  // Accepts one connection and starts serving it.
  awaitable<void> AcceptOne(Worker& w);
  awaitable<void> Serve(Worker& w, Socket socket, std::string source, std::string key);
  awaitable<Outcome> Handle(Worker& w, ClientStream& client, beast::flat_buffer& buf, char* scratch,
                            RequestParser& parser, const std::string& fqdn,
                            const std::string& source, const std::string& key,
                            std::shared_ptr<const DomainEntry>& entry);
  awaitable<Outcome> Forward(Worker& w, ClientStream& client, beast::flat_buffer& buf,
                             char* scratch, RequestParser& parser, const DomainEntry& entry,
                             const std::string& target, const std::string& source,
                             std::string account);
  awaitable<Outcome> LoginPage(ClientStream& client, beast::flat_buffer& buf, RequestParser& parser,
                               const std::string& path, const std::string& source);
  awaitable<unsigned> Simple(ClientStream& client, unsigned status, unsigned version,
                             bool keep_alive, const std::string& content_type, std::string body,
                             Headers headers = {});
  awaitable<std::unique_ptr<Upstream>> Connect(Worker& w, const DomainEntry& entry,
                                               const std::string& key, std::string* reason);
  std::unique_ptr<Upstream> TakeIdle(Worker& w, const std::string& key);
  void GiveBack(Worker& w, std::unique_ptr<Upstream> up);
  std::shared_ptr<ssl::context> BackendTls(const std::string& ca_file, std::string* error);

  // Runs `f` on the blocking pool; the coroutine resumes on its own thread. Not a coroutine
  // itself: GCC 12 destroys a coroutine's by-value parameters twice once moved from.
  template <class F>
  awaitable<std::invoke_result_t<F>> Blocking(const F& f) {
    using R = std::invoke_result_t<F>;
    return asio::co_spawn(
        blocking_, [f]() mutable -> asio::awaitable<R> { co_return f(); }, use_awaitable);
  }

  ProxyOptions o_;
  OttState& state_;
  OttStore& store_;
  core::Clock& clock_;
  Metrics metrics_;
  core::ConnectionsPerSource per_source_;
  ssl::context listener_tls_;
  asio::thread_pool blocking_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int> connections_{0};
  std::atomic<int> logins_in_flight_{0};
  static constexpr int kMaxLoginsInFlight = 64;
  std::atomic<bool> stopping_{false};
  int port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
  absl::Mutex tls_mu_;
  std::map<std::string, std::shared_ptr<ssl::context>> backend_tls_ ABSL_GUARDED_BY(tls_mu_);
};

int Proxy::Impl::OnServerName(SSL* ssl, int* alert, void* arg) {
  try {
    auto* self = static_cast<Impl*>(arg);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    if (name == nullptr) {
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    std::string fqdn = absl::AsciiStrToLower(absl::StripSuffix(name, "."));
    std::shared_ptr<const Snapshot> snap = self->state_.Get();
    const DomainEntry* e = snap->Find(fqdn);
    if (e == nullptr || !e->domain.enabled()) return SSL_TLSEXT_ERR_ALERT_FATAL;
    SSL_CTX* ctx = self->state_.certs().Get(fqdn);
    if (ctx == nullptr) return SSL_TLSEXT_ERR_ALERT_FATAL;
    SSL_set_SSL_CTX(ssl, ctx);
    SSL_CTX_free(ctx);  // SSL_set_SSL_CTX holds its own reference
    return SSL_TLSEXT_ERR_OK;
  } catch (...) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
}

absl::Status Proxy::Impl::Start() {
  ConfigureServerTls(listener_tls_.native_handle());
  SSL_CTX_set_tlsext_servername_callback(listener_tls_.native_handle(), &Impl::OnServerName);
  SSL_CTX_set_tlsext_servername_arg(listener_tls_.native_handle(), this);
  const size_t colon = o_.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(o_.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("listen: '", o_.listen, "' is not host:port"));
  }
  std::string host = o_.listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host.empty() ? "::" : host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("listen: '", host, "' is not an IP address"));
  }
  for (int i = 0; i < std::max(1, o_.threads); ++i) {
    auto w = std::make_unique<Worker>();
    w->acceptor.emplace(w->io);
    const tcp::endpoint ep(address, static_cast<uint16_t>(port_ != 0 ? port_ : port));
    w->acceptor->open(ep.protocol(), ec);
    if (!ec) w->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) {
      const int one = 1;
      if (::setsockopt(w->acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) !=
          0) {
        ec = beast::error_code(errno, beast::system_category());
      }
    }
    if (!ec) w->acceptor->bind(ep, ec);
    if (!ec) w->acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", o_.listen, ": ", ec.message()));
    }
    port_ = w->acceptor->local_endpoint().port();
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    Worker* wp = w.get();
    asio::co_spawn(wp->io, Accept(*wp), asio::detached);
    wp->sweep_timer.emplace(wp->io);
    SweepEvery(*wp);
    wp->thread = std::thread([this, wp] {
      for (;;) {
        try {
          wp->io.run();
          return;
        } catch (const std::exception& e) {
          metrics_.exceptions.Increment();
          core::log::Error("ott serving thread: unexpected error", {{"error", e.what()}});
        } catch (...) {
          metrics_.exceptions.Increment();
          core::log::Error("ott serving thread: unexpected error", {});
        }
      }
    });
  }
  started_ = true;
  return absl::OkStatus();
}

void Proxy::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  for (auto& w : workers_) {
    asio::post(w->io, [wp = w.get()] {
      beast::error_code ignored;
      if (wp->acceptor) wp->acceptor->close(ignored);
    });
  }
  // Requests in flight finish; kept-alive connections end after their current request.
  const absl::Time until = absl::Now() + o_.drain;
  while (connections_.load() > 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(50));
  for (auto& w : workers_) w->io.stop();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  blocking_.join();
  // The connections' frames go now, while what they refer to is still there.
  workers_.clear();
}

void Proxy::Impl::SweepEvery(Worker& w) {
  w.sweep_timer->expires_after(std::chrono::milliseconds(100));
  w.sweep_timer->async_wait([this, &w](const beast::error_code& ec) {
    if (ec) return;
    w.sweep.Run(std::chrono::steady_clock::now());
    SweepEvery(w);
  });
}

awaitable<void> Proxy::Impl::Accept(Worker& w) {
  for (;;) {
    try {
      co_await AcceptOne(w);
    } catch (const std::exception& e) {
      metrics_.exceptions.Increment();
      core::log::Error("ott accept: unexpected error", {{"error", e.what()}});
    } catch (...) {
      metrics_.exceptions.Increment();
      core::log::Error("ott accept: unexpected error", {});
    }
    if (!w.acceptor->is_open()) co_return;
  }
}

awaitable<void> Proxy::Impl::AcceptOne(Worker& w) {
  beast::error_code ec;
  Socket socket = co_await w.acceptor->async_accept(asio::redirect_error(use_awaitable, ec));
  if (ec == asio::error::operation_aborted || !w.acceptor->is_open()) co_return;
  if (ec) {
    // EMFILE and the like: a moment for descriptors to come back.
    Timer t(w.io, std::chrono::milliseconds(20));
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    co_return;
  }
  beast::error_code peer_ec;
  const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
  if (peer_ec) co_return;
  std::string source = peer.address().to_string();
  if (peer.address().is_v6() && peer.address().to_v6().is_v4_mapped()) {
    source = asio::ip::make_address_v4(asio::ip::v4_mapped, peer.address().to_v6()).to_string();
  }
  std::string key = core::SourceKey(source);
  if (state_.Banned(key)) {
    metrics_.Refused("banned");
    co_return;
  }
  if (connections_.fetch_add(1) >= o_.max_connections) {
    connections_.fetch_sub(1);
    metrics_.Refused("connection_limit");
    co_return;
  }
  if (!per_source_.Acquire(key)) {
    connections_.fetch_sub(1);
    metrics_.Refused("source_limit");
    co_return;
  }
  socket.set_option(tcp::no_delay(true), peer_ec);
  asio::co_spawn(w.io, Serve(w, std::move(socket), std::move(source), std::move(key)),
                 asio::detached);
}

awaitable<void> Proxy::Impl::Serve(Worker& w, Socket socket, std::string source, std::string key) {
  metrics_.connections.Increment();
  struct Release {
    Impl* self;
    const std::string& key;
    ~Release() {
      self->per_source_.Release(key);
      self->connections_.fetch_sub(1);
      self->metrics_.connections.Decrement();
    }
  } release{this, key};
  ClientStream client(w.sweep, std::move(socket), listener_tls_.native_handle(),
                      Stream::Role::kServer);
  try {
    beast::error_code ec;
    client.expires_after(Chrono(o_.header_timeout));
    co_await client.async_handshake(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      metrics_.Refused("tls_handshake");
      co_return;
    }
    const char* sni = SSL_get_servername(client.native_handle(), TLSEXT_NAMETYPE_host_name);
    const std::string fqdn =
        absl::AsciiStrToLower(absl::StripSuffix(sni == nullptr ? "" : sni, "."));
    beast::flat_buffer buf;
    buf.reserve(16384);  // Beast reads what the buffer's capacity leaves (512 bytes at first)
    // Bodies cross through this, the request's then the answer's (not zero-filled: each chunk
    // is written before it is read).
    std::unique_ptr<char[]> scratch(new char[kScratch]);
    // Before the parsers that use it (one per request, below).
    FieldArena request_fields;
    bool first = true;
    while (!stopping_.load()) {
      // The header's fields go to the connection's arena (none is allocated for a usual one).
      RequestParser parser(std::piecewise_construct, std::make_tuple(),
                           std::make_tuple(ArenaAllocator<char>(request_fields)));
      parser.header_limit(static_cast<uint32_t>(o_.max_header_bytes));
      parser.body_limit(o_.max_request_body_bytes);
      client.expires_after(Chrono(first ? o_.header_timeout : o_.idle_timeout));
      while (HeaderStep(buf, parser, ec) == Step::kRead) {
        const size_t n = co_await client.async_read_some(buf.prepare(ReadSize(buf)),
                                                         asio::redirect_error(use_awaitable, ec));
        if (HeaderReadEnds(ec, n, buf, parser)) break;
      }
      if (ec) {
        if (IsTimeout(ec)) {
          if (buf.size() > 0 || parser.got_some()) metrics_.Refused("timeout");
        } else if (!IsClosed(ec) && ec != asio::error::operation_aborted) {
          metrics_.Refused("bad_request");
          const unsigned status = ec == http::error::header_limit ? 431 : 400;
          std::string text = status == 431 ? "request header too large\n" : "malformed request\n";
          // The connection closes after this answer whether or not it could be written.
          (void)co_await Simple(client, status, 11, false, "text/plain", std::move(text));
        }
        break;
      }
      first = false;
      const absl::Time start = clock_.Now();
      const std::string method(parser.get().method_string());
      const beast::string_view full_target = parser.get().target();
      const std::string path(full_target.substr(0, std::min<size_t>(full_target.find('?'), 256)));
      std::shared_ptr<const DomainEntry> entry;
      Outcome out =
          co_await Handle(w, client, buf, scratch.get(), parser, fqdn, source, key, entry);
      const double seconds = absl::ToDoubleSeconds(clock_.Now() - start);
      // Views into the entry, which `entry` keeps.
      const absl::string_view domain =
          entry != nullptr ? absl::string_view(entry->domain.fqdn()) : absl::string_view("unknown");
      const absl::string_view service =
          entry != nullptr ? absl::string_view(entry->service) : absl::string_view("none");
      CountRequest(w, domain, service, out.status, seconds);
      if (o_.access_log) {
        core::log::Info("ott request", {{"source", source},
                                        {"domain", std::string(domain)},
                                        {"service", std::string(service)},
                                        {"method", method.substr(0, 16)},
                                        {"path", path},
                                        {"status", absl::StrCat(out.status)},
                                        {"bytes", absl::StrCat(out.bytes)},
                                        {"ms", absl::StrCat(static_cast<int64_t>(seconds * 1000))},
                                        {"account", out.account}});
      }
      if (!out.keep_alive) break;
    }
    // The TLS close, then what the client still sends is read and dropped (up to 2 s) until
    // its own close: closing on unread bytes would reset the connection, and the client could
    // lose the answer it has not read yet.
    client.SendCloseNotify();
    client.expires_after(std::chrono::seconds(2));
    std::array<char, 1024> discard;
    for (int i = 0; i < 64; ++i) {
      co_await client.async_read_some(asio::buffer(discard),
                                      asio::redirect_error(use_awaitable, ec));
      if (ec) break;
    }
  } catch (const std::exception& e) {
    metrics_.exceptions.Increment();
    core::log::Error("ott connection failed", {{"source", source}, {"error", e.what()}});
  } catch (...) {
    metrics_.exceptions.Increment();
    core::log::Error("ott connection failed", {{"source", source}});
  }
  client.Close();
}

void Proxy::Impl::CountRequest(Worker& w, absl::string_view domain, absl::string_view service,
                               unsigned status, double seconds) {
  // The key is built in the worker's own string: no allocation once the map holds it.
  w.metrics_key.assign(domain.data(), domain.size())
      .append(" ")
      .append(service.data(), service.size());
  auto it = w.request_metrics.find(w.metrics_key);
  if (it == w.request_metrics.end()) {
    it = w.request_metrics.emplace(w.metrics_key, RequestMetrics{}).first;
  }
  RequestMetrics& m = it->second;
  const size_t c = std::min<size_t>(status / 100, m.by_class.size() - 1);
  if (m.by_class[c] == nullptr) {
    m.by_class[c] = &metrics_.requests.Add({{"domain", std::string(domain)},
                                            {"service", std::string(service)},
                                            {"code", StatusClass(status)}});
  }
  if (m.duration == nullptr) {
    m.duration = &metrics_.duration.Add({{"service", std::string(service)}}, DurationBuckets());
  }
  m.by_class[c]->Increment();
  m.duration->Observe(seconds);
}

awaitable<unsigned> Proxy::Impl::Simple(ClientStream& client, unsigned status, unsigned version,
                                        bool keep_alive, const std::string& content_type,
                                        std::string body, Headers headers) {
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  res.set(http::field::server, "rwg-ott");
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  for (const auto& [name, value] : headers) res.insert(name, value);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  beast::error_code ec;
  client.expires_after(Chrono(o_.idle_timeout));
  co_await http::async_write(client, res, asio::redirect_error(use_awaitable, ec));
  co_return status;
}

awaitable<Outcome> Proxy::Impl::Handle(Worker& w, ClientStream& client, beast::flat_buffer& buf,
                                       char* scratch, RequestParser& parser,
                                       const std::string& fqdn, const std::string& source,
                                       const std::string& key,
                                       std::shared_ptr<const DomainEntry>& entry) {
  auto& req = parser.get();
  const unsigned version = req.version() == 10 ? 10 : 11;
  // A request whose body is not read leaves the connection unusable.
  const bool body_pending = !parser.is_done();
  const bool keep = req.keep_alive() && !body_pending && !stopping_.load();
  Outcome out;
  auto refuse = [&](unsigned status, const char* reason, std::string text,
                    bool count) -> awaitable<Outcome> {
    metrics_.Refused(reason);
    // A ban that this refusal completes applies from the source's next connection on.
    if (count) (void)state_.Refused(key, reason);
    Outcome o;
    o.status = co_await Simple(client, status, version, keep && status != 429, "text/plain",
                               std::move(text));
    o.keep_alive = keep && status != 429;
    co_return o;
  };
  if (state_.Banned(key)) {
    metrics_.Refused("banned");
    out.status = co_await Simple(client, 403, version, false, "text/plain", "forbidden\n");
    co_return out;
  }
  if (!state_.AllowRequest(key)) {
    co_return co_await refuse(429, "rate", "too many requests\n", false);
  }
  beast::string_view host_header = req[http::field::host];
  absl::string_view host(host_header.data(), host_header.size());
  if (!host.empty() && host.front() != '[') host = host.substr(0, host.find(':'));
  if (req.count(http::field::host) != 1 || !absl::EqualsIgnoreCase(host, fqdn)) {
    co_return co_await refuse(421, "misdirected", "misdirected request\n", true);
  }
  std::shared_ptr<const Snapshot> snap = state_.Get();
  std::shared_ptr<const DomainEntry> e = snap->FindShared(fqdn);
  if (e == nullptr || !e->domain.enabled()) {
    co_return co_await refuse(421, "unknown_host", "misdirected request\n", true);
  }
  entry = e;
  // Request smuggling: one framing only, and only chunked as a transfer coding.
  if (req.count(http::field::transfer_encoding) > 0 &&
      (req.count(http::field::content_length) > 0 || !req.chunked())) {
    co_return co_await refuse(400, "bad_request", "bad transfer-encoding\n", false);
  }
  absl::StatusOr<std::string> path = NormalizePath(Sv(req.target()));
  if (!path.ok()) {
    co_return co_await refuse(400, "bad_request", absl::StrCat(path.status().message(), "\n"),
                              true);
  }
  const std::string target = *path + QueryOf(req.target());
  if (absl::StartsWith(*path, "/.rwg/")) {
    co_return co_await LoginPage(client, buf, parser, *path, source);
  }
  const Access access = Classify(e->paths, *path);
  if (access == Access::kRefused) {
    co_return co_await refuse(404, "path", "not found\n", true);
  }
  std::string account;
  if (access == Access::kAdmin) {
    std::string cookie;
    // Only rwg's cookie is wanted here; the header without it is built when forwarding.
    (void)StripOurCookie(req[http::field::cookie], &cookie);
    std::optional<std::string> who;
    if (!cookie.empty()) {
      // Lambdas are named, never temporaries of a co_await expression: GCC 12 destroys such
      // temporaries twice.
      const auto check = [this, cookie] { return store_.SessionAccount(cookie); };
      absl::StatusOr<std::optional<std::string>> s = co_await Blocking(check);
      if (!s.ok()) {
        out.status = co_await Simple(client, 503, version, false, "text/plain",
                                     "rwg cannot check the session now\n");
        co_return out;
      }
      who = *s;
    }
    snap = state_.Get();
    if (!who.has_value() || snap->enabled_accounts.count(*who) == 0) {
      if (req.method() == http::verb::get || req.method() == http::verb::head) {
        out.status =
            co_await Simple(client, 303, version, keep, "text/plain", "rwg login required\n",
                            Redirect(absl::StrCat(kLoginPath, "?next=", UrlEncode(target))));
      } else {
        out.status =
            co_await Simple(client, 401, version, keep, "text/plain", "rwg login required\n");
      }
      out.keep_alive = keep;
      co_return out;
    }
    account = *who;
  }
  co_return co_await Forward(w, client, buf, scratch, parser, *e, target, source,
                             std::move(account));
}

awaitable<Outcome> Proxy::Impl::LoginPage(ClientStream& client, beast::flat_buffer& buf,
                                          RequestParser& parser, const std::string& path,
                                          const std::string& source) {
  auto& req = parser.get();
  const unsigned version = req.version() == 10 ? 10 : 11;
  Outcome out;
  const std::string key = core::SourceKey(source);
  const std::string next_param = [&] {
    const std::string q = QueryOf(req.target());
    for (const auto& [k, v] : ParseForm(absl::string_view(q).substr(q.empty() ? 0 : 1))) {
      if (k == "next") return SafeNext(v);
    }
    return std::string("/");
  }();
  if (path == kLoginPath && (req.method() == http::verb::get || req.method() == http::verb::head)) {
    out.keep_alive = req.keep_alive() && parser.is_done();
    out.status = co_await Simple(client, 200, version, out.keep_alive, "text/html; charset=utf-8",
                                 LoginHtml(next_param, ""), LoginPageHeaders());
    co_return out;
  }
  if ((path != kLoginPath && path != kLogoutPath) || req.method() != http::verb::post) {
    metrics_.Refused("path");
    out.status = co_await Simple(client, 404, version, false, "text/plain", "not found\n");
    co_return out;
  }
  // A small form: read it whole.
  std::string body;
  std::array<char, 4096> chunk{};
  beast::error_code ec;
  // One deadline for the whole form (the sender may not be logged in).
  client.expires_after(Chrono(o_.header_timeout));
  while (!parser.is_done()) {
    req.body().data = chunk.data();
    req.body().size = chunk.size();
    ec = co_await ReadBody(client, buf, parser);
    if (ec) co_return out;
    body.append(chunk.data(), chunk.size() - req.body().size);
    if (body.size() > 4096) {
      metrics_.Refused("bad_request");
      out.status = co_await Simple(client, 413, version, false, "text/plain", "form too large\n");
      co_return out;
    }
  }
  const bool keep = req.keep_alive() && !stopping_.load();
  if (path == kLogoutPath) {
    std::string cookie;
    // Only rwg's cookie is wanted: a logout is answered by rwg, never forwarded.
    (void)StripOurCookie(req[http::field::cookie], &cookie);
    if (!cookie.empty()) {
      const auto end = [this, cookie] { return store_.DeleteSession(cookie); };
      // The browser's cookie is cleared by the answer either way; a session Redis could not
      // delete now ends at its expiry.
      (void)co_await Blocking(end);
    }
    out.keep_alive = keep;
    out.status =
        co_await Simple(client, 303, version, keep, "text/plain", "logged out\n",
                        RedirectWithCookie(kLoginPath, absl::StrCat(kCookie,
                                                                    "=; Path=/; Secure; HttpOnly; "
                                                                    "SameSite=Lax; Max-Age=0")));
    co_return out;
  }
  const auto form = ParseForm(body);
  const std::string name = FormValue(form, "name");
  const std::string password = FormValue(form, "password");
  const std::string next = SafeNext(FormValue(form, "next"));
  const LoginPolicy policy = o_.login;
  // Password checks cost memory and time (scrypt): a bounded number wait at once.
  if (logins_in_flight_.fetch_add(1) >= kMaxLoginsInFlight) {
    logins_in_flight_.fetch_sub(1);
    metrics_.logins.Add({{"result", "error"}}).Increment();
    out.status = co_await Simple(client, 503, version, false, "text/plain",
                                 "too many logins at once; try again\n");
    co_return out;
  }
  struct InFlight {
    std::atomic<int>& n;
    ~InFlight() { n.fetch_sub(1); }
  } in_flight{logins_in_flight_};
  const auto login = [this, name, password, policy] {
    return store_.Login(name, password, policy);
  };
  absl::StatusOr<LoginResult> result = co_await Blocking(login);
  if (!result.ok()) {
    metrics_.logins.Add({{"result", "error"}}).Increment();
    out.status = co_await Simple(client, 503, version, false, "text/plain",
                                 "rwg cannot check the login now\n");
    co_return out;
  }
  if (*result == LoginResult::kOk) {
    const auto open = [this, name, policy] { return store_.CreateSession(name, policy.session); };
    absl::StatusOr<std::string> cookie = co_await Blocking(open);
    if (!cookie.ok()) {
      metrics_.logins.Add({{"result", "error"}}).Increment();
      out.status = co_await Simple(client, 503, version, false, "text/plain",
                                   "rwg cannot open a session now\n");
      co_return out;
    }
    metrics_.logins.Add({{"result", "ok"}}).Increment();
    core::log::Info("ott login", {{"source", source}, {"account", name}});
    out.account = name;
    out.keep_alive = keep;
    out.status = co_await Simple(
        client, 303, version, keep, "text/plain", "logged in\n",
        RedirectWithCookie(next, absl::StrCat(kCookie, "=", *cookie,
                                              "; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=",
                                              absl::ToInt64Seconds(policy.session))));
    co_return out;
  }
  const char* result_name = *result == LoginResult::kLocked     ? "locked"
                            : *result == LoginResult::kDisabled ? "disabled"
                                                                : "bad_credentials";
  metrics_.logins.Add({{"result", result_name}}).Increment();
  metrics_.Refused("login_failed");
  // A ban that this failure completes applies from the source's next request on.
  (void)state_.Refused(key, "login");
  core::log::Info("ott login refused",
                  {{"source", source}, {"account", name.substr(0, 64)}, {"result", result_name}});
  out.keep_alive = keep;
  out.status = co_await Simple(client, 401, version, keep, "text/html; charset=utf-8",
                               LoginHtml(next,
                                         "The name or the password is wrong, or the "
                                         "account is locked for a while."),
                               LoginPageHeaders());
  co_return out;
}

std::shared_ptr<ssl::context> Proxy::Impl::BackendTls(const std::string& ca_file,
                                                      std::string* error) {
  absl::MutexLock lock(&tls_mu_);
  auto it = backend_tls_.find(ca_file);
  if (it != backend_tls_.end()) return it->second;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_verify_mode(ssl::verify_peer);
  beast::error_code ec;
  if (ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
  } else {
    ctx->load_verify_file(ca_file, ec);
  }
  if (ec) {
    *error = absl::StrCat("backend.ca_file '", ca_file, "': ", ec.message());
    return nullptr;
  }
  backend_tls_[ca_file] = ctx;
  return ctx;
}

std::unique_ptr<Upstream> Proxy::Impl::TakeIdle(Worker& w, const std::string& key) {
  auto it = w.idle.find(key);
  if (it == w.idle.end()) return nullptr;
  const absl::Time now = clock_.Now();
  while (!it->second.empty()) {
    std::unique_ptr<Upstream> up = std::move(it->second.back());
    it->second.pop_back();
    if (now - up->idle_since < o_.backend_idle_timeout) {
      up->reused = true;
      return up;
    }
  }
  return nullptr;
}

void Proxy::Impl::GiveBack(Worker& w, std::unique_ptr<Upstream> up) {
  if (stopping_.load()) return;
  std::vector<std::unique_ptr<Upstream>>& list = w.idle[up->key];
  if (list.size() >= o_.max_idle_backend_connections) return;  // closed
  up->idle_since = clock_.Now();
  up->lowest().expires_never();
  list.push_back(std::move(up));
}

namespace {
std::string ResolvedKey(const std::string& host, uint16_t port) {
  return absl::StrCat(host, " ", port);
}
}  // namespace

awaitable<Resolver::results_type> Proxy::Impl::Resolve(Worker& w, const std::string& host,
                                                       uint16_t port, beast::error_code& ec) {
  ec = {};
  const std::string service = std::to_string(port);
  beast::error_code literal;
  const asio::ip::address address = asio::ip::make_address(host, literal);
  if (!literal) {
    co_return Resolver::results_type::create(tcp::endpoint(address, port), host, service);
  }
  const std::string key = ResolvedKey(host, port);
  const auto now = std::chrono::steady_clock::now();
  if (auto it = w.resolved.find(key); it != w.resolved.end() && now < it->second.until) {
    co_return it->second.endpoints;
  }
  Resolver resolver(w.io);
  auto endpoints =
      co_await resolver.async_resolve(host, service, asio::redirect_error(use_awaitable, ec));
  if (ec) co_return endpoints;
  // One entry per application name in use; stale ones go when the cache is full.
  if (w.resolved.size() >= kMaxResolved) {
    std::erase_if(w.resolved, [now](const auto& e) { return now >= e.second.until; });
    if (w.resolved.size() >= kMaxResolved) w.resolved.clear();
  }
  w.resolved[key] = Worker::Resolved{endpoints, now + kResolvedFor};
  co_return endpoints;
}

void Proxy::Impl::Forget(Worker& w, const std::string& host, uint16_t port) {
  w.resolved.erase(ResolvedKey(host, port));
}

awaitable<std::unique_ptr<Upstream>> Proxy::Impl::Connect(Worker& w, const DomainEntry& entry,
                                                          const std::string& key,
                                                          std::string* reason) {
  const pb::Backend& b = entry.domain.backend();
  const uint16_t port = static_cast<uint16_t>(b.port() != 0 ? b.port() : (b.tls() ? 443 : 80));
  beast::error_code ec;
  auto endpoints = co_await Resolve(w, b.host(), port, ec);
  if (ec) {
    *reason = "connect";
    co_return nullptr;
  }
  auto up = std::make_unique<Upstream>();
  up->key = key;
  up->buffer.reserve(kScratch);  // the answer's header and first bytes in one read
  if (b.tls()) {
    std::string error;
    up->tls = BackendTls(b.ca_file(), &error);
    if (up->tls == nullptr) {
      core::log::Warn("ott backend TLS", {{"domain", entry.domain.fqdn()}, {"error", error}});
      *reason = "tls";
      co_return nullptr;
    }
  }
  // The connection is made on a socket of its own; the stream takes it once connected.
  Socket socket(w.io);
  {
    // The connect's own deadline (Asio's connect on the bare socket). The timer's handler may
    // already be queued when the connect completes: it touches the socket only while the
    // connect is still pending (`done` is shared, the socket lives as long as that).
    struct Connecting {
      bool done = false;
      bool timed_out = false;
    };
    auto state = std::make_shared<Connecting>();
    Timer deadline(w.io, Chrono(o_.backend_connect_timeout));
    deadline.async_wait([&socket, state](const beast::error_code& tec) {
      if (tec || state->done) return;
      state->timed_out = true;
      beast::error_code ignored;
      socket.close(ignored);
    });
    co_await asio::async_connect(socket, endpoints, asio::redirect_error(use_awaitable, ec));
    state->done = true;
    deadline.cancel();
    if (state->timed_out) ec = beast::error::timeout;
  }
  if (ec) {
    *reason = IsTimeout(ec) ? "connect_timeout" : "connect";
    Forget(w, b.host(), port);
    co_return nullptr;
  }
  socket.set_option(tcp::no_delay(true), ec);
  up->stream =
      std::make_unique<Stream>(w.sweep, std::move(socket),
                               up->tls ? up->tls->native_handle() : nullptr, Stream::Role::kClient);
  if (up->tls) {
    const std::string name = b.server_name().empty() ? b.host() : b.server_name();
    SSL* ssl = up->stream->native_handle();
    if (ssl != nullptr) {
      SSL_set_tlsext_host_name(ssl, name.c_str());
      SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      beast::error_code ip_ec;
      (void)asio::ip::make_address(name, ip_ec);
      if (!ip_ec) {
        X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
      } else {
        X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
      }
    }
    up->lowest().expires_after(Chrono(o_.backend_connect_timeout));
    co_await up->stream->async_handshake(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      core::log::Warn("ott backend TLS handshake failed",
                      {{"domain", entry.domain.fqdn()}, {"error", ec.message()}});
      *reason = "tls";
      co_return nullptr;
    }
  }
  co_return up;
}

namespace {

// Copies what `from` gives to `to` until either fails; `leftover` (already read) goes first.
// A read may wait `idle`; a write, `stuck` (a peer that takes nothing fails the write even
// while bytes keep coming the other way). The other direction's pump reads `to` and writes
// `from` at the same time: each sets only its own kind of deadline.
awaitable<void> Pump(Stream& from, Stream& to, beast::flat_buffer& leftover, absl::Duration idle,
                     absl::Duration stuck) {
  beast::error_code ec;
  if (leftover.size() > 0) {
    to.write_expires_after(Chrono(stuck));
    co_await asio::async_write(to, leftover.data(), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;
    leftover.consume(leftover.size());
  }
  std::array<char, 16384> b{};
  for (;;) {
    from.read_expires_after(Chrono(idle));
    const size_t n =
        co_await from.async_read_some(asio::buffer(b), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;
    to.write_expires_after(Chrono(stuck));
    co_await asio::async_write(to, asio::buffer(b.data(), n),
                               asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;
  }
}

}  // namespace

awaitable<Outcome> Proxy::Impl::Forward(Worker& w, ClientStream& client, beast::flat_buffer& buf,
                                        char* scratch, RequestParser& parser,
                                        const DomainEntry& entry, const std::string& target,
                                        const std::string& source, std::string account) {
  auto& req = parser.get();
  const unsigned version = req.version() == 10 ? 10 : 11;
  const std::string& fqdn = entry.domain.fqdn();
  Outcome out;
  out.account = std::move(account);
  const bool websocket = beast::websocket::is_upgrade(req);
  const bool has_body = !parser.is_done();
  // A body goes up as it came: chunked or of the length the client gave (the only framings
  // Handle lets through).
  const bool chunked_up = has_body && req.chunked();
  // The request as the application gets it, written as one string.
  HeadText head;
  head.Append({Sv(req.method_string()), " ", target, " HTTP/1.1\r\n"});
  const std::vector<std::string> named = ConnectionTokens(req[http::field::connection]);
  std::string cookies;
  for (const auto& f : req) {
    if (f.name() == http::field::cookie) {
      std::string kept = StripOurCookie(f.value(), nullptr);
      if (kept.empty()) continue;
      if (!cookies.empty()) cookies += "; ";
      cookies += kept;
      continue;
    }
    if (DroppedRequestField(f.name(), f.name_string())) continue;
    if (!named.empty()) {
      const std::string lower = absl::AsciiStrToLower(Sv(f.name_string()));
      if (std::find(named.begin(), named.end(), lower) != named.end() &&
          lower != "content-length" && lower != "transfer-encoding") {
        continue;
      }
    }
    head.Append({Sv(f.name_string()), ": ", Sv(f.value()), "\r\n"});
  }
  const bool v6 = source.find(':') != std::string::npos;
  head.Append({"Host: ", fqdn, "\r\n"});
  if (!cookies.empty()) head.Append({"Cookie: ", cookies, "\r\n"});
  head.Append({"X-Forwarded-For: ", source, "\r\nX-Forwarded-Proto: https\r\n",
               "X-Forwarded-Host: ", fqdn, "\r\nForwarded: for=", v6 ? "\"[" : "", source,
               v6 ? "]\"" : "", ";proto=https;host=", fqdn, "\r\n"});
  if (websocket) {
    head.Append({"Connection: Upgrade\r\nUpgrade: ", Sv(req[http::field::upgrade]), "\r\n"});
  }
  head += "\r\n";
  // A client waiting for "100 Continue" before its body gets it from rwg (the application
  // gets the body without the wait).
  if (has_body && beast::iequals(req[http::field::expect], "100-continue")) {
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    beast::error_code cec;
    client.expires_after(Chrono(o_.idle_timeout));
    co_await asio::async_write(client, asio::buffer(kContinue, sizeof(kContinue) - 1),
                               asio::redirect_error(use_awaitable, cec));
    if (cec) co_return out;
  }
  const std::string& key = entry.backend_key;
  beast::error_code ec;
  auto fail = [&](unsigned status, const char* reason) -> awaitable<Outcome> {
    metrics_.backend_errors.Add({{"domain", fqdn}, {"reason", reason}}).Increment();
    core::log::Warn("ott application did not answer",
                    {{"domain", fqdn}, {"reason", reason}, {"error", ec ? ec.message() : ""}});
    Outcome o;
    o.account = out.account;
    // Built before the co_await: GCC 12 destroys class temporaries of a conditional expression
    // inside a co_await expression twice.
    std::string text = absl::StrCat(status, " the application behind ", fqdn, " did not answer",
                                    status == 504 ? " in time\n" : "\n");
    o.status = co_await Simple(client, status, version, false, "text/plain", std::move(text));
    co_return o;
  };
  std::unique_ptr<Upstream> up;
  // Before the parser: the answer's fields are kept there (none allocated for a usual header).
  FieldArena response_fields;
  std::optional<ResponseParser> rp;
  Framed framed;
  // A kept-alive connection the application closed meanwhile fails at once: the request goes
  // again on a new one when nothing of its body has been read.
  for (int attempt = 0; attempt < 2; ++attempt) {
    up = websocket ? nullptr : TakeIdle(w, key);
    if (up == nullptr) {
      std::string reason;
      up = co_await Connect(w, entry, key, &reason);
      if (up == nullptr) {
        co_return co_await fail(reason == "connect_timeout" ? 504 : 502, reason.c_str());
      }
    }
    const bool reused = up->reused;
    // The request's header, then its body as it comes (written here, not in a coroutine of
    // its own: a frame each time).
    Stream& upstream = *up->stream;
    upstream.expires_after(Chrono(o_.backend_timeout));
    co_await asio::async_write(upstream, head.buffer(), asio::redirect_error(use_awaitable, ec));
    while (!ec && has_body && !parser.is_done()) {
      req.body().data = scratch;
      req.body().size = kScratch;
      client.expires_after(Chrono(o_.idle_timeout));
      ec = co_await ReadBody(client, buf, parser);
      if (ec) {
        ec = http::error::partial_message;
        break;
      }
      const size_t n = kScratch - req.body().size;
      framed.Set(scratch, n, chunked_up, parser.is_done());
      if (framed.count == 0) continue;
      upstream.expires_after(Chrono(o_.backend_timeout));
      co_await asio::async_write(
          upstream, std::span<const asio::const_buffer>(framed.parts.data(), framed.count),
          asio::redirect_error(use_awaitable, ec));
    }
    if (ec == http::error::partial_message) {
      // The client stopped sending its body.
      co_return out;
    }
    if (ec) {
      if (reused && !has_body) continue;
      co_return co_await fail(IsTimeout(ec) ? 504 : 502, IsTimeout(ec) ? "timeout" : "protocol");
    }
    // Interim answers (1xx other than 101: 100 Continue, 103 Early Hints) are skipped: the
    // client gets the final one.
    for (int interim = 0; interim < 8; ++interim) {
      rp.emplace(std::piecewise_construct, std::make_tuple(),
                 std::make_tuple(ArenaAllocator<char>(response_fields)));
      // No limit (boost::none would be one of 0 in Beast 1.74: it compares a length with the
      // empty optional).
      rp->body_limit(std::numeric_limits<std::uint64_t>::max());
      rp->header_limit(64 * 1024);
      if (req.method() == http::verb::head) rp->skip(true);
      up->lowest().expires_after(Chrono(o_.backend_timeout));
      while (HeaderStep(up->buffer, *rp, ec) == Step::kRead) {
        const size_t n = co_await up->stream->async_read_some(
            up->buffer.prepare(ReadSize(up->buffer)), asio::redirect_error(use_awaitable, ec));
        if (HeaderReadEnds(ec, n, up->buffer, *rp)) break;
      }
      const unsigned code = ec ? 0 : rp->get().result_int();
      if (code < 100 || code >= 200 || code == 101) break;
    }
    if (ec && reused && !has_body && !rp->got_some() && IsClosed(ec)) continue;
    break;
  }
  if (ec) {
    co_return co_await fail(IsTimeout(ec) ? 504 : 502, IsTimeout(ec) ? "timeout" : "protocol");
  }
  auto& res = rp->get();
  const bool upgraded = websocket && res.result() == http::status::switching_protocols;
  const bool body_expected = !rp->is_done() && !upgraded;
  // The framing as the parser read it (every Transfer-Encoding line, not only the first).
  const bool chunked_in = rp->chunked();
  const bool sized = rp->content_length().has_value();
  // An answer without a length (chunked, or read until the application closes) goes chunked
  // to an HTTP/1.1 client; an HTTP/1.0 client, which knows no chunks, gets the bytes as they
  // are and the connection's close after them.
  const bool until_close = body_expected && !sized && !chunked_in;
  const bool chunked_down = body_expected && version == 11 && (chunked_in || until_close);
  const bool client_keep = req.keep_alive() && parser.is_done() && !stopping_.load() &&
                           (version == 11 || sized || !body_expected);
  // The application's connection carries the next request only after a whole answer that
  // did not end with its close, with nothing read past it, and never after an upgrade.
  auto reusable = [&](bool whole) {
    return whole && rp->keep_alive() && up->buffer.size() == 0 && !websocket;
  };
  // The answer's header as the client gets it.
  beast::string_view reason = res.reason();
  if (reason.empty() && http::int_to_status(res.result_int()) != http::status::unknown) {
    reason = http::obsolete_reason(res.result());
  }
  head.clear();
  head.Append({version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ", absl::AlphaNum(res.result_int()).Piece(),
               " ", Sv(reason), "\r\n"});
  // Where rwg frames the body, the application's Transfer-Encoding lines become one line.
  std::string codings;
  for (const auto& f : res) {
    if (DroppedResponseField(f.name())) continue;
    if (f.name() == http::field::transfer_encoding && body_expected) {
      absl::StrAppend(&codings, codings.empty() ? "" : ", ", Sv(f.value()));
      continue;
    }
    head.Append({Sv(f.name_string()), ": ", Sv(f.value()), "\r\n"});
  }
  if (upgraded) {
    head.Append({"Connection: Upgrade\r\nUpgrade: ", Sv(res[http::field::upgrade]), "\r\n"});
  } else if (version == 11 && !client_keep) {
    head += "Connection: close\r\n";
  } else if (version == 10 && client_keep) {
    head += "Connection: keep-alive\r\n";
  }
  if (chunked_down) {
    // The application's codings, ending in chunked (only chunked when it had none).
    if (codings.empty()) codings = "chunked";
    if (!chunked_in && codings != "chunked") codings += ", chunked";
    head.Append({"Transfer-Encoding: ", codings, "\r\n"});
  }
  head += "\r\n";
  out.status = res.result_int();
  if (upgraded) {
    client.expires_after(Chrono(o_.idle_timeout));
    co_await asio::async_write(client, head.buffer(), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return out;
    metrics_.websockets.Increment();
    // Both directions at once; the one that ends first closes both, then waits for the other.
    Timer done(w.io, std::chrono::steady_clock::time_point::max());
    bool other_done = false;
    Upstream* u = up.get();
    // Whichever direction ends first (a close, an error, the idle timeout) ends the other.
    auto close_both = [&client, u] {
      beast::error_code ignored;
      client.socket().shutdown(tcp::socket::shutdown_both, ignored);
      u->lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
      client.cancel();
      u->lowest().cancel();
    };
    auto upward = [&]() -> awaitable<void> {
      try {
        co_await Pump(client, *u->stream, buf, o_.websocket_idle_timeout, o_.idle_timeout);
      } catch (...) {
      }
      close_both();
      other_done = true;
      done.cancel();
    };
    asio::co_spawn(w.io, upward(), asio::detached);
    try {
      co_await Pump(*u->stream, client, u->buffer, o_.websocket_idle_timeout, o_.idle_timeout);
    } catch (...) {
    }
    close_both();
    beast::error_code ignored;
    if (!other_done) {
      co_await done.async_wait(asio::redirect_error(use_awaitable, ignored));
    }
    metrics_.websockets.Decrement();
    co_return out;
  }
  if (!body_expected) {
    client.expires_after(Chrono(o_.idle_timeout));
    co_await asio::async_write(client, head.buffer(), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return out;
    if (reusable(true)) GiveBack(w, std::move(up));
    out.keep_alive = client_keep;
    co_return out;
  }
  // A long answer of known length (a download) goes past the parser: read from the
  // application's socket into one buffer and written to the client from there.
  if (sized && !chunked_in && rp->content_length_remaining().value_or(0) > kScratch) {
    uint64_t left = *rp->content_length_remaining();
    // The header and the body's first bytes, read with it: one TLS record.
    const size_t first = static_cast<size_t>(std::min<uint64_t>(up->buffer.size(), left));
    const std::array<asio::const_buffer, 2> parts{head.buffer(),
                                                  asio::buffer(up->buffer.data().data(), first)};
    client.expires_after(Chrono(o_.idle_timeout));
    co_await asio::async_write(client, parts, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return out;
    up->buffer.consume(first);
    left -= first;
    out.bytes += first;
    // The download's own buffer while it lasts (the connection's scratch is smaller).
    std::unique_ptr<char[]> bulk(new (std::nothrow) char[kBulk]);
    char* piece = bulk != nullptr ? bulk.get() : scratch;
    const size_t piece_size = bulk != nullptr ? kBulk : kScratch;
    while (left > 0) {
      up->lowest().expires_after(Chrono(o_.backend_timeout));
      const size_t n = co_await up->stream->async_read_some(
          asio::buffer(piece, static_cast<size_t>(std::min<uint64_t>(piece_size, left))),
          asio::redirect_error(use_awaitable, ec));
      if (ec) {
        // Part of the answer is sent: the client's connection closes mid-body.
        metrics_.backend_errors
            .Add({{"domain", fqdn}, {"reason", IsTimeout(ec) ? "timeout" : "protocol"}})
            .Increment();
        co_return out;
      }
      left -= n;
      client.expires_after(Chrono(o_.idle_timeout));
      co_await asio::async_write(client, asio::buffer(piece, n),
                                 asio::redirect_error(use_awaitable, ec));
      if (ec) co_return out;
      out.bytes += n;
    }
    // The whole answer is read (past the parser).
    if (reusable(true)) GiveBack(w, std::move(up));
    out.keep_alive = client_keep;
    co_return out;
  }
  // Otherwise the body as it is parsed, each piece framed for the client; the header goes out
  // with the first piece (one TLS record for a small answer).
  bool sent = false;
  while (!rp->is_done() || !sent) {
    res.body().data = scratch;
    res.body().size = kScratch;
    up->lowest().expires_after(Chrono(o_.backend_timeout));
    while (BodyStep(up->buffer, *rp, kScratch, ec) == Step::kRead) {
      const size_t n = co_await up->stream->async_read_some(
          up->buffer.prepare(ReadSize(up->buffer)), asio::redirect_error(use_awaitable, ec));
      if (BodyReadEnds(ec, n, up->buffer, *rp)) break;
    }
    if (ec) {
      // Nothing sent yet: the client gets an answer that says so; else the connection closes
      // mid-body.
      if (!sent) {
        co_return co_await fail(IsTimeout(ec) ? 504 : 502, IsTimeout(ec) ? "timeout" : "protocol");
      }
      metrics_.backend_errors
          .Add({{"domain", fqdn}, {"reason", IsTimeout(ec) ? "timeout" : "protocol"}})
          .Increment();
      co_return out;
    }
    const size_t n = kScratch - res.body().size;
    framed.Set(scratch, n, chunked_down, rp->is_done());
    std::array<asio::const_buffer, 5> parts;
    size_t count = 0;
    if (!sent) parts[count++] = head.buffer();
    for (size_t i = 0; i < framed.count; ++i) parts[count++] = framed.parts[i];
    if (count == 0) continue;
    client.expires_after(Chrono(o_.idle_timeout));
    co_await asio::async_write(client, std::span<const asio::const_buffer>(parts.data(), count),
                               asio::redirect_error(use_awaitable, ec));
    sent = true;
    if (ec) co_return out;
    out.bytes += n;
  }
  if (reusable(rp->is_done())) GiveBack(w, std::move(up));
  out.keep_alive = client_keep;
  co_return out;
}

Proxy::Proxy(ProxyOptions options, OttState& state, OttStore& store, core::Clock& clock,
             prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), state, store, clock, registry)) {}
Proxy::~Proxy() = default;
absl::Status Proxy::Start() { return impl_->Start(); }
void Proxy::Stop() { impl_->Stop(); }
int Proxy::port() const { return impl_->port(); }

}  // namespace rwg::ott
