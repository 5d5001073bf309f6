#include "services/media_relay/port_pool.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "services/media_relay/session.h"

namespace rwg::media_relay {
namespace {

int LocalPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

TEST(PortPoolTest, HandsOutEvenOddPairsUntilExhausted) {
  PortPool pool("127.0.0.1", 44001, 44008);  // min rounds up to 44002: pairs 44002..44006
  EXPECT_EQ(pool.total_pairs(), 3u);
  std::vector<PortPair> got;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<PortPair> p = pool.Acquire();
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->port % 2, 0);
    EXPECT_EQ(LocalPort(p->rtp_fd), p->port);
    EXPECT_EQ(LocalPort(p->rtcp_fd), p->port + 1);
    got.push_back(*p);
  }
  absl::StatusOr<PortPair> none = pool.Acquire();
  EXPECT_TRUE(absl::IsResourceExhausted(none.status())) << none.status();
  EXPECT_EQ(pool.used_pairs(), 3u);
  const int freed = got[1].port;
  pool.Release(got[1]);
  EXPECT_EQ(got[1].rtp_fd, -1);
  absl::StatusOr<PortPair> again = pool.Acquire();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->port, freed);
  pool.Release(*again);
  pool.Release(got[0]);
  pool.Release(got[2]);
  EXPECT_EQ(pool.used_pairs(), 0u);
}

TEST(PortPoolTest, SkipsPairsTakenByOthers) {
  PortPool pool("127.0.0.1", 44100, 44103);
  int blocker = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(44101);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(blocker, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  absl::StatusOr<PortPair> p = pool.Acquire();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->port, 44102);
  EXPECT_TRUE(absl::IsResourceExhausted(pool.Acquire().status()));
  pool.Release(*p);
  close(blocker);
}

// Out of descriptors, the pool says so at once (every other pair would fail the same way, and
// walking them all happens under the relay's lock): the soak's relay at its descriptor limit
// had every allocation try all 10,000 pairs and the requests pile up behind it.
TEST(PortPoolTest, OutOfDescriptorsIsReportedAtOnce) {
  PortPool pool("127.0.0.1", 44200, 45199);
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
  const int next = dup(0);  // the lowest free descriptor: the limit goes just below it
  ASSERT_GE(next, 0);
  close(next);
  rlimit low = before;
  low.rlim_cur = static_cast<rlim_t>(next);
  // The limit comes back however this test ends (later tests in the process need it).
  struct Restore {
    rlimit saved;
    ~Restore() { setrlimit(RLIMIT_NOFILE, &saved); }
  } restore{before};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  absl::StatusOr<PortPair> p = pool.Acquire();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &before), 0);
  EXPECT_TRUE(absl::IsResourceExhausted(p.status())) << p.status();
  EXPECT_NE(p.status().message().find("port 44200: Too many open files"), std::string::npos)
      << p.status();
  EXPECT_EQ(pool.used_pairs(), 0u);
  // With descriptors again, the same pair is handed out.
  absl::StatusOr<PortPair> q = pool.Acquire();
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->port, 44200);  // the pair that could not be tried is not skipped
  pool.Release(*q);
}

TEST(PortPoolTest, ExactPairForRestores) {
  PortPool pool("127.0.0.1", 44200, 44209);
  absl::StatusOr<PortPair> p = pool.AcquireExactly(44204);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(absl::IsAlreadyExists(pool.AcquireExactly(44204).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(pool.AcquireExactly(44205).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(pool.AcquireExactly(45000).status()));
  pool.Release(*p);
}

TEST(AddressTest, ParsesComparesAndPrints) {
  Address a, b, c;
  ASSERT_TRUE(Address::Parse("192.0.2.7", 4000, &a));
  ASSERT_TRUE(Address::Parse("192.0.2.7", 4000, &b));
  ASSERT_TRUE(Address::Parse("2001:db8::1", 4000, &c));
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == c);
  EXPECT_EQ(a.Host(), "192.0.2.7");
  EXPECT_EQ(c.Host(), "2001:db8::1");
  EXPECT_EQ(a.Port(), 4000);
  Address d;
  EXPECT_FALSE(Address::Parse("phone.example", 4000, &d));
  EXPECT_FALSE(Address::Parse("192.0.2.7", 0, &d));
  EXPECT_FALSE(Address::Parse("192.0.2.7", 70000, &d));
  EXPECT_TRUE(d.empty());
}

}  // namespace
}  // namespace rwg::media_relay
