// MasterLocator and RedisClient against a real master, its replica and a real sentinel
// (redis-server --sentinel), all started by the test. The failover is asked of the sentinel
// (SENTINEL FAILOVER), so it happens at once rather than after a down-after period.
#include "services/core/redis_sentinel.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
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
#include "tests/testing/wait.h"

extern char** environ;

namespace rwg::core {
namespace {

// Sentinel judges a master down and promotes a replica in seconds; a slow machine takes longer.
constexpr absl::Duration kFailover = absl::Seconds(40);

// The value of `key` as `c` reads it; a connection closed under it is made again (a sentinel
// promoting a replica closes that server's client connections).
std::string Value(RedisClient& c, const std::string& key) {
  absl::StatusOr<RedisReply> r = c.Command({"GET", key});
  if (!r.ok()) r = c.Command({"GET", key});
  return r.ok() ? r->str : absl::StrCat("<", r.status().message(), ">");
}

class SentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/rwg-sentinel-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    master_port_ = testing::FreeTcpPort();
    replica_port_ = testing::FreeTcpPort();
    sentinel_port_ = testing::FreeTcpPort();
    Spawn({"redis-server", "--port", std::to_string(master_port_), "--bind", "127.0.0.1", "--save",
           "", "--appendonly", "no", "--dir", dir_});
    Spawn({"redis-server", "--port", std::to_string(replica_port_), "--bind", "127.0.0.1", "--save",
           "", "--appendonly", "no", "--dir", dir_, "--replicaof", "127.0.0.1",
           std::to_string(master_port_)});
    const std::string conf = dir_ + "/sentinel.conf";
    std::ofstream(conf) << "port " << sentinel_port_ << "\nbind 127.0.0.1\ndir " << dir_
                        << "\nlogfile " << dir_ << "/sentinel.log\nsentinel monitor rwg 127.0.0.1 "
                        << master_port_
                        << " 1\nsentinel down-after-milliseconds rwg 1000\n"
                           "sentinel failover-timeout rwg 5000\n";
    Spawn({"redis-server", conf, "--sentinel"});
    master_ = Client(absl::StrCat("127.0.0.1:", master_port_));
    replica_ = Client(absl::StrCat("127.0.0.1:", replica_port_));
    sentinel_ = Client(absl::StrCat("127.0.0.1:", sentinel_port_));
    // The sentinel knows the replica (it learns it from the master's INFO) before a failover
    // can promote it.
    ASSERT_TRUE(testing::Eventually(
        [&] {
          absl::StatusOr<RedisReply> r = sentinel_->Command({"SENTINEL", "replicas", "rwg"});
          return r.ok() && r->elements.size() == 1;
        },
        kFailover))
        << "the sentinel never saw the replica";
  }
  void TearDown() override {
    for (pid_t pid : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::system(absl::StrCat("rm -rf ", dir_).c_str());
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
  static std::unique_ptr<RedisClient> Client(const std::string& address) {
    RedisOptions o;
    o.address = address;
    auto c = std::make_unique<RedisClient>(o);
    testing::Eventually([&] { return c->Ping().ok(); });
    return c;
  }
  // SENTINEL FAILOVER, again while the sentinel refuses it (NOGOODSLAVE: it has not yet judged
  // the replica fit, a few seconds after it first saw it).
  bool Failover() {
    return testing::Eventually(
        [&] {
          return sentinel_->Command({"SENTINEL", "FAILOVER", "rwg"}).ok();
        },
        kFailover);
  }
  SentinelOptions Options() const {
    SentinelOptions o;
    o.sentinels = {
        absl::StrCat("127.0.0.1:", testing::FreeTcpPort()),  // nobody there: the next is asked
        absl::StrCat("127.0.0.1:", sentinel_port_)};
    o.master_name = "rwg";
    return o;
  }

  std::string dir_;
  int master_port_ = 0, replica_port_ = 0, sentinel_port_ = 0;
  std::vector<pid_t> pids_;
  std::unique_ptr<RedisClient> master_, replica_, sentinel_;
};

TEST_F(SentinelTest, FindsTheMasterAndFollowsAFailover) {
  prometheus::Registry registry;
  std::shared_ptr<MasterLocator> locator = MasterLocator::Start(Options(), &registry);
  RedisOptions ro;
  ro.address = "127.0.0.1:1";  // unused with a locator
  ro.locator = locator;
  RedisClient client(ro);

  ASSERT_TRUE(client.Command({"SET", "before", "1"}).ok());
  const MasterLocator::Master first = locator->Current();
  EXPECT_EQ(first.address, absl::StrCat("127.0.0.1:", master_port_));
  // The write went to the master, and reaches the replica.
  EXPECT_EQ(Value(*master_, "before"), "1");
  ASSERT_TRUE(testing::Eventually([&] { return Value(*replica_, "before") == "1"; }, kFailover));

  ASSERT_TRUE(Failover());
  ASSERT_TRUE(testing::Eventually(
      [&] { return locator->Current().address == absl::StrCat("127.0.0.1:", replica_port_); },
      kFailover))
      << "the locator did not follow the failover";
  EXPECT_GT(locator->Current().generation, first.generation);

  // The client's pooled connection to the old master (now a replica, which would answer
  // READONLY) is not used again: the write goes to the new master.
  absl::StatusOr<RedisReply> r = client.Command({"SET", "after", "2"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Value(*replica_, "after"), "2");
  EXPECT_EQ(Value(client, "before"), "1");
  EXPECT_TRUE(absl::StrContains(prometheus::TextSerializer().Serialize(registry.Collect()),
                                "rwg_redis_master_changes_total 1"));
}

TEST_F(SentinelTest, WritesGoToTheNewMasterOnceTheOldOneIsAReplica) {
  std::shared_ptr<MasterLocator> locator = MasterLocator::Start(Options(), nullptr);
  ASSERT_FALSE(locator->WaitForMaster(absl::Seconds(5)).address.empty());
  // Once the sentinel has turned the old master into a replica (it answers READONLY to
  // writes), a client made now writes to the new master.
  ASSERT_TRUE(Failover());
  ASSERT_TRUE(testing::Eventually(
      [&] {
        absl::StatusOr<RedisReply> role = master_->Command({"ROLE"});
        return role.ok() && !role->elements.empty() && role->elements[0].str == "slave";
      },
      kFailover));
  prometheus::Registry registry;
  prometheus::Counter& retries =
      prometheus::BuildCounter().Name("retries").Help("h").Register(registry).Add({});
  RedisOptions ro;
  ro.locator = locator;
  ro.retries = &retries;
  ro.failover_wait = absl::Seconds(10);
  RedisClient client(ro);
  absl::StatusOr<RedisReply> r = client.Command({"SET", "k", "v"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Value(*replica_, "k"), "v");
}

TEST_F(SentinelTest, NoSentinelAnsweringIsUnavailableNamingThem) {
  SentinelOptions o;
  o.sentinels = {absl::StrCat("127.0.0.1:", testing::FreeTcpPort())};
  o.master_name = "rwg";
  std::shared_ptr<MasterLocator> locator = MasterLocator::Start(o, nullptr);
  RedisOptions ro;
  ro.locator = locator;
  ro.connect_timeout = absl::Milliseconds(300);
  RedisClient client(ro);
  absl::StatusOr<RedisReply> r = client.Command({"PING"});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status()));
  EXPECT_TRUE(absl::StrContains(r.status().message(), "no master known")) << r.status();

  // A master name the sentinel does not monitor: no master either.
  SentinelOptions wrong = Options();
  wrong.master_name = "other";
  std::shared_ptr<MasterLocator> l2 = MasterLocator::Start(wrong, nullptr);
  EXPECT_TRUE(l2->WaitForMaster(absl::Milliseconds(800)).address.empty());
}

}  // namespace
}  // namespace rwg::core
