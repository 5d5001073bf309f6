#include "services/media_relay/worker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "services/media_relay/port_pool.h"
#include "services/media_relay/session.h"
#include "services/media_relay/srtp.h"
#include "tests/media_relay/udp_end.h"

namespace rwg::media_relay {
namespace {

std::string Rtp(uint16_t seq, uint32_t ssrc, const std::string& payload) {
  std::string p(12, '\0');
  p[0] = static_cast<char>(0x80);
  p[2] = static_cast<char>(seq >> 8);
  p[3] = static_cast<char>(seq);
  p[8] = static_cast<char>(ssrc >> 24);
  p[9] = static_cast<char>(ssrc >> 16);
  p[10] = static_cast<char>(ssrc >> 8);
  p[11] = static_cast<char>(ssrc);
  return p + payload;
}

std::string Protect(SrtpContext& ctx, const std::string& plain) {
  uint8_t buf[2048];
  std::memcpy(buf, plain.data(), plain.size());
  size_t len = plain.size();
  EXPECT_EQ(ctx.ProtectRtp(buf, &len, sizeof(buf)), SrtpResult::kOk);
  return std::string(reinterpret_cast<char*>(buf), len);
}

const std::string kPhoneKey(30, '\x11');
const std::string kRelaySetKey(30, '\x22');

// Waits up to a second for `pred` (counters are updated once the send has completed).
template <typename F>
bool Eventually(F pred) {
  for (int i = 0; i < 100 && !pred(); ++i) usleep(10000);
  return pred();
}

// Each test runs with both ways of waiting for packets.
class WorkerTest : public ::testing::TestWithParam<IoMode> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(worker_.Start().ok());
    ASSERT_EQ(worker_.io(), GetParam()) << "no fallback: the mode under test is the one used";
    for (int l = 0; l < 2; ++l) {
      absl::StatusOr<PortPair> p = pool_.Acquire();
      ASSERT_TRUE(p.ok()) << p.status();
      session_.legs[l].ports = *p;
    }
    Leg& set = session_.legs[0];
    set.suite = SrtpSuite::kAesCm128HmacSha1_80;
    set.remote_key = kPhoneKey;
    set.local_key = kRelaySetKey;
    set.inbound = *SrtpContext::Create({set.suite, kPhoneKey}, SrtpContext::Direction::kInbound);
    set.outbound =
        *SrtpContext::Create({set.suite, kRelaySetKey}, SrtpContext::Direction::kOutbound);
    set.sdp_rtp = phone_.address();
    Leg& icp = session_.legs[1];
    icp.suite = SrtpSuite::kNone;
    icp.inbound = *SrtpContext::Create({SrtpSuite::kNone, ""}, SrtpContext::Direction::kInbound);
    icp.outbound = *SrtpContext::Create({SrtpSuite::kNone, ""}, SrtpContext::Direction::kOutbound);
    icp.sdp_rtp = pbx_.address();
    absl::Status attached;
    worker_.Run([&] { attached = worker_.Attach(&session_); });
    ASSERT_TRUE(attached.ok()) << attached;
  }
  void TearDown() override {
    if (attached_) worker_.Run([&] { worker_.Detach(&session_); });
    worker_.Stop();
    for (Leg& l : session_.legs) {
      if (l.ports.rtp_fd >= 0) pool_.Release(l.ports);
    }
  }
  uint64_t Dropped(int leg, Drop d) {
    return session_.legs[leg].counters.drops[static_cast<int>(d)].Get();
  }

  PortPool pool_{"127.0.0.1", 46000, 46099};
  Worker worker_{0, GetParam()};
  Session session_;
  bool attached_ = true;
  End phone_, pbx_, intruder_;
  std::unique_ptr<SrtpContext> phone_out_ = *SrtpContext::Create(
      {SrtpSuite::kAesCm128HmacSha1_80, kPhoneKey}, SrtpContext::Direction::kOutbound);
  std::unique_ptr<SrtpContext> phone_in_ = *SrtpContext::Create(
      {SrtpSuite::kAesCm128HmacSha1_80, kRelaySetKey}, SrtpContext::Direction::kInbound);
};

TEST_P(WorkerTest, TranscryptsBothWaysAndLatchesOnTheFirstAuthenticPacket) {
  const int set_port = session_.legs[0].ports.port;
  const int icp_port = session_.legs[1].ports.port;
  const std::string voice = Rtp(100, 0xabc, std::string(160, 'v'));
  phone_.SendTo(set_port, Protect(*phone_out_, voice));
  EXPECT_EQ(pbx_.Receive(), voice) << "plain RTP toward the iPBX";
  const std::string back = Rtp(7, 0xdef, std::string(160, 'b'));
  pbx_.SendTo(icp_port, back);
  std::string got = phone_.Receive();
  ASSERT_EQ(got.size(), back.size() + 10);
  uint8_t buf[2048];
  std::memcpy(buf, got.data(), got.size());
  size_t len = got.size();
  ASSERT_EQ(phone_in_->UnprotectRtp(buf, &len), SrtpResult::kOk);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), len), back);
  EXPECT_EQ(session_.legs[0].counters.rtp_in_packets.Get(), 1u);
  EXPECT_TRUE(Eventually([&] { return session_.legs[1].counters.rtp_out_packets.Get() == 1u; }));
}

TEST_P(WorkerTest, CarriesMorePacketsThanItHasBuffers) {
  // 10,000 packets from the iPBX in bursts: more than the 4,096 receive buffers of io_uring,
  // so every buffer is lent to a send and given back several times.
  const int icp_port = session_.legs[1].ports.port;
  int received = 0;
  uint16_t seq = 0;
  for (int burst = 0; burst < 100; ++burst) {
    for (int i = 0; i < 100; ++i) pbx_.SendTo(icp_port, Rtp(++seq, 0xfeed, std::string(160, 'p')));
    for (int i = 0; i < 100; ++i) {
      std::string got = phone_.Receive();
      if (got.empty()) break;
      ++received;
    }
  }
  EXPECT_EQ(received, 10000);
  EXPECT_EQ(session_.legs[1].counters.rtp_in_packets.Get(), 10000u);
  EXPECT_TRUE(
      Eventually([&] { return session_.legs[0].counters.rtp_out_packets.Get() == 10000u; }));
}

TEST_P(WorkerTest, AfterDetachThePortsAreFreeAndNothingIsCarried) {
  const int icp_port = session_.legs[1].ports.port;
  pbx_.SendTo(icp_port, Rtp(1, 0xfeed, "before"));
  ASSERT_NE(phone_.Receive(), "");
  worker_.Run([&] { worker_.Detach(&session_); });
  attached_ = false;
  pbx_.SendTo(icp_port, Rtp(2, 0xfeed, "after-detach"));
  EXPECT_EQ(phone_.Receive(200), "") << "a detached session carries nothing";
  for (Leg& l : session_.legs) {
    pool_.Release(l.ports);
    l.ports.rtp_fd = l.ports.rtcp_fd = -1;
  }
  // Nothing holds the sockets any more: their ports can be bound again at once.
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(icp_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
  close(s);
}

TEST_P(WorkerTest, ForeignSourcesAndForgeriesAreDropped) {
  const int set_port = session_.legs[0].ports.port;
  // Before latching: a forgery (wrong key) from anywhere fails authentication.
  std::unique_ptr<SrtpContext> forger =
      *SrtpContext::Create({SrtpSuite::kAesCm128HmacSha1_80, std::string(30, '\x33')},
                           SrtpContext::Direction::kOutbound);
  intruder_.SendTo(set_port, Protect(*forger, Rtp(1, 0xabc, "forged-forged-forged")));
  EXPECT_EQ(pbx_.Receive(200), "");
  // The phone's first authentic packet latches its address...
  phone_.SendTo(set_port, Protect(*phone_out_, Rtp(2, 0xabc, "genuine-genuine")));
  EXPECT_EQ(pbx_.Receive(), Rtp(2, 0xabc, "genuine-genuine"));
  // ...after which even validly encrypted packets from another source get nothing through.
  intruder_.SendTo(set_port, Protect(*phone_out_, Rtp(3, 0xabc, "stolen-key-stolen")));
  EXPECT_EQ(pbx_.Receive(200), "");
  // A replayed packet from the phone's own address is refused too.
  const std::string p4 = Protect(*phone_out_, Rtp(4, 0xabc, "once-only-once"));
  phone_.SendTo(set_port, p4);
  EXPECT_EQ(pbx_.Receive(), Rtp(4, 0xabc, "once-only-once"));
  phone_.SendTo(set_port, p4);
  EXPECT_EQ(pbx_.Receive(200), "");
  // Garbage is malformed.
  phone_.SendTo(set_port, "xx");
  EXPECT_EQ(pbx_.Receive(200), "");
  // The plain iPBX leg only takes the SDP address.
  intruder_.SendTo(session_.legs[1].ports.port, Rtp(9, 0x1, "bleed-bleed"));
  EXPECT_EQ(phone_.Receive(200), "");

  EXPECT_EQ(Dropped(0, Drop::kAuthFailure), 1u);
  EXPECT_EQ(Dropped(0, Drop::kForeignSource), 1u);
  EXPECT_EQ(Dropped(0, Drop::kReplay), 1u);
  EXPECT_EQ(Dropped(0, Drop::kMalformed), 1u);
  EXPECT_EQ(Dropped(1, Drop::kForeignSource), 1u);
  EXPECT_EQ(session_.legs[0].counters.rtp_in_packets.Get(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Io, WorkerTest, ::testing::Values(IoMode::kUring, IoMode::kEpoll),
                         [](const ::testing::TestParamInfo<IoMode>& i) {
                           return std::string(IoModeName(i.param));
                         });

}  // namespace
}  // namespace rwg::media_relay
