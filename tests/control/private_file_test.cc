#include "services/control/private_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace rwg::control {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class PrivateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "rwg-private-XXXXXX").string();
    ASSERT_NE(mkdtemp(t.data()), nullptr);
    dir_ = t;
    old_umask_ = umask(0);  // the worst case: nothing masked
  }
  void TearDown() override {
    umask(old_umask_);
    fs::remove_all(dir_);
  }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static unsigned Mode(const fs::path& p) {
    struct stat st;
    EXPECT_EQ(lstat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
  }
  fs::path dir_;
  mode_t old_umask_ = 022;
};

TEST_F(PrivateFileTest, NewFileIs0600WhateverTheUmask) {
  const fs::path p = dir_ / "admin-password";
  ASSERT_TRUE(WritePrivateFile(p, "s3cret\n").ok());
  EXPECT_EQ(Mode(p), 0600u);
  EXPECT_EQ(Read(p), "s3cret\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1)
      << "no temporary file left";
}

TEST_F(PrivateFileTest, ReplacesAReadableFile) {
  const fs::path p = dir_ / "token";
  { std::ofstream(p) << "old"; }
  fs::permissions(p, fs::perms(0644));
  ASSERT_TRUE(WritePrivateFile(p, "new").ok());
  EXPECT_EQ(Mode(p), 0600u);
  EXPECT_EQ(Read(p), "new");
}

TEST_F(PrivateFileTest, DoesNotFollowASymlink) {
  const fs::path victim = dir_ / "victim";
  { std::ofstream(victim) << "untouched"; }
  fs::permissions(victim, fs::perms(0644));
  const fs::path p = dir_ / "token";
  fs::create_symlink(victim, p);
  ASSERT_TRUE(WritePrivateFile(p, "token").ok());
  EXPECT_FALSE(fs::is_symlink(p));
  EXPECT_EQ(Read(p), "token");
  EXPECT_EQ(Mode(p), 0600u);
  EXPECT_EQ(Read(victim), "untouched");
  EXPECT_EQ(Mode(victim), 0644u);
}

TEST_F(PrivateFileTest, ErrorNamesThePath) {
  const fs::path p = dir_ / "missing-dir" / "token";
  absl::Status s = WritePrivateFile(p, "x");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(p.string()));
}

}  // namespace
}  // namespace rwg::control
