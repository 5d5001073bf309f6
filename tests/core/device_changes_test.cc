// ReadDeviceChanges against a private redis-server: the changes after a revision, oldest
// first, read with the revision; pages end at a revision's end; what is no longer kept is
// said. (control's writes of the log are tested in tests/control/admin_service_test.cc.)
#include "services/core/device_changes.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/core/keys.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::core {
namespace {

class DeviceChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
  }

  // One revision writing `users` (as control's scripts do).
  void Write(const std::vector<std::string>& users, const std::string& op = "updated",
             bool pw = false) {
    absl::StatusOr<RedisReply> rev = redis_->client().Command({"INCR", kDevicesRevisionKey});
    ASSERT_TRUE(rev.ok());
    for (const std::string& u : users) {
      const std::string member =
          absl::StrCat("{\"rev\":", rev->integer, ",\"op\":\"", op, "\",\"user\":\"", u,
                       "\",\"pw\":", pw ? "true" : "false", "}");
      ASSERT_TRUE(redis_->client()
                      .Command({"ZADD", kDeviceChangesKey, std::to_string(rev->integer), member})
                      .ok());
    }
  }

  DeviceChangeLog Read(int64_t since, size_t limit) {
    absl::StatusOr<DeviceChangeLog> log = ReadDeviceChanges(redis_->client(), since, limit);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *log : DeviceChangeLog{};
  }

  static std::vector<std::string> Users(const DeviceChangeLog& log) {
    std::vector<std::string> out;
    for (const DeviceChange& c : log.changes) {
      out.push_back(absl::StrCat(c.revision, ":", c.set_username));
    }
    return out;
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
};

TEST_F(DeviceChangesTest, NothingYet) {
  DeviceChangeLog log = Read(0, 100);
  EXPECT_EQ(log.revision, 0);
  EXPECT_EQ(log.oldest, 0);
  EXPECT_TRUE(log.changes.empty());
  EXPECT_FALSE(log.more);
  EXPECT_FALSE(log.lost);
}

TEST_F(DeviceChangesTest, ChangesAfterARevisionOldestFirst) {
  Write({"1001"}, "created", true);
  Write({"1002"}, "created", true);
  Write({"1001"}, "updated", true);
  Write({"1002"}, "deleted");
  DeviceChangeLog log = Read(0, 100);
  EXPECT_EQ(log.revision, 4);
  EXPECT_EQ(log.oldest, 1);
  EXPECT_EQ(Users(log), (std::vector<std::string>{"1:1001", "2:1002", "3:1001", "4:1002"}));
  EXPECT_EQ(log.changes[2].op, "updated");
  EXPECT_TRUE(log.changes[2].set_password_changed);
  EXPECT_EQ(log.changes[3].op, "deleted");
  EXPECT_FALSE(log.changes[3].set_password_changed);
  EXPECT_FALSE(log.more);
  EXPECT_FALSE(log.lost);

  log = Read(2, 100);
  EXPECT_EQ(Users(log), (std::vector<std::string>{"3:1001", "4:1002"}));
  log = Read(4, 100);
  EXPECT_TRUE(log.changes.empty());
  EXPECT_FALSE(log.lost);
}

TEST_F(DeviceChangesTest, PagesEndAtTheEndOfARevision) {
  Write({"1001"});
  Write({"1002", "1003", "1004"});  // an import of three
  Write({"1005"});
  DeviceChangeLog log = Read(0, 2);
  EXPECT_EQ(Users(log), (std::vector<std::string>{"1:1001"}));
  EXPECT_TRUE(log.more);
  log = Read(1, 2);  // one revision alone is more than the limit: all of it
  EXPECT_EQ(Users(log), (std::vector<std::string>{"2:1002", "2:1003", "2:1004"}));
  EXPECT_TRUE(log.more);
  log = Read(2, 2);
  EXPECT_EQ(Users(log), (std::vector<std::string>{"3:1005"}));
  EXPECT_FALSE(log.more);
  log = Read(0, 4);
  EXPECT_EQ(Users(log), (std::vector<std::string>{"1:1001", "2:1002", "2:1003", "2:1004"}));
  EXPECT_TRUE(log.more);
  log = Read(3, 1);
  EXPECT_FALSE(log.more);
}

TEST_F(DeviceChangesTest, WhatIsNoLongerKeptIsLost) {
  Write({"1001"});
  Write({"1002"});
  Write({"1003"});
  ASSERT_TRUE(redis_->client().Command({"ZREMRANGEBYSCORE", kDeviceChangesKey, "1", "1"}).ok());
  EXPECT_FALSE(Read(1, 10).lost);
  DeviceChangeLog log = Read(0, 10);
  EXPECT_TRUE(log.lost);
  EXPECT_EQ(log.oldest, 2);
  // Redis lost everything: the reader is ahead of the revision.
  log = Read(7, 10);
  EXPECT_TRUE(log.lost);
  // Revisions made before the log was kept.
  ASSERT_TRUE(redis_->client().Command({"DEL", kDeviceChangesKey}).ok());
  EXPECT_TRUE(Read(1, 10).lost);
  EXPECT_FALSE(Read(3, 10).lost);
}

TEST_F(DeviceChangesTest, ADamagedEntryIsDataLossNamingTheField) {
  Write({"1001"});
  ASSERT_TRUE(redis_->client()
                  .Command({"ZADD", kDeviceChangesKey, "1", "{\"rev\":1,\"op\":\"x\",\"user\":2}"})
                  .ok());
  absl::StatusOr<DeviceChangeLog> log = ReadDeviceChanges(redis_->client(), 0, 10);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(log.status().message().find("user"), std::string::npos) << log.status();
}

}  // namespace
}  // namespace rwg::core
