#include "services/sip_edge/source_filter.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace rwg::sip_edge {
namespace {

class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Listener() { close(fd_); }
  int fd() const { return fd_; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// True when a TCP connection from `source` to 127.0.0.1:port completes within 500 ms.
bool Connects(const char* source, int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, source, &src.sin_addr);
  EXPECT_EQ(bind(s, reinterpret_cast<sockaddr*>(&src), sizeof(src)), 0);
  fcntl(s, F_SETFL, O_NONBLOCK);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(port));
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(s, reinterpret_cast<sockaddr*>(&dst), sizeof(dst));
  pollfd p{s, POLLOUT, 0};
  bool ok = poll(&p, 1, 500) == 1;
  int err = 0;
  socklen_t len = sizeof(err);
  if (ok) ok = getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  close(s);
  return ok;
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
  EXPECT_EQ(*n, 1u) << "only IPv4 addresses go into the kernel filter";
  EXPECT_FALSE(Connects("127.0.0.3", l.port()));
  EXPECT_TRUE(Connects("127.0.0.4", l.port()));
  n = filter.Set({});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  EXPECT_TRUE(Connects("127.0.0.3", l.port()));
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
