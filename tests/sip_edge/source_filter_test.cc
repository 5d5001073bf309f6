#include "services/sip_edge/source_filter.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace rwg::sip_edge {
namespace {

class Listener {
 public:
  // IPv4 on 127.0.0.1, or dual stack on every address.
  explicit Listener(bool dual_stack = false) {
    if (dual_stack) {
      fd_ = socket(AF_INET6, SOCK_STREAM, 0);
      int off = 0;
      setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_any;
      EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
      socklen_t len = sizeof(a);
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin6_port);
    } else {
      fd_ = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
      socklen_t len = sizeof(a);
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin_port);
    }
    EXPECT_EQ(listen(fd_, 16), 0);
  }
  ~Listener() { close(fd_); }
  int fd() const { return fd_; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A TCP connection from `source` (IPv4 to 127.0.0.1, or IPv6 from ::1 to ::1) to `port`;
// -1 when it does not complete within 500 ms.
int Connect(const char* source, int port) {
  const bool v6 = std::string(source).find(':') != std::string::npos;
  int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  fcntl(s, F_SETFL, O_NONBLOCK);
  if (v6) {
    sockaddr_in6 dst{};
    dst.sin6_family = AF_INET6;
    dst.sin6_port = htons(static_cast<uint16_t>(port));
    dst.sin6_addr = in6addr_loopback;
    connect(s, reinterpret_cast<sockaddr*>(&dst), sizeof(dst));
  } else {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, source, &src.sin_addr);
    EXPECT_EQ(bind(s, reinterpret_cast<sockaddr*>(&src), sizeof(src)), 0);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(static_cast<uint16_t>(port));
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(s, reinterpret_cast<sockaddr*>(&dst), sizeof(dst));
  }
  pollfd p{s, POLLOUT, 0};
  bool ok = poll(&p, 1, 500) == 1;
  int err = 0;
  socklen_t len = sizeof(err);
  if (ok) ok = getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  if (!ok) {
    close(s);
    return -1;
  }
  return s;
}

bool Connects(const char* source, int port) {
  int s = Connect(source, port);
  if (s >= 0) close(s);
  return s >= 0;
}

// Accepts one pending connection (waiting up to 500 ms).
int Accept(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (poll(&p, 1, 500) != 1) return -1;
  return accept(listener, nullptr, nullptr);
}

// True when the peer has shut the connection down (end of stream within 500 ms).
bool Ended(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 500) != 1) return false;
  char c;
  return recv(fd, &c, 1, 0) == 0;
}

TEST(SourceFilterTest, FindsOnlyTheListenersOnTheGivenPorts) {
  Listener a, b;
  std::vector<int> found = SourceFilter::FindListeners({a.port()});
  EXPECT_EQ(found, std::vector<int>{a.fd()});
  EXPECT_TRUE(SourceFilter::FindListeners({}).empty());
}

TEST(SourceFilterTest, KernelDropsBannedSourcesOnly) {
  Listener l;
  SourceFilter filter({l.fd()});
  ASSERT_TRUE(Connects("127.0.0.3", l.port()));
  absl::StatusOr<size_t> n = filter.Set({"127.0.0.3", "2001:db8::1", "not-an-address"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u) << "IPv4 and IPv6 addresses go into the kernel filter";
  EXPECT_FALSE(Connects("127.0.0.3", l.port()));
  EXPECT_TRUE(Connects("127.0.0.4", l.port()));
  n = filter.Set({});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  EXPECT_TRUE(Connects("127.0.0.3", l.port()));
}

TEST(SourceFilterTest, KernelDropsBannedIpv6SourcesOnDualStackListeners) {
  Listener l(/*dual_stack=*/true);
  SourceFilter filter({l.fd()});
  ASSERT_TRUE(Connects("::1", l.port()));
  absl::StatusOr<size_t> n = filter.Set({"2001:db8::1", "::2"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(Connects("::1", l.port())) << "other IPv6 addresses pass";
  n = filter.Set({"2001:db8::1", "0:0:0:0:0:0:0:1", "127.0.0.9"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3u);
  EXPECT_FALSE(Connects("::1", l.port()));
  EXPECT_TRUE(Connects("127.0.0.3", l.port())) << "IPv4 through the same listener still passes";
  EXPECT_FALSE(Connects("127.0.0.9", l.port()));
  n = filter.Set({});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(Connects("::1", l.port()));
  // A /64: every address in it is dropped (::1 is in ::/64), others pass.
  n = filter.Set({"2001:db8::/64"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(Connects("::1", l.port()));
  n = filter.Set({"::/64"});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_FALSE(Connects("::1", l.port()));
  EXPECT_TRUE(Connects("127.0.0.3", l.port()));
}

TEST(SourceFilterTest, ConnectionsOpenWhenTheBanBeginsAreShutDown) {
  Listener l;
  Listener other_port;
  SourceFilter filter({l.fd()});
  int c1 = Connect("127.0.0.3", l.port());
  int c2 = Connect("127.0.0.4", l.port());
  int c3 = Connect("127.0.0.3", other_port.port());
  ASSERT_GE(c1, 0);
  ASSERT_GE(c2, 0);
  ASSERT_GE(c3, 0);
  int s1 = Accept(l.fd());
  int s2 = Accept(l.fd());
  int s3 = Accept(other_port.fd());
  ASSERT_GE(s1, 0);
  ASSERT_GE(s2, 0);
  ASSERT_GE(s3, 0);
  ASSERT_TRUE(filter.Set({"127.0.0.3"}).ok());
  EXPECT_TRUE(Ended(c1)) << "the banned source's connection is shut down";
  EXPECT_FALSE(Ended(c2)) << "another source keeps its connection";
  EXPECT_FALSE(Ended(c3)) << "a connection to another port (not a filtered listener) stays";
  // Set again with the same list: nothing new to shut down.
  ASSERT_TRUE(filter.Set({"127.0.0.3"}).ok());
  for (int fd : {c1, c2, c3, s1, s2, s3}) close(fd);
}

TEST(SourceFilterTest, AcceptedConnectionsInheritDeadPeerDetection) {
  Listener l;
  ASSERT_TRUE(SetDeadPeerDetection(l.fd(), 45).ok());
  int c = Connect("127.0.0.3", l.port());
  ASSERT_GE(c, 0);
  int s = Accept(l.fd());
  ASSERT_GE(s, 0);
  int on = 0, idle = 0, interval = 0, probes = 0;
  unsigned int user_timeout = 0;
  socklen_t len = sizeof(int);
  ASSERT_EQ(getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &on, &len), 0);
  ASSERT_EQ(getsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len), 0);
  ASSERT_EQ(getsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &interval, &len), 0);
  ASSERT_EQ(getsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &probes, &len), 0);
  len = sizeof(user_timeout);
  ASSERT_EQ(getsockopt(s, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, &len), 0);
  EXPECT_EQ(on, 1);
  EXPECT_EQ(idle, 45);
  EXPECT_EQ(interval, 10);
  EXPECT_EQ(probes, 3);
  EXPECT_EQ(user_timeout, 75000u);
  close(s);
  close(c);
}

TEST(SourceFilterTest, ManyAddressesAreCappedNotRefused) {
  Listener l;
  SourceFilter filter({l.fd()});
  std::vector<std::string> ips;
  for (int i = 0; i < 3000; ++i)
    ips.push_back("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
  ips.push_back("127.0.0.5");  // sorts after 10.x: beyond the cap
  absl::StatusOr<size_t> n = filter.Set(ips);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, SourceFilter::kMaxAddresses);
  EXPECT_TRUE(Connects("127.0.0.5", l.port())) << "beyond the cap: left to the parser check";
  EXPECT_TRUE(Connects("127.0.0.6", l.port()));
}

}  // namespace
}  // namespace rwg::sip_edge
