// RedisTlsTunnel with RedisClient and MasterLocator against real redis-server processes that
// speak only TLS (`--port 0 --tls-port`), and a real sentinel over TLS. The certificates are
// made by the openssl command for each test.
#include "services/core/redis_tls.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/redis.h"
#include "services/core/redis_sentinel.h"
#include "tests/testing/wait.h"

extern char** environ;

namespace rwg::core {
namespace {

int OpenFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n;
}

class RedisTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);  // as the services do (core/server.cc): OpenSSL's writes may raise it
    char dir[] = "/tmp/rwg-redis-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    // A CA, Redis's certificate for localhost and 127.0.0.1, a client certificate, and a
    // second CA that signed nothing here.
    const std::string script = absl::StrCat(
        "set -e; cd ", dir_,
        "; for ca in ca other; do openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        "-nodes -days 2 -subj /CN=$ca -keyout $ca.key -out $ca.crt; done;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost "
        "-keyout server.key -out server.csr;"
        " printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext;"
        " openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile server.ext -out server.crt;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=rwg "
        "-keyout client.key -out client.csr;"
        " openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-out client.crt) >/dev/null 2>&1");
    ASSERT_EQ(std::system(absl::StrCat("(", script).c_str()), 0) << "openssl failed in " << dir_;
  }
  void TearDown() override {
    for (pid_t pid : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  std::string File(const std::string& name) const { return absl::StrCat(dir_, "/", name); }

  // A redis-server listening only with TLS on a free port, which it returns.
  int StartRedis(const std::vector<std::string>& extra = {}) {
    const int port = testing::FreeTcpPort();
    std::vector<std::string> args = {"redis-server",
                                     "--port",
                                     "0",
                                     "--tls-port",
                                     std::to_string(port),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     dir_,
                                     "--tls-cert-file",
                                     File("server.crt"),
                                     "--tls-key-file",
                                     File("server.key"),
                                     "--tls-ca-cert-file",
                                     File("ca.crt"),
                                     "--tls-auth-clients",
                                     "no"};
    args.insert(args.end(), extra.begin(), extra.end());
    Spawn(args);
    return port;
  }

  void Spawn(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    ASSERT_EQ(posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0)
        << "redis-server not installed";
    pids_.push_back(pid);
  }

  RedisTlsOptions Tls() const {
    RedisTlsOptions o;
    o.ca_file = File("ca.crt");
    o.handshake_timeout = absl::Seconds(2);
    return o;
  }

  static RedisOptions Through(std::shared_ptr<RedisTlsTunnel> tls, int port) {
    RedisOptions o;
    o.address = absl::StrCat("127.0.0.1:", port);
    o.tls = std::move(tls);
    o.connect_timeout = absl::Seconds(2);
    o.command_timeout = absl::Seconds(5);
    return o;
  }

  std::string dir_;
  std::vector<pid_t> pids_;
};

TEST_F(RedisTlsTest, CommandsPipelinesAndLargeValuesCrossTheTunnel) {
  const int port = StartRedis();
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(Tls());
  ASSERT_TRUE(tls.ok()) << tls.status();
  RedisClient client(Through(*tls, port));
  ASSERT_TRUE(testing::Eventually([&] { return client.Ping().ok(); }))
      << (*tls)->LastError(absl::StrCat("127.0.0.1:", port));

  ASSERT_TRUE(client.Command({"SET", "k", "v"}).ok());
  absl::StatusOr<RedisReply> r = client.Command({"GET", "k"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->str, "v");

  // Larger than the tunnel's buffer in each direction, so that it must stop reading a side and
  // carry on when there is room.
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  ASSERT_TRUE(client.Command({"SET", "big", big}).ok());
  r = client.Command({"GET", "big"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->str == big);

  // A long pipeline: hiredis writes it whole before reading, while the replies already come.
  std::vector<std::vector<std::string>> commands;
  for (int i = 0; i < 20000; ++i) commands.push_back({"INCR", "n"});
  absl::StatusOr<std::vector<RedisReply>> replies = client.Pipeline(commands);
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 20000U);
  EXPECT_EQ(replies->back().integer, 20000);
  EXPECT_EQ((*tls)->LastError(absl::StrCat("127.0.0.1:", port)), "");
}

TEST_F(RedisTlsTest, ThePasswordIsSentOverTls) {
  const int port = StartRedis({"--requirepass", "s3cret"});
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(Tls());
  ASSERT_TRUE(tls.ok()) << tls.status();
  RedisOptions o = Through(*tls, port);
  RedisClient without(o);
  ASSERT_TRUE(testing::Eventually([&] {
    absl::StatusOr<RedisReply> r = without.Command({"PING"});
    return !r.ok() && absl::StrContains(r.status().message(), "NOAUTH");
  }));
  o.password = "s3cret";
  RedisClient with(o);
  EXPECT_TRUE(with.Command({"SET", "k", "v"}).ok());
}

TEST_F(RedisTlsTest, AnUntrustedCertificateIsRefusedWithItsReason) {
  const int port = StartRedis();
  RedisTlsOptions o = Tls();
  o.ca_file = File("other.crt");
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(o);
  ASSERT_TRUE(tls.ok()) << tls.status();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  std::string message;
  ASSERT_TRUE(testing::Eventually([&] {
    absl::StatusOr<redisContext*> c =
        ConnectRedis(address, "", absl::Seconds(2), absl::Seconds(3), tls->get());
    if (c.ok()) {
      redisFree(*c);
      return false;
    }
    message = std::string(c.status().message());
    return absl::StrContains(message, "certificate");  // not "connection refused": Redis is up
  })) << message;
  EXPECT_TRUE(absl::StrContains(message, address)) << message;
  // OpenSSL's reason: Redis sends its CA too, which this client does not trust.
  EXPECT_TRUE(absl::StrContains(message, "is refused for 127.0.0.1: self-signed certificate"))
      << message;
  EXPECT_EQ(
      ConnectRedis(address, "", absl::Seconds(2), absl::Seconds(3), tls->get()).status().code(),
      absl::StatusCode::kUnavailable);
}

TEST_F(RedisTlsTest, TheNameIsChecked) {
  const int port = StartRedis();
  RedisTlsOptions o = Tls();
  o.server_name = "redis.example";  // the certificate is for localhost and 127.0.0.1
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(o);
  ASSERT_TRUE(tls.ok()) << tls.status();
  RedisClient wrong(Through(*tls, port));
  absl::StatusOr<RedisReply> r;
  ASSERT_TRUE(testing::Eventually([&] {
    r = wrong.Command({"PING"});
    return !r.ok() && absl::StrContains(r.status().message(), "redis.example");
  })) << r.status();

  o.server_name = "localhost";
  tls = RedisTlsTunnel::Start(o);
  ASSERT_TRUE(tls.ok()) << tls.status();
  RedisClient right(Through(*tls, port));
  EXPECT_TRUE(right.Command({"PING"}).ok());
}

TEST_F(RedisTlsTest, AClientCertificateWhenRedisRequiresOne) {
  const int port = StartRedis({"--tls-auth-clients", "yes"});
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> anonymous = RedisTlsTunnel::Start(Tls());
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  RedisClient refused(Through(*anonymous, port));
  // Redis is up (the tunnel connects) but refuses a client without a certificate, and the
  // reason is what the tunnel reports.
  absl::StatusOr<RedisReply> r;
  ASSERT_TRUE(testing::Eventually([&] {
    r = refused.Command({"PING"});
    return !r.ok() && absl::StrContains(r.status().message(), "TLS");
  })) << r.status();

  RedisTlsOptions o = Tls();
  o.cert_file = File("client.crt");
  o.key_file = File("client.key");
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(o);
  ASSERT_TRUE(tls.ok()) << tls.status();
  RedisClient client(Through(*tls, port));
  ASSERT_TRUE(testing::Eventually([&] { return client.Ping().ok(); }));
  EXPECT_TRUE(client.Command({"SET", "k", "v"}).ok());
}

TEST_F(RedisTlsTest, APlaintextRedisIsAnErrorNotAHang) {
  const int port = testing::FreeTcpPort();
  Spawn({"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", dir_});
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(Tls());
  ASSERT_TRUE(tls.ok()) << tls.status();
  RedisClient client(Through(*tls, port));
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::Eventually([&] {
    return !client.Command({"PING"}).ok() &&
           !(*tls)->LastError(absl::StrCat("127.0.0.1:", port)).empty();
  }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(RedisTlsTest, BadFilesAreRefusedAtStartNamingTheOption) {
  RedisTlsOptions o = Tls();
  o.ca_file = File("missing.crt");
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> t = RedisTlsTunnel::Start(o);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(t.status().message(), "redis-ca-file: ")) << t.status();

  o = Tls();
  o.cert_file = File("client.crt");
  t = RedisTlsTunnel::Start(o);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StartsWith(t.status().message(), "redis-key-file: ")) << t.status();

  o.key_file = File("server.key");  // not the client certificate's key
  t = RedisTlsTunnel::Start(o);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), "redis-cert-file")) << t.status();
}

TEST_F(RedisTlsTest, MalformedAndTooManyAddresses) {
  RedisTlsOptions o = Tls();
  o.max_addresses = 2;
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(o);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ((*tls)->LocalAddress("no-port").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*tls)->LocalAddress("h:99999").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::string> a = (*tls)->LocalAddress("127.0.0.1:7000");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(absl::StartsWith(*a, "unix:/"));
  EXPECT_EQ(*(*tls)->LocalAddress("127.0.0.1:7000"), *a);  // the same socket again
  absl::StatusOr<std::string> v6 = (*tls)->LocalAddress("[::1]:7000");
  ASSERT_TRUE(v6.ok()) << v6.status();
  // Full, no connection anywhere: the address used least recently (7000) is retired, its
  // socket removed, and the new one never gets its name.
  absl::StatusOr<std::string> c = (*tls)->LocalAddress("127.0.0.1:7001");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*tls)->addresses(), 2U);
  EXPECT_NE(*c, *a);
  EXPECT_NE(*c, *v6);
  struct stat gone {};
  EXPECT_NE(stat(a->substr(5).c_str(), &gone), 0) << "the retired socket is still there";
  EXPECT_EQ(*(*tls)->LocalAddress("[::1]:7000"), *v6);  // the one kept keeps its socket
  // Only this user can reach the sockets.
  struct stat st {};
  const std::string socket_path = a->substr(5);
  const std::string socket_dir = socket_path.substr(0, socket_path.rfind('/'));
  ASSERT_EQ(stat(socket_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700U);
}

// Sentinel on Kubernetes: every restarted Redis pod is a new master address. Past the limit,
// the tunnel lets go of addresses nothing uses any more, never of one carrying a connection.
TEST_F(RedisTlsTest, MastersInTurnPastTheAddressLimit) {
  RedisTlsOptions o = Tls();
  o.max_addresses = 2;
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(o);
  ASSERT_TRUE(tls.ok()) << tls.status();
  const int ports[3] = {StartRedis(), StartRedis(), StartRedis()};
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 3; ++i) {  // the master moves: 1, 2, 3, 1, 2, 3
      RedisClient client(Through(*tls, ports[i]));
      ASSERT_TRUE(testing::Eventually([&] { return client.Ping().ok(); }))
          << "master " << i << " in round " << round << ": "
          << (*tls)->LastError(absl::StrCat("127.0.0.1:", ports[i]));
      absl::StatusOr<RedisReply> r = client.Command({"INCR", "writes"});
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->integer, round + 1) << "each master is reached, not another through its socket";
    }
  }
  // Two connections held open: a third address is refused, neither held one is retired. (Each
  // waits for the tunnel to finish carrying the client just closed, whose address it retires.)
  auto hold = [&](int port) {
    redisContext* held = nullptr;
    EXPECT_TRUE(testing::Eventually([&] {
      absl::StatusOr<redisContext*> c = ConnectRedis(
          absl::StrCat("127.0.0.1:", port), "", absl::Seconds(2), absl::Seconds(3), tls->get());
      if (c.ok()) held = *c;
      return c.ok();
    })) << (*tls)->LastError(absl::StrCat("127.0.0.1:", port));
    return held;
  };
  redisContext* held0 = hold(ports[0]);
  redisContext* held1 = hold(ports[1]);
  ASSERT_NE(held0, nullptr);
  ASSERT_NE(held1, nullptr);
  absl::StatusOr<std::string> third = (*tls)->LocalAddress(absl::StrCat("127.0.0.1:", ports[2]));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  auto* reply = static_cast<redisReply*>(redisCommand(held0, "PING"));
  ASSERT_NE(reply, nullptr) << "a held connection was cut";
  freeReplyObject(reply);
  redisFree(held0);
  redisFree(held1);
  // Once one is closed, its address can go.
  EXPECT_TRUE(testing::Eventually(
      [&] { return (*tls)->LocalAddress(absl::StrCat("127.0.0.1:", ports[2])).ok(); }));
}

TEST_F(RedisTlsTest, NothingIsLeftBehind) {
  const int port = StartRedis();
  const int fds_before = OpenFds();
  std::string socket_dir;
  {
    absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(Tls());
    ASSERT_TRUE(tls.ok()) << tls.status();
    absl::StatusOr<std::string> local = (*tls)->LocalAddress(absl::StrCat("127.0.0.1:", port));
    ASSERT_TRUE(local.ok());
    socket_dir = local->substr(5, local->rfind('/') - 5);
    RedisClient client(Through(*tls, port));
    ASSERT_TRUE(testing::Eventually([&] { return client.Ping().ok(); }));
    for (int i = 0; i < 50; ++i) {  // connections made and closed
      absl::StatusOr<redisContext*> c = ConnectRedis(
          absl::StrCat("127.0.0.1:", port), "", absl::Seconds(2), absl::Seconds(3), tls->get());
      ASSERT_TRUE(c.ok()) << c.status();
      redisFree(*c);
    }
  }
  struct stat st {};
  EXPECT_NE(stat(socket_dir.c_str(), &st), 0) << socket_dir << " is still there";
  EXPECT_EQ(OpenFds(), fds_before);
}

TEST_F(RedisTlsTest, SentinelAndMasterOverTls) {
  const int master = StartRedis();
  const int sentinel = testing::FreeTcpPort();
  const std::string conf = File("sentinel.conf");
  std::ofstream(conf) << "port 0\ntls-port " << sentinel << "\nbind 127.0.0.1\ndir " << dir_
                      << "\ntls-cert-file " << File("server.crt") << "\ntls-key-file "
                      << File("server.key") << "\ntls-ca-cert-file " << File("ca.crt")
                      << "\ntls-auth-clients no\ntls-replication yes\nlogfile " << dir_
                      << "/sentinel.log\nsentinel monitor rwg 127.0.0.1 " << master << " 1\n";
  Spawn({"redis-server", conf, "--sentinel"});
  absl::StatusOr<std::shared_ptr<RedisTlsTunnel>> tls = RedisTlsTunnel::Start(Tls());
  ASSERT_TRUE(tls.ok()) << tls.status();
  SentinelOptions so;
  so.sentinels = {absl::StrCat("127.0.0.1:", sentinel)};
  so.master_name = "rwg";
  so.tls = *tls;
  std::shared_ptr<MasterLocator> locator = MasterLocator::Start(so, nullptr);
  EXPECT_EQ(locator->WaitForMaster(absl::Seconds(10)).address, absl::StrCat("127.0.0.1:", master));
  RedisOptions ro;
  ro.locator = locator;
  ro.tls = *tls;
  RedisClient client(ro);
  ASSERT_TRUE(client.Command({"SET", "k", "v"}).ok());
  absl::StatusOr<RedisReply> r = client.Command({"GET", "k"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->str, "v");
}

}  // namespace
}  // namespace rwg::core
