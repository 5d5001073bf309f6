// The SIP edge as the internet and the iPBX reach it: one sip-edge (rwg::sip_edge::Edge, the
// same object main() runs) with a real redis-server, listening on loopback; every input is sent
// to its sockets and goes through sofia-sip's transports and parser, rwg's dispatch, the
// protection counters, the REGISTER, call and emergency handlers, and the requests from the
// iPBX toward phones.
//
// Input: the first byte chooses the way in (its value modulo 3):
//   0  UDP datagrams to the phones' listener,
//   1  one TCP connection to the phones' listener,
//   2  one TCP connection to the listener for the iPBX, from the iPBX's address.
// The rest is one or more SIP messages separated by lines "====". In a message, the header
// values "Authorization: AUTO" and "Proxy-Authorization: AUTO" are replaced with a correct
// digest answer for device 21001 (method and URI from the request line), so the fuzzer gets
// past authentication into the handlers behind it.
//
// After each input a sentinel OPTIONS must be answered: the edge has read the input and still
// serves. An edge that stops answering for 10 s is a finding (a wedged SIP thread), as a crash
// is. A stand-in iPBX on loopback accepts every request rwg sends it with 200, so phones that
// authenticate become registered and later inputs reach what registered phones can do.
//
// The edge, its Redis and the iPBX stay up across inputs: state (registrations, transactions,
// bans, counters) carries from one input to the next, as on a real edge.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <prometheus/registry.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/devices.h"
#include "services/core/emergency.h"
#include "services/core/log.h"
#include "services/core/random.h"
#include "services/core/redis.h"
#include "services/sip_edge/digest.h"
#include "services/sip_edge/edge.h"
#include "services/sip_edge/gateway_config.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" __attribute__((weak)) void __lsan_do_leak_check();

namespace {

constexpr char kHarness[] = "sip_dispatch_fuzz";
constexpr char kUser[] = "21001";
constexpr char kPassword[] = "set-secret-21001";

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", kHarness, what.c_str());
  std::abort();
}

// A loopback port free now (bound and released: good enough for a test machine).
int FreePort(int type) {
  int fd = socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("bind");
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A port free for both TCP and UDP (the phones' listener has both).
int FreeDualPort() {
  for (int i = 0; i < 100; ++i) {
    const int p = FreePort(SOCK_STREAM);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(p));
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (ok) return p;
  }
  Die("no free port");
}

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

int ConnectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback(port);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the edge closed the connection: allowed
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Whether the edge has read everything sent on the connection `fd` to its port `edge_port`:
// nothing of it is unacknowledged here nor unread in the edge's socket (its receive queue in
// /proc/net/tcp; edge and harness are one process on loopback).
bool EdgeReadAll(int fd, int edge_port) {
  int unsent = 0;
  if (ioctl(fd, SIOCOUTQ, &unsent) != 0 || unsent != 0) return false;
  sockaddr_in me{};
  socklen_t len = sizeof(me);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) != 0) return false;
  const std::string local = absl::StrFormat(":%04X ", edge_port);
  const std::string remote = absl::StrFormat(":%04X ", ntohs(me.sin_port));
  std::ifstream table("/proc/net/tcp");
  std::string line;
  while (std::getline(table, line)) {
    // sl local_address rem_address st tx_queue:rx_queue ...
    const std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 5 || !absl::StrContains(absl::StrCat(f[1], " "), local) ||
        !absl::StrContains(absl::StrCat(f[2], " "), remote)) {
      continue;
    }
    const size_t colon = f[4].find(':');
    return colon != absl::string_view::npos &&
           f[4].substr(colon + 1).find_first_not_of('0') == absl::string_view::npos;
  }
  return true;  // the edge closed its socket: nothing more will be read
}

// Reads from `fd` until `needle` was seen, `done()` is true or `timeout` passed; returns
// whether the needle was seen.
bool ReadUntil(
    int fd, absl::string_view needle, absl::Duration timeout, std::string* seen,
    const std::function<bool()>& done = [] { return false; }) {
  const absl::Time end = absl::Now() + timeout;
  char buf[65536];
  while (true) {
    if (absl::StrContains(*seen, needle)) return true;
    const absl::Duration left = end - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, std::min<int>(static_cast<int>(absl::ToInt64Milliseconds(left)) + 1, 2)) <= 0) {
      if (done()) return false;
      continue;
    }
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return absl::StrContains(*seen, needle);
    seen->append(buf, static_cast<size_t>(n));
    if (seen->size() > (1u << 22)) seen->erase(0, seen->size() - (1u << 20));
  }
}

// The iPBX: answers every request rwg sends it with 200 OK (a REGISTER's Contact kept, with
// an expiry), ignores responses. TCP, one thread per connection.
class StandInIpbx {
 public:
  explicit StandInIpbx(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a = Loopback(port);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd_, 64) != 0) {
      Die("stand-in iPBX cannot listen");
    }
    std::thread([this] { Accept(); }).detach();
  }

 private:
  void Accept() {
    while (true) {
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::thread([c] { Serve(c); }).detach();
    }
  }

  static std::string Header(absl::string_view head, absl::string_view name) {
    for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), name)) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
    return "";
  }

  static void Serve(int c) {
    std::string in;
    char buf[16384];
    while (true) {
      const ssize_t n = recv(c, buf, sizeof(buf), 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      while (true) {
        const size_t end = in.find("\r\n\r\n");
        if (end == std::string::npos) break;
        const std::string head = in.substr(0, end);
        size_t body = 0;
        if (!absl::SimpleAtoi(Header(head, "Content-Length"), &body)) body = 0;
        if (in.size() < end + 4 + body) break;
        in.erase(0, end + 4 + body);
        if (absl::StartsWith(head, "SIP/2.0")) continue;  // a response
        std::string out = "SIP/2.0 200 OK\r\n";
        for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
          if (absl::StartsWithIgnoreCase(line, "Via:") || absl::StartsWithIgnoreCase(line, "v:")) {
            absl::StrAppend(&out, line, "\r\n");
          }
        }
        std::string to = Header(head, "To");
        if (!absl::StrContains(to, ";tag=")) absl::StrAppend(&to, ";tag=ipbx");
        absl::StrAppend(&out, "From: ", Header(head, "From"), "\r\nTo: ", to,
                        "\r\nCall-ID: ", Header(head, "Call-ID"),
                        "\r\nCSeq: ", Header(head, "CSeq"), "\r\n");
        if (absl::StartsWith(head, "REGISTER ") && !Header(head, "Contact").empty()) {
          absl::StrAppend(&out, "Contact: ", Header(head, "Contact"), ";expires=600\r\n");
        }
        absl::StrAppend(&out, "Content-Length: 0\r\n\r\n");
        SendAll(c, out);
      }
      if (in.size() > (1u << 20)) break;
    }
    close(c);
  }

  int fd_ = -1;
};

// Reproducible but never the same bytes twice: call identifiers, tags and nonces stay unique
// as on a real edge (the same bytes every time would make every call collide with the last).
class CountingRandom final : public rwg::core::Random {
 public:
  std::string Bytes(size_t n) override {
    std::string out(n, '\0');
    for (size_t i = 0; i < n; ++i) {
      state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
      out[i] = static_cast<char>(state_ >> 56);
    }
    return out;
  }

 private:
  uint64_t state_ = 0x5a5a5a5a5a5a5a5aULL;
};

struct Fixture {
  std::string dir;
  pid_t redis_pid = -1;
  int set_port = 0;
  int icp_port = 0;
  int ipbx_port = 0;
  int udp = -1;  // the harness' phone socket
  std::unique_ptr<rwg::core::RedisClient> redis;
  std::unique_ptr<rwg::core::SecretBox> box;
  std::unique_ptr<rwg::core::DeviceDirectory> devices;
  std::unique_ptr<rwg::sip_edge::GatewayConfigWatcher> config;
  std::unique_ptr<prometheus::Registry> registry;
  std::unique_ptr<rwg::sip_edge::Edge> edge;
  std::unique_ptr<StandInIpbx> ipbx;
  CountingRandom rng;
  std::string challenge;  // the edge's WWW-Authenticate for kUser
  absl::Time challenge_at;
  int nc = 0;
  uint64_t sentinel = 0;
};

Fixture* fixture = nullptr;

// At exit: the edge stops (its threads joined, what was still in flight freed) before the
// logger and Redis go away, then the leak check runs: anything of the edge's still allocated
// and unreachable then is a leak, shutdown included.
void StopRedis() {
  if (fixture != nullptr && fixture->edge != nullptr) fixture->edge->Stop();
  if (fixture != nullptr && fixture->config != nullptr) fixture->config->Stop();
  if (__lsan_do_leak_check != nullptr) __lsan_do_leak_check();  // and none later at exit
  if (fixture != nullptr && fixture->redis_pid > 0) {
    kill(fixture->redis_pid, SIGKILL);
    waitpid(fixture->redis_pid, nullptr, 0);
    std::error_code ec;
    std::filesystem::remove_all(fixture->dir, ec);
  }
}

void StartRedis(Fixture& f) {
  char tmpl[] = "/tmp/rwg-sip-dispatch-fuzz-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Die("mkdtemp");
  f.dir = tmpl;
  const std::string sock = f.dir + "/redis.sock";
  const pid_t parent = getpid();
  f.redis_pid = fork();
  if (f.redis_pid < 0) Die("fork");
  if (f.redis_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock.c_str(), "--save",
           "", "--appendonly", "no", "--dir", f.dir.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "%s: cannot run redis-server (is it installed?)\n", kHarness);
    _exit(127);
  }
  rwg::core::RedisOptions ro;
  ro.address = "unix:" + sock;
  f.redis = std::make_unique<rwg::core::RedisClient>(ro);
  for (int i = 0; i < 100; ++i) {
    if (f.redis->Ping().ok()) return;
    int status = 0;
    if (waitpid(f.redis_pid, &status, WNOHANG) == f.redis_pid) Die("redis-server exited");
    absl::SleepFor(absl::Milliseconds(50));
  }
  Die("redis-server did not start");
}

void Must(const absl::StatusOr<rwg::core::RedisReply>& r, const char* what) {
  if (!r.ok()) Die(absl::StrCat(what, ": ", r.status().message()));
}

void Populate(Fixture& f) {
  const std::string config =
      absl::StrCat(R"({"public_name":"rwg.fuzz.test","icp":{"host":"127.0.0.1","sip_port":)",
                   f.ipbx_port, R"(,"sip_transports":["TCP"]},"licences":{"teleworker":1000},)",
                   R"("sip":{"udp":"PUBLIC","tcp":"PUBLIC","tls":"DISABLED"}})");
  Must(f.redis->Command({"SET", "rwg:config", config}), "config");
  for (int i = 1; i <= 4; ++i) {
    const std::string user = absl::StrCat("2100", i);
    const std::string icp = absl::StrCat("3100", i);
    const std::string pw = i == 1 ? kPassword : absl::StrCat("set-secret-", user);
    const std::string record = absl::StrCat(
        R"({"icp_username":")", icp, R"(","set_password":")",
        f.box->Seal(pw, rwg::core::DeviceSecretContext(user, "set_password")),
        R"(","icp_password":")",
        f.box->Seal("icp-secret", rwg::core::DeviceSecretContext(user, "icp_password")),
        R"(","location":"hq/floor1"})");
    Must(f.redis->Command({"HSET", rwg::core::kDevicesKey, user, record}), "device");
    Must(f.redis->Command({"HSET", rwg::core::kDevicesByIcpKey, icp, user}), "device by icp");
  }
  Must(f.redis->Command({"INCR", rwg::core::kDevicesRevisionKey}), "revision");
  rwg::core::EmergencyStore emergency(*f.redis);
  rwg::core::EmergencyRoute route;
  route.location = "*";
  route.number = "112";
  route.dial = "0112";
  if (!emergency.Put(route).ok()) Die("emergency route");
}

std::string SentinelId(uint64_t n) { return absl::StrCat("fuzz-sentinel-", n); }

std::string Options(const std::string& call_id, const std::string& transport, int port) {
  return absl::StrCat("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/", transport,
                      " 127.0.0.1:", port, ";branch=z9hG4bK-", call_id,
                      "\r\nMax-Forwards: 70\r\nFrom: <sip:fuzz@127.0.0.1>;tag=f\r\n"
                      "To: <sip:127.0.0.1>\r\nCall-ID: ",
                      call_id, "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
}

int UdpLocalPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

void SendUdp(Fixture& f, absl::string_view msg) {
  sockaddr_in a = Loopback(f.set_port);
  sendto(f.udp, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
}

// Waits for a datagram containing `needle` on the phone socket (others are dropped).
bool AwaitUdp(Fixture& f, absl::string_view needle, absl::Duration timeout, std::string* got) {
  const absl::Time end = absl::Now() + timeout;
  char buf[65536];
  while (absl::Now() < end) {
    pollfd p{f.udp, POLLIN, 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(end - absl::Now())) + 1;
    if (poll(&p, 1, ms) <= 0) continue;
    const ssize_t n = recv(f.udp, buf, sizeof(buf), 0);
    if (n <= 0) continue;
    absl::string_view d(buf, static_cast<size_t>(n));
    if (absl::StrContains(d, needle)) {
      if (got != nullptr) *got = std::string(d);
      return true;
    }
  }
  return false;
}

// The edge answers an OPTIONS on the phones' UDP listener: it has read everything sent before
// on that socket and still serves.
void Barrier(Fixture& f) {
  const std::string id = SentinelId(++f.sentinel);
  SendUdp(f, Options(id, "UDP", UdpLocalPort(f.udp)));
  if (!AwaitUdp(f, id, absl::Seconds(10), nullptr)) Die("the edge stopped answering OPTIONS");
}

// A fresh challenge for kUser (nonces live 5 minutes; taken again every 30 s).
void RefreshChallenge(Fixture& f) {
  const std::string id = SentinelId(++f.sentinel);
  const int port = UdpLocalPort(f.udp);
  SendUdp(f, absl::StrCat("REGISTER sip:rwg.fuzz.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:", port,
                          ";branch=z9hG4bK-", id, "\r\nMax-Forwards: 70\r\n", "From: <sip:", kUser,
                          "@rwg.fuzz.test>;tag=c\r\nTo: <sip:", kUser,
                          "@rwg.fuzz.test>\r\nCall-ID: ", id,
                          "\r\nCSeq: 1 REGISTER\r\nContact: <sip:", kUser, "@127.0.0.1:", port,
                          ">\r\nContent-Length: 0\r\n\r\n"));
  std::string got;
  if (!AwaitUdp(f, id, absl::Seconds(10), &got)) Die("no challenge from the edge");
  for (absl::string_view line : absl::StrSplit(got, "\r\n")) {
    if (absl::StartsWithIgnoreCase(line, "WWW-Authenticate:")) {
      f.challenge = std::string(absl::StripAsciiWhitespace(line.substr(17)));
      f.nc = 0;
      f.challenge_at = absl::Now();
      return;
    }
  }
  Die("the edge's answer to REGISTER has no challenge");
}

Fixture& Setup() {
  if (fixture != nullptr) return *fixture;
  signal(SIGPIPE, SIG_IGN);
  // The edge's logs at every input would drown the fuzzer's; RWG_FUZZ_LOG=info shows them.
  const char* level = std::getenv("RWG_FUZZ_LOG");
  rwg::core::log::Init("sip-edge", level != nullptr ? level : "error");
  if (level == nullptr) {  // sofia-sip's own messages too
    for (const char* module : {"SOFIA_DEBUG", "NTA_DEBUG", "TPORT_DEBUG", "SU_DEBUG"}) {
      setenv(module, "0", 1);
    }
  }
  auto* f = new Fixture();
  fixture = f;
  StartRedis(*f);
  absl::StatusOr<std::unique_ptr<rwg::core::SecretBox>> box =
      rwg::core::SecretBox::Create(std::string(32, 'k'), f->rng);
  if (!box.ok()) Die("secret box");
  f->box = *std::move(box);
  f->set_port = FreeDualPort();
  f->icp_port = FreePort(SOCK_STREAM);
  f->ipbx_port = FreePort(SOCK_STREAM);
  Populate(*f);
  f->ipbx = std::make_unique<StandInIpbx>(f->ipbx_port);

  f->config = std::make_unique<rwg::sip_edge::GatewayConfigWatcher>(*f->redis);
  if (!f->config->Start(std::chrono::milliseconds(1000)).ok()) Die("gateway configuration");
  f->devices = std::make_unique<rwg::core::DeviceDirectory>(*f->redis, *f->box, true);
  f->registry = std::make_unique<prometheus::Registry>();
  rwg::sip_edge::EdgeOptions o;
  o.tls_listen = "";
  o.tcp_listen = absl::StrCat("127.0.0.1:", f->set_port);
  o.udp_listen = absl::StrCat("127.0.0.1:", f->set_port);
  o.icp_listen = absl::StrCat("127.0.0.1:", f->icp_port);
  o.icp_advertise = o.icp_listen;
  o.instance = "sip-edge-fuzz";
  o.nonce_secret = std::string(32, 'n');
  o.forward_key = std::string(32, 'f');
  // The harness is one source sending at full speed: flood and guessing bans would end the
  // run's reach after a few inputs. They are counted all the same (the code runs).
  o.protection.requests = 1 << 30;
  o.protection.auth_failures = 1 << 30;
  o.relay_plaintext = true;  // no relay runs: calls end at the relay allocation
  o.upstream_timeout_ms = 2000;
  o.max_connections_per_source = 1000;
  f->edge = std::make_unique<rwg::sip_edge::Edge>(
      o, *f->redis, *f->devices, *f->config, rwg::core::SystemClock::Get(), f->rng, *f->registry);
  if (absl::Status s = f->edge->Start(); !s.ok()) Die(absl::StrCat("edge: ", s.message()));

  f->udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback(0);
  if (bind(f->udp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("udp bind");
  RefreshChallenge(*f);
  // Registered last so that it runs first at exit, before OpenSSL's and the logger's cleanup.
  std::atexit(StopRedis);
  return *f;
}

// "AUTO" as the value of Authorization or Proxy-Authorization becomes a correct answer.
std::string Authorize(Fixture& f, std::string msg) {
  static constexpr absl::string_view kHeaders[] = {"\nAuthorization: AUTO",
                                                   "\nProxy-Authorization: AUTO"};
  for (absl::string_view h : kHeaders) {
    const size_t at = msg.find(h.data(), 0, h.size());
    if (at == std::string::npos) continue;
    const size_t line_end = msg.find("\r\n");
    const std::vector<absl::string_view> request_line =
        absl::StrSplit(absl::string_view(msg).substr(0, line_end), ' ');
    if (request_line.size() < 2) continue;
    if (absl::Now() - f.challenge_at > absl::Seconds(30)) RefreshChallenge(f);
    absl::StatusOr<std::string> answer = rwg::sip_edge::AnswerChallenge(
        f.challenge, kUser, kPassword, request_line[0], request_line[1], ++f.nc, f.rng);
    if (!answer.ok()) continue;
    const size_t value = at + h.size() - 4;
    msg.replace(value, 4, *answer);
  }
  return msg;
}

std::vector<std::string> Messages(Fixture& f, absl::string_view data) {
  std::vector<std::string> out;
  const std::vector<absl::string_view> parts = absl::StrSplit(data, "\n====\r\n");
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].empty()) continue;
    std::string m(parts[i]);
    if (i + 1 < parts.size()) m += "\n";  // the separator's line break ends the message
    out.push_back(Authorize(f, std::move(m)));
  }
  return out;
}

void OverTcp(Fixture& f, int port, const std::vector<std::string>& messages) {
  const int fd = ConnectTcp(port);
  if (fd < 0) Die("cannot connect to the edge");
  for (const std::string& m : messages) SendAll(fd, m);
  // A sentinel on the same connection shows the edge read the input. When the input left a
  // message open (e.g. a Content-Length beyond its end) the sentinel is swallowed by it: the
  // wait ends as soon as the edge has read every byte sent (the UDP barrier then shows that
  // the edge has dealt with them and still serves).
  const std::string id = SentinelId(++f.sentinel);
  SendAll(fd, "\r\n" + Options(id, "TCP", 5060));
  std::string seen;
  ReadUntil(fd, id, absl::Milliseconds(200), &seen, [&] { return EdgeReadAll(fd, port); });
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Fixture& f = Setup();
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::vector<std::string> messages = Messages(f, rest);
  switch (data[0] % 3) {
    case 0:
      for (const std::string& m : messages) SendUdp(f, m.substr(0, 65000));
      break;
    case 1:
      OverTcp(f, f.set_port, messages);
      break;
    default:
      OverTcp(f, f.icp_port, messages);
      break;
  }
  Barrier(f);
  return 0;
}
