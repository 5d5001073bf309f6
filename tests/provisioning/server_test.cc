// The HTTPS server through real TLS connections on loopback, without Redis: no hash key is
// known, so every request is a miss (404).
#include "services/provisioning/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "services/core/crypto.h"
#include "services/core/random.h"
#include "services/core/redis.h"
#include "services/provisioning/state.h"
#include "tests/testing/self_signed.h"

namespace rwg::provisioning {
namespace {

// The wall clock, which throws once when told to.
class FailingClock final : public core::Clock {
 public:
  absl::Time Now() const override {
    if (fail_next_.exchange(false)) throw std::runtime_error("the clock failed");
    return absl::Now();
  }
  void FailNext() { fail_next_ = true; }

 private:
  mutable std::atomic<bool> fail_next_{false};
};

// A self-signed P-256 certificate and its key, as PEM files in `dir`.
void WriteCertificate(const std::filesystem::path& dir) {
  ASSERT_TRUE(rwg::testing::WriteSelfSigned(
      rwg::testing::MakeSelfSigned(), (dir / "cert.pem").string(), (dir / "key.pem").string()));
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("rwg-prov-server-" + core::RandomHex(core::Random::System(), 6));
    std::filesystem::create_directories(dir_ / "store");
    std::ofstream(dir_ / "store" / "aastra.cfg") << "sip proxy port: 5061\n";
    WriteCertificate(dir_);
    core::RedisOptions ro;
    ro.address = "127.0.0.1:1";  // never reached: the state is not started
    redis_ = std::make_unique<core::RedisClient>(ro);
    box_ = *core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
    state_ = std::make_unique<SharedState>(*redis_, *box_, clock_, "test");
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.threads = 1;
    o.cert_file = dir_ / "cert.pem";
    o.key_file = dir_ / "key.pem";
    o.store_dir = dir_ / "store";
    o.access_log = false;
    server_ = std::make_unique<ProvisioningServer>(o, *state_, clock_, registry_);
    ASSERT_TRUE(server_->Start().ok());
    client_ = SSL_CTX_new(TLS_client_method());
  }

  void TearDown() override {
    server_->Stop();
    SSL_CTX_free(client_);
    std::filesystem::remove_all(dir_);
  }

  // The status line and headers of the answer to one GET over a new TLS connection, and
  // whether the server closed the connection after it; "" when the connection failed.
  std::string Get(const std::string& target, bool* closed = nullptr) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(server_->port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string got;
    SSL* ssl = SSL_new(client_);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && SSL_set_fd(ssl, fd) &&
        SSL_connect(ssl) == 1) {
      const std::string req = "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
      SSL_write(ssl, req.data(), static_cast<int>(req.size()));
      char buf[4096];
      while (got.find("\r\n\r\n") == std::string::npos) {
        const int n = SSL_read(ssl, buf, sizeof(buf));
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      got = got.substr(0, got.find("\r\n\r\n"));
      if (closed != nullptr) {
        // Read the rest of the answer, then see whether the connection ends.
        int n = 0;
        while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
        }
        *closed = SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN ||
                  SSL_get_error(ssl, n) == SSL_ERROR_SYSCALL;
      }
    }
    SSL_free(ssl);
    ::close(fd);
    return got;
  }

  double Counter(const std::string& name) {
    for (const prometheus::MetricFamily& f : registry_.Collect()) {
      if (f.name == name && !f.metric.empty()) return f.metric[0].counter.value;
    }
    return -1;
  }

  std::filesystem::path dir_;
  FailingClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<core::RedisClient> redis_;
  std::unique_ptr<core::SecretBox> box_;
  std::unique_ptr<SharedState> state_;
  std::unique_ptr<ProvisioningServer> server_;
  SSL_CTX* client_ = nullptr;
};

TEST_F(ServerTest, AnswersWithoutAHashKeyAre404) {
  EXPECT_EQ(Get("/nohash/ftp_67xxi/aastra.cfg").substr(0, 12), "HTTP/1.1 404");
}

TEST_F(ServerTest, SomethingThrownWhileHandlingIsA500AndTheServiceGoesOn) {
  clock_.FailNext();  // the next request's handling throws
  bool closed = false;
  const std::string answer = Get("/nohash/ftp_67xxi/aastra.cfg", &closed);
  EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 500") << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  EXPECT_TRUE(closed);
  EXPECT_EQ(Counter("rwg_provisioning_internal_errors_total"), 1);
  // Still serving.
  EXPECT_EQ(Get("/nohash/ftp_67xxi/aastra.cfg").substr(0, 12), "HTTP/1.1 404");
  EXPECT_EQ(Get("/nohash/ftp_67xxi/aastra.cfg").substr(0, 12), "HTTP/1.1 404");
}

}  // namespace
}  // namespace rwg::provisioning
