#include "services/sip_edge/media_relays.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include <atomic>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "rwg/relay/v1/relay.grpc.pb.h"
#include "services/core/clock.h"
#include "services/sip_edge/async_redis.h"
#include "services/sip_edge/loop_queue.h"
#include "tests/testing/wait.h"

namespace rwg::sip_edge {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

std::string Beat(const std::string& grpc, int sessions, int free, int64_t seen,
                 bool draining = false) {
  return "{\"grpc\":\"" + grpc +
         "\",\"media\":\"10.0.0.1\",\"sessions\":" + std::to_string(sessions) +
         ",\"ports_free\":" + std::to_string(free) +
         ",\"ports_used\":0,\"draining\":" + (draining ? "true" : "false") +
         ",\"seen\":" + std::to_string(seen) + "}";
}

TEST(PickRelayTest, TheInstanceWithFewestSessions) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<std::pair<std::string, std::string>> rows = {
      {"relay-a", Beat("10.0.0.1:7000", 40, 900, now)},
      {"relay-b", Beat("10.0.0.2:7000", 12, 900, now)},
      {"relay-c", Beat("10.0.0.3:7000", 30, 900, now)}};
  auto pick = PickRelay(rows, kNow, absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "relay-b");
  EXPECT_EQ(pick->grpc, "10.0.0.2:7000");
}

TEST(PickRelayTest, EqualLoadGoesToMorePortsFree) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  auto pick = PickRelay({{"a", Beat("h:1", 5, 100, now)}, {"b", Beat("h:2", 5, 800, now)}}, kNow,
                        absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "b");
}

TEST(PickRelayTest, StaleDrainingFullAndStartingInstancesAreSkipped) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<std::pair<std::string, std::string>> rows = {
      {"stale", Beat("h:1", 0, 900, now - 60)},
      {"draining", Beat("h:2", 0, 900, now, true)},
      {"full", Beat("h:3", 0, 2, now)},
      {"starting", Beat("h:0", 0, 900, now)},
      {"broken", "{not json"},
      {"ok", Beat("h:5", 99, 10, now)}};
  auto pick = PickRelay(rows, kNow, absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "ok");
  rows.pop_back();
  EXPECT_FALSE(PickRelay(rows, kNow, absl::Seconds(15)).has_value());
}

TEST(PickRelayTest, FieldsOfTheWrongTypeAreSkippedNotFatal) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<std::pair<std::string, std::string>> rows = {
      {"odd", R"({"grpc":7,"sessions":"many","ports_free":[],"seen":"today"})"},
      {"ok", Beat("h:5", 1, 10, now)}};
  auto pick = PickRelay(rows, kNow, absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "ok");
}

TEST(PickRelayTest, SessionsPlacedBetweenReadsSpreadAndFillInstancesUp) {
  // What the edge does between two reads of the heartbeats: each session placed counts on
  // the instance that took it.
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<RelayCandidate> c = UsableRelays(
      {{"a", Beat("h:1", 10, 8, now)}, {"b", Beat("h:2", 11, 100, now)}}, kNow, absl::Seconds(15));
  ASSERT_EQ(c.size(), 2u);
  std::vector<std::string> placed;
  for (int i = 0; i < 5; ++i) {
    RelayCandidate* pick = LeastLoaded(c);
    ASSERT_NE(pick, nullptr);
    placed.push_back(pick->instance.name);
    ++pick->sessions;
    pick->ports_free -= 4;
  }
  // a (10 sessions) first; then b and a alternate until a has no ports left (8 = two sessions).
  EXPECT_EQ(placed, (std::vector<std::string>{"a", "b", "a", "b", "b"}));
  c[1].ports_free = 3;
  EXPECT_EQ(LeastLoaded(c), nullptr);
}

// A relay whose request threads are all taken: it refuses the first deletions with
// RESOURCE_EXHAUSTED, as gRPC's bounded server does, then takes them.
class BusyRelay final : public relay::v1::RelayService::Service {
 public:
  explicit BusyRelay(int refusals) : refusals_(refusals) {}
  grpc::Status Delete(grpc::ServerContext*, const relay::v1::DeleteRequest* req,
                      relay::v1::DeleteResponse*) override {
    absl::MutexLock lock(&mu_);
    if (refused_ < refusals_) {
      ++refused_;
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, "Server Threadpool Exhausted"};
    }
    deleted_.push_back(req->id());
    return grpc::Status::OK;
  }
  std::vector<std::string> deleted() {
    absl::MutexLock lock(&mu_);
    return deleted_;
  }
  int refused() {
    absl::MutexLock lock(&mu_);
    return refused_;
  }

 private:
  const int refusals_;
  absl::Mutex mu_;
  int refused_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> deleted_ ABSL_GUARDED_BY(mu_);
};

TEST(MediaRelaysTest, ADeletionABusyRelayRefusedIsAskedAgain) {
  BusyRelay relay(2);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&relay);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);

  ASSERT_EQ(su_init(), 0);
  su_root_t* root = su_root_create(nullptr);
  ASSERT_NE(root, nullptr);
  core::ManualClock clock;
  {
    LoopQueue loop(root);
    AsyncRedis redis(root, core::RedisOptions{}, clock);
    MediaRelaysOptions o;
    o.token = "relay-token";
    o.plaintext = true;
    o.delete_retry_for = absl::Hours(1);  // the clock moves 5 s each poll
    std::unique_ptr<MediaRelays> relays = NewMediaRelays(o, redis, loop, clock);
    RelaySession s;
    s.id = "session-1";
    s.instance = "media-relay-0";
    s.grpc = "127.0.0.1:" + std::to_string(port);
    relays->Delete(s);
    // Refused twice, then deleted: each Sweep after the retry delay asks again.
    EXPECT_TRUE(testing::Eventually(
        [&] {
          clock.Advance(absl::Seconds(5));
          relays->Sweep();
          return relay.deleted().size() == 1;
        },
        absl::Seconds(20)))
        << relay.refused() << " refused";
    EXPECT_EQ(relay.refused(), 2);
    EXPECT_EQ(relay.deleted(), std::vector<std::string>{"session-1"});
    // The server first, while the client's channel is still there (gRPC's callback queue
    // shutting down under a server being shut down was seen to crash).
    server->Shutdown();
  }
  su_root_destroy(root);
  su_deinit();
}

}  // namespace
}  // namespace rwg::sip_edge
