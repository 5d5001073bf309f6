// The connection limit against real sockets on the loopback interface: accept() here is the
// limit's (the test binary links it in, as sip-edge does).
#include "services/sip_edge/connection_limit.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace rwg::sip_edge {
namespace {

int Listener(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(fd, 64), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int Connect(int port, const char* from) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, from, &src.sin_addr);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)), 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

// True when the peer closed `fd` (reads end of stream or a reset).
bool ClosedByPeer(int fd) {
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  errno = 0;
  return recv(fd, &c, 1, 0) <= 0 && errno != EAGAIN;
}

class ConnectionLimitTest : public ::testing::Test {
 protected:
  void TearDown() override {
    SetConnectionLimit({}, 0, nullptr);
    for (int fd : fds_) close(fd);
  }
  int Keep(int fd) {
    fds_.push_back(fd);
    return fd;
  }
  std::vector<int> fds_;
};

TEST_F(ConnectionLimitTest, ASourceBeyondItsLimitIsClosedOthersAreNot) {
  ASSERT_TRUE(ConnectionLimitActive());
  int port = 0;
  const int l = Keep(Listener(&port));
  prometheus::Counter refused;
  SetConnectionLimit({l}, 2, &refused);
  std::vector<int> accepted;
  for (int i = 0; i < 2; ++i) {
    Keep(Connect(port, "127.0.0.1"));
    const int fd = accept(l, nullptr, nullptr);
    ASSERT_GE(fd, 0);
    accepted.push_back(Keep(fd));
  }
  EXPECT_EQ(CountedConnections("127.0.0.1"), 2u);
  // The third from the same address is closed at once; accept() reports no connection and
  // no error (errno 0), so sofia-sip logs nothing.
  const int third = Keep(Connect(port, "127.0.0.1"));
  errno = EINVAL;
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  EXPECT_EQ(accept(l, reinterpret_cast<sockaddr*>(&peer), &len), -1);
  EXPECT_EQ(errno, 0);
  EXPECT_TRUE(ClosedByPeer(third));
  EXPECT_EQ(refused.Value(), 1);
  // Another source is not affected.
  Keep(Connect(port, "127.0.0.2"));
  const int other = accept(l, reinterpret_cast<sockaddr*>(&peer), &len);
  ASSERT_GE(other, 0);
  Keep(other);
  EXPECT_EQ(CountedConnections("127.0.0.2"), 1u);
  // A connection that closes makes room.
  close(accepted[0]);
  fds_.erase(std::find(fds_.begin(), fds_.end(), accepted[0]));
  EXPECT_EQ(CountedConnections("127.0.0.1"), 1u);
  Keep(Connect(port, "127.0.0.1"));
  const int again = accept(l, nullptr, nullptr);
  EXPECT_GE(again, 0);
  Keep(again);
  EXPECT_EQ(refused.Value(), 1);
}

TEST_F(ConnectionLimitTest, OtherSocketsAndNoLimitPassThrough) {
  int port = 0;
  const int l = Keep(Listener(&port));
  SetConnectionLimit({l + 1000}, 1, nullptr);  // not this listener
  for (int i = 0; i < 3; ++i) {
    Keep(Connect(port, "127.0.0.1"));
    const int fd = accept(l, nullptr, nullptr);
    EXPECT_GE(fd, 0);
    Keep(fd);
  }
  SetConnectionLimit({l}, 0, nullptr);  // no limit
  for (int i = 0; i < 3; ++i) {
    Keep(Connect(port, "127.0.0.1"));
    const int fd = accept(l, nullptr, nullptr);
    EXPECT_GE(fd, 0);
    Keep(fd);
  }
}

}  // namespace
}  // namespace rwg::sip_edge
