// RedisClient against a real redis-server started by the test.
#include "services/core/redis.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/core/calls.h"

extern char** environ;

namespace rwg::core {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreePort();
    char dir[] = "/tmp/rwg-redis-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    const std::string port = std::to_string(port_);
    const char* argv[] = {"redis-server", "--port", port.c_str(), "--bind",
                          "127.0.0.1",    "--save", "",           "--appendonly",
                          "no",           "--dir",  dir_.c_str(), nullptr};
    ASSERT_EQ(
        posix_spawnp(&pid_, "redis-server", nullptr, nullptr, const_cast<char**>(argv), environ), 0)
        << "redis-server not installed";
    RedisOptions o;
    o.address = absl::StrCat("127.0.0.1:", port_);
    client_ = std::make_unique<RedisClient>(o);
    for (int i = 0; i < 200 && !client_->Ping().ok(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_TRUE(client_->Ping().ok());
  }
  void TearDown() override {
    client_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  int port_ = 0;
  pid_t pid_ = -1;
  std::string dir_;
  std::unique_ptr<RedisClient> client_;
};

TEST_F(RedisTest, PipelineRunsEveryCommandAndReturnsTheRepliesInOrder) {
  absl::StatusOr<std::vector<RedisReply>> r =
      client_->Pipeline({{"SET", "k", "v"}, {"SADD", "s", "a", "b"}, {"GET", "k"}, {"GET", "x"}});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].str, "OK");
  EXPECT_EQ((*r)[1].integer, 2);
  EXPECT_EQ((*r)[2].str, "v");
  EXPECT_TRUE((*r)[3].is_nil());
  absl::StatusOr<RedisReply> members = client_->Command({"SCARD", "s"});
  ASSERT_TRUE(members.ok());
  EXPECT_EQ(members->integer, 2);
}

TEST_F(RedisTest, AnErrorReplyFailsThePipelineAndTheConnectionStaysInStep) {
  ASSERT_TRUE(client_->Command({"SET", "text", "abc"}).ok());
  absl::StatusOr<std::vector<RedisReply>> r =
      client_->Pipeline({{"SET", "a", "1"}, {"INCR", "text"}, {"SET", "b", "2"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("not an integer"), std::string::npos) << r.status();
  // The commands around the failing one ran (Redis pipelines are not transactions), and the
  // pooled connection answers the next command with its own reply, not a stale one.
  absl::StatusOr<RedisReply> b = client_->Command({"GET", "b"});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->str, "2");
  absl::StatusOr<RedisReply> a = client_->Command({"GET", "a"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->str, "1");
}

TEST_F(RedisTest, PipelineToARedisThatIsGoneIsUnavailable) {
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  absl::StatusOr<std::vector<RedisReply>> r = client_->Pipeline({{"SET", "k", "v"}, {"GET", "k"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find(absl::StrCat("127.0.0.1:", port_)), std::string::npos);
}

TEST_F(RedisTest, CallRecordsAreReadInOrderAcrossBatchesWithEndedCallsNil) {
  std::vector<std::string> ids;
  for (int i = 0; i < 600; ++i) {  // more than two batches
    ids.push_back(absl::StrCat("c", i));
    if (i % 7 != 0) {
      ASSERT_TRUE(client_->Command({"SET", CallKey(ids.back()), ids.back()}).ok());
    }
  }
  absl::StatusOr<std::vector<RedisReply>> r = ReadCallRecords(*client_, ids);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i % 7 == 0) {
      EXPECT_TRUE((*r)[i].is_nil()) << i;
    } else {
      EXPECT_EQ((*r)[i].str, ids[i]);
    }
  }
  EXPECT_TRUE(ReadCallRecords(*client_, {})->empty());
}

}  // namespace
}  // namespace rwg::core
