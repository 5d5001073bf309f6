// The relay's control plane as a unit, over a private redis-server and real UDP sockets on
// 127.0.0.1: a session's record and index written with it and removed with it, media relayed
// between its legs, a restarted instance restoring its sessions on the same ports, draining.
#include "services/media_relay/relay.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

#include "services/core/clock.h"
#include "services/core/keys.h"
#include "tests/media_relay/udp_end.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::media_relay {
namespace {

using Peer = End;

// An RTP packet (version 2, PCMU) with a recognisable payload.
std::string Rtp(uint16_t seq, const std::string& payload) {
  std::string p(12, '\0');
  p[0] = static_cast<char>(0x80);
  p[2] = static_cast<char>(seq >> 8);
  p[3] = static_cast<char>(seq & 0xff);
  p[8] = 0x12;  // SSRC 0x12345678
  p[9] = 0x34;
  p[10] = 0x56;
  p[11] = 0x78;
  return p + payload;
}

bool AllFree(int first, int last) {
  for (int port = first; port <= last; ++port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (!ok) return false;
  }
  return true;
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
        core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
    ASSERT_TRUE(box.ok());
    box_ = *std::move(box);
    // A pool of its own per test process (each test runs in one), away from the integration
    // tests' pools: the first block of 20 free ports from an offset chosen by the pid.
    for (int i = 0; i < 200 && port_min_ == 0; ++i) {
      const int base = 45000 + static_cast<int>((getpid() + i) % 200) * 20;
      if (AllFree(base, base + 19)) port_min_ = base;
    }
    ASSERT_NE(port_min_, 0) << "no block of 20 free UDP ports in 45000-48999";
  }

  std::unique_ptr<Relay> StartRelay() {
    RelayOptions o;
    o.instance = "media-relay-test";
    o.bind_address = "127.0.0.1";
    o.grpc_address = "127.0.0.1:1";
    o.port_min = port_min_;
    o.port_max = port_min_ + 19;
    o.io = IoMode::kEpoll;
    registries_.push_back(std::make_unique<prometheus::Registry>());
    auto relay = std::make_unique<Relay>(o, redis_->client(), *box_, core::SystemClock::Get(),
                                         core::Random::System(), *registries_.back());
    absl::Status s = relay->Start();
    EXPECT_TRUE(s.ok()) << s;
    return relay;
  }

  relay::v1::Session Allocate(Relay& relay, int set_port, int icp_port) {
    relay::v1::AllocateRequest req;
    req.set_call_id("call-1");
    req.mutable_set()->set_remote_address("127.0.0.1");
    req.mutable_set()->set_remote_port(static_cast<uint32_t>(set_port));
    req.mutable_icp()->set_remote_address("127.0.0.1");
    req.mutable_icp()->set_remote_port(static_cast<uint32_t>(icp_port));
    absl::StatusOr<relay::v1::Session> s = relay.Allocate(req);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : relay::v1::Session();
  }

  std::set<std::string> Keys() {
    absl::StatusOr<std::vector<std::string>> k = redis_->Keys();
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? std::set<std::string>(k->begin(), k->end()) : std::set<std::string>();
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<core::SecretBox> box_;
  std::vector<std::unique_ptr<prometheus::Registry>> registries_;
  int port_min_ = 0;
};

TEST_F(RelayTest, ASessionIsKeptInRedisWhileItLivesAndRemovedWithIt) {
  std::unique_ptr<Relay> relay = StartRelay();
  Peer phone, ipbx;
  relay::v1::Session s = Allocate(*relay, phone.port(), ipbx.port());
  ASSERT_FALSE(s.id().empty());
  EXPECT_EQ(s.set().suite(), "RTP");
  const std::set<std::string> keys = Keys();
  EXPECT_TRUE(keys.count(core::RelaySessionKey(s.id()))) << "record of the session";
  EXPECT_TRUE(keys.count(core::RelaySessionIndexKey("media-relay-test")));
  absl::StatusOr<core::RedisReply> member = redis_->client().Command(
      {"SISMEMBER", core::RelaySessionIndexKey("media-relay-test"), s.id()});
  ASSERT_TRUE(member.ok());
  EXPECT_EQ(member->integer, 1);

  ASSERT_TRUE(relay->Delete(s.id()).ok());
  EXPECT_EQ(relay->Delete(s.id()).status().code(), absl::StatusCode::kNotFound);
  const std::set<std::string> after = Keys();
  EXPECT_FALSE(after.count(core::RelaySessionKey(s.id())));
  EXPECT_FALSE(after.count(core::RelaySessionIndexKey("media-relay-test")));
  relay->Stop();
}

TEST_F(RelayTest, MediaCrossesBetweenTheLegsBothWays) {
  std::unique_ptr<Relay> relay = StartRelay();
  Peer phone, ipbx;
  relay::v1::Session s = Allocate(*relay, phone.port(), ipbx.port());
  const int set_port = static_cast<int>(s.set().local_port());
  const int icp_port = static_cast<int>(s.icp().local_port());
  ASSERT_NE(set_port, icp_port);
  phone.SendTo(set_port, Rtp(1, "from the phone"));
  EXPECT_EQ(ipbx.Receive(2000), Rtp(1, "from the phone"));
  ipbx.SendTo(icp_port, Rtp(7, "from the iPBX"));
  EXPECT_EQ(phone.Receive(2000), Rtp(7, "from the iPBX"));
  relay->Stop();
}

TEST_F(RelayTest, ARestartedInstanceRestoresItsSessionsOnTheSamePorts) {
  Peer phone, ipbx;
  relay::v1::Session s;
  {
    std::unique_ptr<Relay> relay = StartRelay();
    s = Allocate(*relay, phone.port(), ipbx.port());
    relay->Stop();
  }
  std::unique_ptr<Relay> again = StartRelay();
  EXPECT_EQ(again->restored(), 1u);
  absl::StatusOr<relay::v1::Session> got = again->Get(s.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->set().local_port(), s.set().local_port());
  EXPECT_EQ(got->icp().local_port(), s.icp().local_port());
  EXPECT_EQ(got->call_id(), "call-1");
  phone.SendTo(static_cast<int>(s.set().local_port()), Rtp(2, "after the restart"));
  EXPECT_EQ(ipbx.Receive(2000), Rtp(2, "after the restart"));
  ASSERT_TRUE(again->Delete(s.id()).ok());
  EXPECT_FALSE(Keys().count(core::RelaySessionKey(s.id())));
  again->Stop();
}

TEST_F(RelayTest, ADrainingInstanceTakesNoNewSessionButKeepsItsOwn) {
  std::unique_ptr<Relay> relay = StartRelay();
  Peer phone, ipbx;
  relay::v1::Session s = Allocate(*relay, phone.port(), ipbx.port());
  EXPECT_EQ(relay->Drain(), 1u);
  relay::v1::AllocateRequest req;
  req.set_call_id("call-2");
  EXPECT_EQ(relay->Allocate(req).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(relay->Get(s.id()).ok());
  relay->Stop();
}

TEST_F(RelayTest, TheLastPortPairTakenIsResourceExhaustedAndFreedByADelete) {
  std::unique_ptr<Relay> relay = StartRelay();  // 10 pairs: 5 sessions of two legs
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Allocate(*relay, 40000, 40002).id());
  relay::v1::AllocateRequest req;
  req.set_call_id("one too many");
  absl::StatusOr<relay::v1::Session> refused = relay->Allocate(req);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  ASSERT_TRUE(relay->Delete(ids[0]).ok());
  EXPECT_TRUE(relay->Allocate(req).ok());
  relay->Stop();
}

TEST_F(RelayTest, WithoutALimitOfItsOwnTheDescriptorLimitCapsSessionsAndTheRefusalSaysSo) {
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
  rlimit low = before;
  low.rlim_cur = 520;  // 512 kept back, 4 descriptors a session: room for 2
  // The limit comes back however this test ends (later tests in the process need it).
  struct Restore {
    rlimit saved;
    ~Restore() { setrlimit(RLIMIT_NOFILE, &saved); }
  } restore{before};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::unique_ptr<Relay> relay = StartRelay();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &before), 0);
  Allocate(*relay, 40000, 40002);
  Allocate(*relay, 40000, 40002);
  relay::v1::AllocateRequest req;
  req.set_call_id("third");
  absl::StatusOr<relay::v1::Session> refused = relay->Allocate(req);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find(
                "session limit reached (2, from the descriptor limit: raise RLIMIT_NOFILE"),
            std::string::npos)
      << refused.status();
  relay->Stop();
}

}  // namespace
}  // namespace rwg::media_relay
