// The gRPC certificate copies' directories: those of killed processes are removed, those of
// running ones never.
#include "services/core/grpc_identity.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

namespace rwg::core {
namespace {

class GrpcIdentityDirsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/rwg-grpc-dirs-XXXXXX";
    ASSERT_NE(mkdtemp(t), nullptr);
    base_ = t;
  }
  void TearDown() override {
    for (int fd : held_) close(fd);
    std::filesystem::remove_all(base_);
  }

  // A directory as a service makes it; `lock`: a lock file, held (as by a running process)
  // or not; `age_s`: seconds since it last changed.
  std::string Make(const std::string& name, bool lock, bool held, int age_s) {
    const std::string dir = base_ + "/" + name;
    EXPECT_EQ(mkdir(dir.c_str(), 0700), 0);
    EXPECT_EQ(mkdir((dir + "/v1").c_str(), 0700), 0);
    if (lock) {
      const int fd = open((dir + "/.lock").c_str(), O_RDWR | O_CREAT, 0600);
      EXPECT_GE(fd, 0);
      if (held) {
        EXPECT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
        held_.push_back(fd);
      } else {
        close(fd);
      }
    }
    const timespec when[2] = {{time(nullptr) - age_s, 0}, {time(nullptr) - age_s, 0}};
    EXPECT_EQ(utimensat(AT_FDCWD, dir.c_str(), when, 0), 0);
    return dir;
  }
  static bool Exists(const std::string& p) { return std::filesystem::exists(p); }

  std::string base_;
  std::vector<int> held_;
};

TEST_F(GrpcIdentityDirsTest, ADirectoryWhoseLockIsFreeIsRemoved) {
  const std::string dead = Make("rwg-grpc-tls-dead01", true, false, 120);
  EXPECT_EQ(GrpcIdentityFiles::RemoveAbandoned(base_), 1);
  EXPECT_FALSE(Exists(dead));
}

TEST_F(GrpcIdentityDirsTest, ADirectoryWhoseLockIsHeldStays) {
  const std::string live = Make("rwg-grpc-tls-live01", true, true, 3600);
  EXPECT_EQ(GrpcIdentityFiles::RemoveAbandoned(base_), 0);
  EXPECT_TRUE(Exists(live + "/v1"));
}

TEST_F(GrpcIdentityDirsTest, AYoungDirectoryStaysLockedOrNot) {
  // Its process may be between making it and locking it.
  const std::string young = Make("rwg-grpc-tls-young1", true, false, 0);
  const std::string bare = Make("rwg-grpc-tls-young2", false, false, 0);
  EXPECT_EQ(GrpcIdentityFiles::RemoveAbandoned(base_), 0);
  EXPECT_TRUE(Exists(young));
  EXPECT_TRUE(Exists(bare));
}

TEST_F(GrpcIdentityDirsTest, ADirectoryWithoutALockIsLeftAlone) {
  // A service of a version without locks may still be using it.
  const std::string old = Make("rwg-grpc-tls-old001", false, false, 3600);
  EXPECT_EQ(GrpcIdentityFiles::RemoveAbandoned(base_), 0);
  EXPECT_TRUE(Exists(old + "/v1"));
}

TEST_F(GrpcIdentityDirsTest, ALinkNamedLikeADirectoryIsNotFollowed) {
  char t[] = "/tmp/rwg-grpc-elsewhere-XXXXXX";
  ASSERT_NE(mkdtemp(t), nullptr);
  const std::string elsewhere = t;
  close(open((elsewhere + "/.lock").c_str(), O_RDWR | O_CREAT, 0600));
  const timespec old[2] = {{time(nullptr) - 120, 0}, {time(nullptr) - 120, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, elsewhere.c_str(), old, 0), 0);
  ASSERT_EQ(symlink(elsewhere.c_str(), (base_ + "/rwg-grpc-tls-link01").c_str()), 0);
  EXPECT_EQ(GrpcIdentityFiles::RemoveAbandoned(base_), 0);
  EXPECT_TRUE(Exists(elsewhere + "/.lock"));
  std::filesystem::remove_all(elsewhere);
}

TEST_F(GrpcIdentityDirsTest, OtherDirectoriesAndFilesAreLeftAlone) {
  const std::string other = Make("rwg-sip-tls-abc", true, false, 120);
  const std::string file = base_ + "/rwg-grpc-tls-file";
  close(open(file.c_str(), O_RDWR | O_CREAT, 0600));
  EXPECT_EQ(GrpcIdentityFiles::RemoveAbandoned(base_), 0);
  EXPECT_TRUE(Exists(other));
  EXPECT_TRUE(Exists(file));
}

TEST_F(GrpcIdentityDirsTest, AMissingBaseIsNothingToDo) {
  EXPECT_EQ(GrpcIdentityFiles::RemoveAbandoned(base_ + "/none"), 0);
}

}  // namespace
}  // namespace rwg::core
