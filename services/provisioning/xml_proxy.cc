// The XML-feature proxy (see xml_proxy.h): XmlCall, one request to the iPBX's XML port over
// TLS, and the Asio thread the calls run on.
#include "services/provisioning/xml_proxy.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <prometheus/histogram.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"

namespace rwg::provisioning {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// What the calls share: the client TLS context, the deadline, the metrics.
struct CallContext {
  ssl::context& tls;
  absl::Duration timeout;
  bool verify;
  InternalErrors& errors;
  prometheus::Histogram& upstream_seconds;
};

// One request to the iPBX's XML port over TLS, under one deadline for all of it.
class XmlCall : public std::enable_shared_from_this<XmlCall> {
 public:
  XmlCall(const asio::any_io_executor& ex, CallContext& ctx, XmlUpstream up,
          std::shared_ptr<http::request<http::empty_body>> req, std::function<void(Answer)> done)
      : ctx_(ctx),
        up_(std::move(up)),
        req_(std::move(req)),
        done_(std::move(done)),
        resolver_(ex),
        stream_(ex, ctx.tls) {}

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
      Finish(ctx_.errors.AnswerFor("xml proxy", std::current_exception(), "xml"));
    }
  }

  void Start() {
    started_ = absl::Now();
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(ctx_.timeout)));
    // Server name indication carries a host name, never an address (RFC 6066).
    beast::error_code not_ip;
    (void)asio::ip::make_address(up_.host, not_ip);  // only the error is wanted: not an address
    if (not_ip && !SSL_set_tlsext_host_name(stream_.native_handle(), up_.host.c_str())) {
      return Fail(
          beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
    }
    if (ctx_.verify) {
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

  void Observe() { ctx_.upstream_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - started_)); }

  void Done() {
    Observe();
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
    Observe();
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
        // The phone's connection ends at its wait limit (the worker's sweep).
        ctx_.errors.Record("xml proxy answer", std::current_exception());
      }
    }
  }

  CallContext& ctx_;
  XmlUpstream up_;
  std::shared_ptr<http::request<http::empty_body>> req_;
  std::function<void(Answer)> done_;
  tcp::resolver resolver_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  absl::Time started_;
};

class AsioXmlProxy final : public XmlProxy {
 public:
  AsioXmlProxy(XmlProxyOptions options, InternalErrors& errors, prometheus::Registry& registry)
      : options_(std::move(options)),
        tls_(ssl::context::tls_client),
        ctx_{tls_, options_.timeout, !options_.insecure_skip_verify, errors,
             prometheus::BuildHistogram()
                 .Name("rwg_provisioning_upstream_seconds")
                 .Help("Time the iPBX's XML port took to answer a proxied request")
                 .Register(registry)
                 .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1,
                                                                  0.25, 0.5, 1, 2.5, 5})} {}
  ~AsioXmlProxy() override { Stop(); }

  absl::Status Start() override {
    SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
    beast::error_code ec;
    if (!options_.ca_file.empty()) {
      tls_.load_verify_file(options_.ca_file, ec);
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("xml-ca-file: '", options_.ca_file, "': ", ec.message()));
      }
    } else if (!options_.insecure_skip_verify) {
      tls_.set_default_verify_paths(ec);
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("the system's CA store (for the iPBX's XML port): ", ec.message()));
      }
    }
    work_.emplace(asio::make_work_guard(ioc_));
    thread_ = std::thread([this]() {
      // A handler that throws does not end the proxy: the error is counted and it runs on.
      while (true) {
        try {
          ioc_.run();
          return;
        } catch (...) {
          ctx_.errors.Record("xml proxy", std::current_exception());
        }
      }
    });
    return absl::OkStatus();
  }

  void Stop() override {
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  void Forward(const XmlUpstream& upstream, const Request& req, const std::string& source,
               std::function<void(Answer)> done) override {
    auto out = std::make_shared<http::request<http::empty_body>>(req.method(), req.target(), 11);
    out->set(http::field::host, absl::StrCat(upstream.host, ":", upstream.port));
    out->set("X-Forwarded-For", source);
    for (http::field f :
         {http::field::user_agent, http::field::accept, http::field::accept_language}) {
      if (auto it = req.find(f); it != req.end()) out->set(f, it->value());
    }
    out->keep_alive(false);
    auto call = std::make_shared<XmlCall>(ioc_.get_executor(), ctx_, upstream, std::move(out),
                                          std::move(done));
    asio::post(ioc_, [call]() { call->Run(); });
  }

  absl::Duration WaitLimit() const override { return options_.timeout + absl::Seconds(5); }

 private:
  XmlProxyOptions options_;
  ssl::context tls_;
  CallContext ctx_;
  asio::io_context ioc_;  // the calls' connections; destroyed first, with the calls left
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<XmlProxy> NewXmlProxy(XmlProxyOptions options, InternalErrors& errors,
                                      prometheus::Registry& registry) {
  return std::make_unique<AsioXmlProxy>(std::move(options), errors, registry);
}

}  // namespace rwg::provisioning
