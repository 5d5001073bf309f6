// The ott proxy in process, with a real redis-server, certificates written by the test, an
// application behind it (a small plain-HTTP server on a thread) and libcurl as the browser.
#include "services/ott/proxy.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/registry.h"
#include "services/core/random.h"
#include "tests/testing/scratch_redis.h"
#include "tests/testing/self_signed.h"

namespace rwg::ott {
namespace {

namespace fs = std::filesystem;

// A self-signed P-256 certificate for `fqdn` (CN and subjectAltName) in <dir>/<fqdn>/.
void WriteCertificate(const fs::path& dir, const std::string& fqdn) {
  fs::create_directories(dir / fqdn);
  rwg::testing::SelfSignedOptions o;
  o.cn = fqdn;
  o.dns_san = true;
  ASSERT_TRUE(rwg::testing::WriteSelfSigned(rwg::testing::MakeSelfSigned(o),
                                            (dir / fqdn / "tls.crt").string(),
                                            (dir / fqdn / "tls.key").string()));
}

// The application: answers every request with 200 and the request's header as its body,
// keeps connections alive; "/portal/slow" answers after 2 s.
class Application {
 public:
  Application() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 64);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~Application() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    for (std::thread& t : conns_) t.join();
  }
  int port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  std::string last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  void Run() {
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0 || stop_) {
        if (c >= 0) ::close(c);
        return;
      }
      ++accepted_;
      conns_.emplace_back([this, c] { Serve(c); });
    }
  }
  void Serve(int c) {
    std::string in;
    char buf[4096];
    for (;;) {
      size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::read(c, buf, sizeof(buf));
        if (n <= 0) {
          ::close(c);
          return;
        }
        in.append(buf, static_cast<size_t>(n));
      }
      std::string head = in.substr(0, end + 4);
      in.erase(0, end + 4);
      size_t body = 0;
      const size_t cl = absl::AsciiStrToLower(head).find("content-length:");
      if (cl != std::string::npos) {
        (void)absl::SimpleAtoi(head.substr(cl + 15, head.find("\r\n", cl) - cl - 15), &body);
      }
      while (in.size() < body) {
        const ssize_t n = ::read(c, buf, sizeof(buf));
        if (n <= 0) {
          ::close(c);
          return;
        }
        in.append(buf, static_cast<size_t>(n));
      }
      const std::string content = head + in.substr(0, body);
      in.erase(0, body);
      {
        absl::MutexLock lock(&mu_);
        last_ = content;
      }
      if (absl::StartsWith(head, "GET /portal/slow")) absl::SleepFor(absl::Seconds(2));
      const std::string out = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
                                           "Content-Length: ", content.size(), "\r\n\r\n", content);
      if (::write(c, out.data(), out.size()) < 0) {
        ::close(c);
        return;
      }
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
  std::vector<std::thread> conns_;
  absl::Mutex mu_;
  std::string last_ ABSL_GUARDED_BY(mu_);
};

struct Answer {
  CURLcode error = CURLE_OK;
  long status = 0;
  std::string headers;
  std::string body;
};

size_t Append(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

class ProxyTest : public ::testing::Test {
 protected:
  // The proxy's OpenSSL writes with write(): a client gone makes SIGPIPE, which the services
  // ignore (core::ServiceMain).
  static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }
  void SetUp() override {
    auto r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    dir_ =
        fs::temp_directory_path() / ("rwg-ott-proxy-" + core::RandomHex(core::Random::System(), 6));
    WriteCertificate(dir_, "portal.test");
    WriteCertificate(dir_, "admin.test");
    WriteCertificate(dir_, "down.test");
    WriteCertificate(dir_, "named.test");
    store_ = std::make_unique<OttStore>(redis_->client(), core::SystemClock::Get(),
                                        core::Random::System());
    AddDomain("portal.test", pb::SERVICE_USER_PORTAL, app_.port());
    AddDomain("admin.test", pb::SERVICE_WEB_ADMIN, app_.port());
    AddDomain("named.test", pb::SERVICE_USER_PORTAL, app_.port(), "localhost");
    // Nothing listens on the port of a socket just closed.
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(s);
    AddDomain("down.test", pb::SERVICE_USER_PORTAL, ntohs(a.sin_port));
    ASSERT_TRUE(store_->AddAccount("alice", "correct horse battery", true).ok());
    certs_ = std::make_unique<CertStore>(dir_.string(), &ConfigureServerTls, registry_);
    StateOptions so;
    so.refresh = absl::Milliseconds(50);
    so.ban_refusals = 1000;
    state_ = std::make_unique<OttState>(*store_, redis_->client(), *certs_,
                                        core::SystemClock::Get(), "test", so, registry_);
    ASSERT_TRUE(state_->Start().ok());
    ProxyOptions po;
    po.listen = "127.0.0.1:0";
    po.threads = 1;
    po.backend_timeout = absl::Seconds(1);
    po.backend_connect_timeout = absl::Seconds(1);
    po.login.failures = 3;
    proxy_ = std::make_unique<Proxy>(po, *state_, *store_, core::SystemClock::Get(), registry_);
    ASSERT_TRUE(proxy_->Start().ok());
    curl_ = curl_easy_init();
  }
  void TearDown() override {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
    if (proxy_) proxy_->Stop();
    if (state_) state_->Stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void AddDomain(const std::string& fqdn, pb::Service service, int port,
                 const std::string& host = "127.0.0.1") {
    pb::Domain d;
    d.set_fqdn(fqdn);
    d.set_service(service);
    d.mutable_backend()->set_host(host);
    d.mutable_backend()->set_port(static_cast<uint32_t>(port));
    d.set_enabled(true);
    d.mutable_paths();
    if (service == pb::SERVICE_USER_PORTAL) {
      d.mutable_paths()->add_user("/portal/");
      d.mutable_paths()->add_common("/favicon.ico");
    }
    ASSERT_TRUE(store_->AddDomain(d).ok());
  }

  // One request through the proxy (the connection is kept between calls).
  Answer Get(const std::string& fqdn, const std::string& path,
             const std::vector<std::string>& headers = {}, const std::string* post = nullptr) {
    Answer a;
    curl_slist* resolve =
        curl_slist_append(nullptr, absl::StrCat(fqdn, ":", proxy_->port(), ":127.0.0.1").c_str());
    curl_slist* hs = nullptr;
    for (const std::string& h : headers) hs = curl_slist_append(hs, h.c_str());
    const std::string url = absl::StrCat("https://", fqdn, ":", proxy_->port(), path);
    const std::string ca = (dir_ / fqdn / "tls.crt").string();
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(curl_, CURLOPT_CAINFO,
                     fs::exists(ca) ? ca.c_str() : (dir_ / "portal.test" / "tls.crt").c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Append);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &a.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &Append);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &a.headers);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(curl_, CURLOPT_PATH_AS_IS, 1L);
    if (post != nullptr) {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, post->c_str());
    } else {
      curl_easy_setopt(curl_, CURLOPT_HTTPGET, 1L);
    }
    a.error = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &a.status);
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(curl_, CURLOPT_RESOLVE, nullptr);
    curl_slist_free_all(hs);
    curl_slist_free_all(resolve);
    return a;
  }

  Application app_;
  std::unique_ptr<testing::ScratchRedis> redis_;
  fs::path dir_;
  prometheus::Registry registry_;
  std::unique_ptr<OttStore> store_;
  std::unique_ptr<CertStore> certs_;
  std::unique_ptr<OttState> state_;
  std::unique_ptr<Proxy> proxy_;
  CURL* curl_ = nullptr;
};

TEST_F(ProxyTest, ForwardsWithTheForwardingHeadersAndKeepsTheApplicationConnection) {
  Answer a = Get("portal.test", "/portal/index.html?x=1",
                 {"X-Forwarded-For: 6.6.6.6", "Cookie: a=1; __Host-rwg-ott=secret; b=2",
                  "Connection: keep-alive, X-Hop", "X-Hop: dropped", "X-Kept: yes"});
  ASSERT_EQ(a.error, CURLE_OK) << curl_easy_strerror(a.error);
  EXPECT_EQ(a.status, 200);
  const std::string& seen = a.body;
  EXPECT_TRUE(absl::StartsWith(seen, "GET /portal/index.html?x=1 HTTP/1.1\r\n")) << seen;
  EXPECT_NE(seen.find("X-Forwarded-For: 127.0.0.1\r\n"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("6.6.6.6"), std::string::npos) << seen;
  EXPECT_NE(seen.find("X-Forwarded-Proto: https\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("X-Forwarded-Host: portal.test\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Forwarded: for=127.0.0.1;proto=https;host=portal.test\r\n"),
            std::string::npos)
      << seen;
  EXPECT_NE(seen.find("Host: portal.test\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Cookie: a=1; b=2\r\n"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("secret"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("X-Hop"), std::string::npos) << seen;
  EXPECT_NE(seen.find("X-Kept: yes"), std::string::npos) << seen;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("portal.test", "/portal/").status, 200);
  EXPECT_EQ(app_.accepted(), 1);
}

TEST_F(ProxyTest, AnApplicationNamedByItsHostNameIsReached) {
  // A name is resolved (then kept for a while): "localhost" may give ::1 first, where nothing
  // listens; the connection goes to the next address.
  for (int i = 0; i < 3; ++i) {
    Answer a = Get("named.test", "/portal/x", {"Connection: close"});
    ASSERT_EQ(a.error, CURLE_OK) << curl_easy_strerror(a.error);
    EXPECT_EQ(a.status, 200);
    EXPECT_NE(a.body.find("Host: named.test\r\n"), std::string::npos) << a.body;
  }
}

TEST_F(ProxyTest, PostBodiesReachTheApplication) {
  const std::string body(300000, 'b');
  Answer a = Get("portal.test", "/portal/form", {}, &body);
  ASSERT_EQ(a.error, CURLE_OK);
  EXPECT_EQ(a.status, 200);
  EXPECT_NE(a.body.find("POST /portal/form"), std::string::npos);
  EXPECT_NE(a.body.find(body), std::string::npos);
}

TEST_F(ProxyTest, AClientWaitingFor100ContinueGetsItFromRwg) {
  const std::string body(5000, 'c');
  Answer a = Get("portal.test", "/portal/upload", {"Expect: 100-continue"}, &body);
  ASSERT_EQ(a.error, CURLE_OK);
  EXPECT_EQ(a.status, 200);
  EXPECT_TRUE(absl::StartsWith(a.headers, "HTTP/1.1 100 Continue\r\n")) << a.headers;
  // The application gets the body, without the expectation.
  EXPECT_NE(a.body.find(body), std::string::npos);
  EXPECT_EQ(absl::AsciiStrToLower(a.body).find("expect:"), std::string::npos) << a.body;
}

TEST_F(ProxyTest, ARenewedCertificateIsServedWithoutARestart) {
  // A new connection to portal.test trusting only `ca`.
  auto handshake = [&](const std::string& ca) {
    CURL* c = curl_easy_init();
    std::string body;
    curl_slist* resolve = curl_slist_append(
        nullptr, absl::StrCat("portal.test:", proxy_->port(), ":127.0.0.1").c_str());
    const std::string url = absl::StrCat("https://portal.test:", proxy_->port(), "/portal/");
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    const CURLcode r = curl_easy_perform(c);
    curl_slist_free_all(resolve);
    curl_easy_cleanup(c);
    return r;
  };
  const std::string old_pem = (dir_ / "old.crt").string();
  const std::string new_pem = (dir_ / "new.crt").string();
  fs::copy_file(dir_ / "portal.test" / "tls.crt", old_pem);
  EXPECT_EQ(handshake(old_pem), CURLE_OK);
  // A new pair written as a renewal does (new files renamed over the old ones).
  const fs::path next = dir_ / "next";
  WriteCertificate(next, "portal.test");
  fs::copy_file(next / "portal.test" / "tls.crt", new_pem);
  fs::rename(next / "portal.test" / "tls.key", dir_ / "portal.test" / "tls.key");
  fs::rename(next / "portal.test" / "tls.crt", dir_ / "portal.test" / "tls.crt");
  certs_->Reload();
  EXPECT_EQ(handshake(new_pem), CURLE_OK);
  EXPECT_NE(handshake(old_pem), CURLE_OK);
  // A pair that does not load leaves the one in service.
  std::ofstream(dir_ / "portal.test" / "tls.crt") << "not a certificate";
  certs_->Reload();
  EXPECT_EQ(handshake(new_pem), CURLE_OK);
}

TEST_F(ProxyTest, RefusesWhatIsNotInTheList) {
  EXPECT_EQ(Get("portal.test", "/elsewhere").status, 404);
  EXPECT_EQ(Get("portal.test", "/portal/../admin").status, 400);
  EXPECT_EQ(Get("portal.test", "/portal/x", {"Host: admin.test"}).status, 421);
  // An FQDN without a domain: the handshake itself fails.
  Answer a = Get("unknown.test", "/portal/");
  EXPECT_NE(a.error, CURLE_OK);
  EXPECT_EQ(app_.accepted(), 0);
}

TEST_F(ProxyTest, ADisabledDomainIsRefusedWithinASecond) {
  ASSERT_EQ(Get("portal.test", "/portal/").status, 200);
  auto d = store_->GetDomain("portal.test");
  pb::Domain off = **d;
  off.set_enabled(false);
  ASSERT_TRUE(store_->PutDomain(off).ok());
  absl::SleepFor(absl::Milliseconds(300));
  // The kept-alive connection's next request, then a new connection.
  EXPECT_EQ(Get("portal.test", "/portal/").status, 421);
  curl_easy_cleanup(curl_);
  curl_ = curl_easy_init();
  EXPECT_NE(Get("portal.test", "/portal/").error, CURLE_OK);
}

TEST_F(ProxyTest, AdminPathsNeedRwgsLoginFirst) {
  Answer a = Get("admin.test", "/config?x=1");
  EXPECT_EQ(a.status, 303);
  EXPECT_NE(a.headers.find("Location: /.rwg/login?next=/config%3Fx%3D1"), std::string::npos)
      << a.headers;
  EXPECT_EQ(app_.accepted(), 0);
  Answer page = Get("admin.test", "/.rwg/login?next=/config");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("name=\"password\""), std::string::npos);
  const std::string wrong = "name=alice&password=wrong&next=%2Fconfig";
  EXPECT_EQ(Get("admin.test", "/.rwg/login", {}, &wrong).status, 401);
  const std::string right = "name=alice&password=correct+horse+battery&next=%2Fconfig";
  Answer in = Get("admin.test", "/.rwg/login", {}, &right);
  EXPECT_EQ(in.status, 303);
  EXPECT_NE(in.headers.find("Location: /config\r\n"), std::string::npos) << in.headers;
  const size_t at = in.headers.find("Set-Cookie: __Host-rwg-ott=");
  ASSERT_NE(at, std::string::npos) << in.headers;
  const std::string line = in.headers.substr(at, in.headers.find("\r\n", at) - at);
  for (const char* attr : {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"}) {
    EXPECT_NE(line.find(attr), std::string::npos) << line;
  }
  const std::string value = line.substr(27, line.find(';') - 27);
  Answer admin = Get("admin.test", "/config", {"Cookie: __Host-rwg-ott=" + value});
  EXPECT_EQ(admin.status, 200);
  EXPECT_EQ(admin.body.find(value), std::string::npos);
  // A next that leaves the site goes to "/".
  const std::string away = "name=alice&password=correct+horse+battery&next=%2F%2Fevil.test";
  Answer off = Get("admin.test", "/.rwg/login", {}, &away);
  EXPECT_NE(off.headers.find("Location: /\r\n"), std::string::npos) << off.headers;
  // Logged out: the session is gone.
  const std::string none;
  EXPECT_EQ(Get("admin.test", "/.rwg/logout", {"Cookie: __Host-rwg-ott=" + value}, &none).status,
            303);
  EXPECT_EQ(Get("admin.test", "/config", {"Cookie: __Host-rwg-ott=" + value}).status, 303);
}

TEST_F(ProxyTest, LockOutAfterRepeatedFailures) {
  const std::string wrong = "name=alice&password=wrong";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Get("admin.test", "/.rwg/login", {}, &wrong).status, 401);
  const std::string right = "name=alice&password=correct+horse+battery";
  EXPECT_EQ(Get("admin.test", "/.rwg/login", {}, &right).status, 401);
  ASSERT_TRUE(store_->UpdateAccount("alice", std::nullopt, std::nullopt, true).ok());
  EXPECT_EQ(Get("admin.test", "/.rwg/login", {}, &right).status, 303);
}

TEST_F(ProxyTest, ApplicationDownIs502AndSlowIs504) {
  const absl::Time t0 = absl::Now();
  Answer down = Get("down.test", "/portal/");
  EXPECT_EQ(down.status, 502);
  EXPECT_NE(down.body.find("did not answer"), std::string::npos);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
  Answer slow = Get("portal.test", "/portal/slow");
  EXPECT_EQ(slow.status, 504);
  // The proxy still serves.
  EXPECT_EQ(Get("portal.test", "/portal/").status, 200);
}

}  // namespace
}  // namespace rwg::ott
