#include "services/sync/callbacks.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/core/keys.h"
#include "services/core/log.h"
#include "services/sync/oauth1.h"

namespace rwg::sync {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr absl::Duration kBackoffFirst = absl::Seconds(1);
constexpr absl::Duration kBackoffMax = absl::Minutes(5);
// An answer's body is read (and dropped) up to this size.
constexpr uint64_t kAnswerBodyMax = uint64_t{64} * 1024;

// KEYS: lock. ARGV: the holder's token. Deletes the lock only if it is still ours.
constexpr char kUnlock[] = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

class HttpsPoster final : public CallbackPoster {
 public:
  explicit HttpsPoster(absl::Duration timeout)
      : tls_(ssl::context::tls_client), timeout_(timeout) {}

  absl::Status Init(const std::string& ca_file) {
    tls_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
    tls_.set_verify_mode(ssl::verify_peer);
    beast::error_code ec;
    if (ca_file.empty()) {
      tls_.set_default_verify_paths(ec);
    } else {
      tls_.load_verify_file(ca_file, ec);
    }
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("callback-ca-file: ", ca_file.empty() ? "the system's CA store" : ca_file,
                       ": ", ec.message()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int> Post(const CallbackRequest& r) override {
    asio::io_context io;
    tcp::resolver resolver(io);
    beast::ssl_stream<beast::tcp_stream> stream(io, tls_);
    // The peer's certificate must name the URL's host: an address as an IP SAN, a name as a
    // DNS SAN (OpenSSL checks it during the handshake).
    SSL* ssl = stream.native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    unsigned char buf[16];
    const bool address = inet_pton(AF_INET, r.url.host.c_str(), buf) == 1 ||
                         inet_pton(AF_INET6, r.url.host.c_str(), buf) == 1;
    if (address) {
      X509_VERIFY_PARAM_set1_ip_asc(param, r.url.host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, r.url.host.c_str(), 0);
      SSL_set_tlsext_host_name(ssl, r.url.host.c_str());
    }

    http::request<http::string_body> req{http::verb::post, r.url.target, 11};
    req.set(http::field::host, r.url.host_header);
    req.set(http::field::user_agent, "rwg-sync");
    req.set(http::field::authorization, r.authorization);
    req.set(http::field::content_type, "application/x-www-form-urlencoded");
    req.set(http::field::connection, "close");
    req.body() = r.body;
    req.prepare_payload();
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kAnswerBodyMax);

    std::string failed;  // the step that failed and why
    bool done = false;
    auto fail = [&](const char* step, const beast::error_code& ec) {
      failed = absl::StrCat(step, ": ", ec.message());
      done = true;
    };
    const auto deadline = absl::ToChronoMilliseconds(timeout_);
    beast::get_lowest_layer(stream).expires_after(deadline);
    resolver.async_resolve(
        r.url.host, std::to_string(r.url.port),
        [&](const beast::error_code& ec, const tcp::resolver::results_type& results) {
          if (ec) return fail("resolve", ec);
          beast::get_lowest_layer(stream).async_connect(results, [&](const beast::error_code& ec,
                                                                     const tcp::endpoint&) {
            if (ec) return fail("connect", ec);
            stream.async_handshake(ssl::stream_base::client, [&](const beast::error_code& ec) {
              if (ec) return fail("TLS handshake", ec);
              http::async_write(stream, req, [&](const beast::error_code& ec, size_t) {
                if (ec) return fail("write", ec);
                http::async_read(stream, buffer, parser, [&](const beast::error_code& ec, size_t) {
                  if (ec) return fail("read", ec);
                  done = true;
                });
              });
            });
          });
        });
    io.run_for(deadline);
    if (!done) {
      // Out of time: cancel what is pending and let its handlers finish.
      resolver.cancel();
      beast::error_code ignored;
      beast::get_lowest_layer(stream).socket().close(ignored);
      io.restart();
      io.run();
      failed = absl::StrCat("no answer within ", absl::FormatDuration(timeout_));
    }
    if (!failed.empty()) return absl::UnavailableError(failed);
    return static_cast<int>(parser.get().result_int());
  }

 private:
  ssl::context tls_;
  const absl::Duration timeout_;
};

std::string Nonce(core::Random& rng) { return absl::BytesToHexString(rng.Bytes(16)); }

}  // namespace

absl::StatusOr<std::unique_ptr<CallbackPoster>> NewHttpsPoster(const HttpsPosterOptions& options) {
  auto p = std::make_unique<HttpsPoster>(options.timeout);
  if (absl::Status s = p->Init(options.ca_file); !s.ok()) return s;
  return std::unique_ptr<CallbackPoster>(std::move(p));
}

absl::Duration CallbackBackoff(int failures) {
  if (failures < 1) return absl::ZeroDuration();
  absl::Duration d = kBackoffFirst;
  for (int i = 1; i < failures && d < kBackoffMax; ++i) d *= 2;
  return std::min(d, kBackoffMax);
}

CallbackRequest SignedNotice(const core::SyncConsumer& consumer, const core::HttpsUrl& url,
                             const core::DeviceChange& change, absl::Time now,
                             const std::string& nonce) {
  CallbackRequest out;
  out.url = url;
  out.body = absl::StrCat("op=", PercentEncode(change.op),
                          "&set_username=", PercentEncode(change.set_username),
                          "&revision=", change.revision);
  const std::vector<std::pair<std::string, std::string>> oauth = {
      {"oauth_consumer_key", consumer.id},
      {"oauth_nonce", nonce},
      {"oauth_signature_method", "HMAC-SHA1"},
      {"oauth_timestamp", std::to_string(absl::ToUnixSeconds(now))},
      {"oauth_version", "1.0"}};
  std::vector<std::string> fields;
  fields.reserve(oauth.size() + 1);
  for (const auto& [k, v] : oauth) {
    fields.push_back(absl::StrCat(k, "=\"", PercentEncode(v), "\""));
  }
  SignedRequest r;
  r.method = "POST";
  r.scheme = "https";
  r.host = url.host_header;
  const size_t q = url.target.find('?');
  r.path = url.target.substr(0, q);
  if (q != std::string::npos) r.query = url.target.substr(q + 1);
  r.authorization = absl::StrCat("OAuth ", absl::StrJoin(fields, ", "));
  r.form_body = out.body;
  absl::StatusOr<Parameters> params = CollectParameters(r);
  // Our own header, query and body: they parse (the URL was validated).
  const std::string base = params.ok() ? SignatureBaseString(r, *params) : std::string();
  const std::string signature =
      Sign(SignatureMethod::kHmacSha1, base, consumer.secret, /*token_secret=*/"");
  fields.push_back(absl::StrCat("oauth_signature=\"", PercentEncode(signature), "\""));
  out.authorization = absl::StrCat("OAuth ", absl::StrJoin(fields, ", "));
  return out;
}

CallbackDeliverer::CallbackDeliverer(CallbackOptions options, core::RedisClient& redis,
                                     const core::SecretBox& box, core::Clock& clock,
                                     core::Random& rng, CallbackPoster& poster,
                                     prometheus::Registry& registry)
    : options_(options),
      redis_(redis),
      store_(redis, box),
      clock_(clock),
      rng_(rng),
      poster_(poster),
      total_(prometheus::BuildCounter()
                 .Name("rwg_sync_callbacks_total")
                 .Help("Change notices POSTed to consumers' callback URLs, by outcome")
                 .Register(registry)),
      failures_(prometheus::BuildGauge()
                    .Name("rwg_sync_callback_failures")
                    .Help("Consecutive failed callback attempts, per consumer with a callback URL")
                    .Register(registry)) {}

CallbackDeliverer::~CallbackDeliverer() { Stop(); }

void CallbackDeliverer::Start() {
  thread_ = std::thread([this] {
    for (;;) {
      RunOnce();
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.poll)) return;
    }
  });
}

void CallbackDeliverer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CallbackDeliverer::RunOnce() {
  absl::StatusOr<std::vector<core::SyncConsumer>> consumers = store_.ListConsumers();
  if (!consumers.ok()) {
    core::log::Warn("callbacks: cannot list consumers",
                    {{"error", std::string(consumers.status().message())}});
    return;
  }
  std::vector<std::string> with_url;
  for (const core::SyncConsumer& c : *consumers) {
    if (c.callback_url.empty()) continue;
    with_url.push_back(c.name);
    if (c.enabled) DeliverTo(c);
  }
  // The failures gauge: one series per consumer with a callback URL (at most
  // kSyncConsumersMax).
  absl::MutexLock lock(&metrics_mu_);
  for (auto it = gauges_.begin(); it != gauges_.end();) {
    if (std::find(with_url.begin(), with_url.end(), it->first) == with_url.end()) {
      failures_.Remove(it->second);
      it = gauges_.erase(it);
    } else {
      ++it;
    }
  }
}

void CallbackDeliverer::Count(const std::string& consumer, bool delivered) {
  absl::MutexLock lock(&metrics_mu_);
  prometheus::Counter*& c = counters_[{consumer, delivered}];
  if (c == nullptr) {
    c = &total_.Add({{"consumer", consumer}, {"outcome", delivered ? "delivered" : "failed"}});
  }
  c->Increment();
}

void CallbackDeliverer::SetFailures(const std::string& consumer, int failures) {
  absl::MutexLock lock(&metrics_mu_);
  prometheus::Gauge*& g = gauges_[consumer];
  if (g == nullptr) g = &failures_.Add({{"consumer", consumer}});
  g->Set(failures);
}

void CallbackDeliverer::DeliverTo(const core::SyncConsumer& c) {
  absl::StatusOr<core::HttpsUrl> url = core::ParseSyncCallbackUrl(c.callback_url);
  if (!url.ok()) return;  // refused when it was set; a damaged record is left alone
  absl::StatusOr<core::SyncCallbackStatus> st = store_.CallbackStatus(c);
  if (!st.ok()) return;
  SetFailures(c.name, st->failures);
  const absl::Time start = clock_.Now();
  if (st->failures > 0 && start < st->next_attempt) return;
  // Anything new? (Without the lock: most rounds end here.)
  absl::StatusOr<core::DeviceChangeLog> log =
      core::ReadDeviceChanges(redis_, st->delivered_revision, options_.page);
  if (!log.ok() || (log->revision == st->delivered_revision && !log->lost)) return;

  const std::string lock_key = core::SyncCallbackLockKey(c.name);
  const std::string holder = Nonce(rng_);
  absl::StatusOr<core::RedisReply> locked =
      redis_.Command({"SET", lock_key, holder, "NX", "PX",
                      std::to_string(absl::ToInt64Milliseconds(options_.lock))});
  if (!locked.ok() || locked->is_nil()) return;  // another instance is delivering
  // Read again under the lock: another instance may have delivered meanwhile.
  st = store_.CallbackStatus(c);
  if (st.ok()) log = core::ReadDeviceChanges(redis_, st->delivered_revision, options_.page);
  if (st.ok() && log.ok()) {
    core::SyncCallbackStatus& s = *st;
    bool write = false;
    if (log->lost) {
      s.last_error = absl::StrCat("change log trimmed: notices after revision ",
                                  s.delivered_revision, " up to ", log->revision, " skipped");
      core::log::Warn("callbacks: changes lost, skipped",
                      {{"consumer", c.name},
                       {"from", std::to_string(s.delivered_revision)},
                       {"to", std::to_string(log->revision)}});
      s.delivered_revision = log->revision;
      write = true;
    } else {
      const std::vector<core::DeviceChange>& ch = log->changes;
      bool stopped = false;  // a notice failed, or the round is out of time
      for (size_t i = 0; i < ch.size() && !stopped;) {
        size_t j = i;
        while (j < ch.size() && ch[j].revision == ch[i].revision) ++j;
        if (clock_.Now() - start > options_.lock / 2) {
          stopped = true;  // the next round goes on
          break;
        }
        for (size_t k = i; k < j; ++k) {
          if (!ch[k].set_password_changed) continue;
          const absl::Time now = clock_.Now();
          absl::StatusOr<int> answer = poster_.Post(SignedNotice(c, *url, ch[k], now, Nonce(rng_)));
          s.last_attempt = now;
          write = true;
          if (answer.ok() && *answer >= 200 && *answer < 300) {
            s.failures = 0;
            s.last_error.clear();
            s.next_attempt = absl::UnixEpoch();
            Count(c.name, true);
            core::log::Info("callbacks: notice delivered",
                            {{"consumer", c.name},
                             {"revision", std::to_string(ch[k].revision)},
                             {"user", ch[k].set_username}});
            continue;
          }
          ++s.failures;
          s.last_error =
              answer.ok() ? absl::StrCat("HTTP ", *answer) : std::string(answer.status().message());
          s.next_attempt = now + CallbackBackoff(s.failures);
          Count(c.name, false);
          core::log::Warn("callbacks: notice failed",
                          {{"consumer", c.name},
                           {"revision", std::to_string(ch[k].revision)},
                           {"error", s.last_error},
                           {"failures", std::to_string(s.failures)},
                           {"retry_in", absl::FormatDuration(CallbackBackoff(s.failures))}});
          stopped = true;
          break;
        }
        if (stopped) break;
        s.delivered_revision = ch[i].revision;
        write = true;
        i = j;
      }
      // Nothing more in the log: revisions without a password change are passed too.
      if (!stopped && !log->more && s.delivered_revision < log->revision) {
        s.delivered_revision = log->revision;
        write = true;
      }
    }
    if (write) {
      if (absl::Status w = store_.PutCallbackStatus(c, s); !w.ok()) {
        core::log::Warn("callbacks: cannot record the delivery status",
                        {{"consumer", c.name}, {"error", std::string(w.message())}});
      }
      SetFailures(c.name, s.failures);
    }
  }
  // A lock Redis could not release lapses by itself at its expiry.
  (void)redis_.Eval(kUnlock, {lock_key}, {holder});
}

}  // namespace rwg::sync
