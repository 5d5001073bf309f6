#include "services/provisioning/file_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace rwg::provisioning {
namespace {

class FileCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("rwg-file-cache-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directory(dir_);
    store_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(store_fd_, 0);
  }
  void TearDown() override {
    if (store_fd_ >= 0) ::close(store_fd_);
    std::filesystem::remove_all(dir_);
  }
  void Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary | std::ios::trunc) << content;
  }
  // Sets the file's modification time (whole seconds since the epoch).
  void Touch(const std::string& name, int64_t seconds) {
    timespec times[2] = {{seconds, 0}, {seconds, 0}};
    ASSERT_EQ(::utimensat(store_fd_, name.c_str(), times, 0), 0);
  }

  std::filesystem::path dir_;
  int store_fd_ = -1;
};

TEST_F(FileCacheTest, SmallFileIsKeptWithItsValidators) {
  Write("aastra.cfg", "sip line1: 100\n");
  Touch("aastra.cfg", 1700000000);
  FileCache cache;
  auto first = cache.Open(store_fd_, "aastra.cfg");
  ASSERT_TRUE(first.has_value());
  ASSERT_NE(first->entry->data, nullptr);
  EXPECT_EQ(*first->entry->data, "sip line1: 100\n");
  EXPECT_EQ(first->entry->info.size, 15u);
  EXPECT_EQ(first->entry->info.modified, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(first->entry->etag, ETagFor(first->entry->info));
  EXPECT_NE(first->entry->validators.find("ETag: " + first->entry->etag + "\r\n"),
            std::string::npos);
  EXPECT_NE(first->entry->validators.find("Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n"),
            std::string::npos);
  EXPECT_NE(first->entry->validators.find("Cache-Control: no-cache\r\n"), std::string::npos);
  EXPECT_EQ(first->entry->type,
            std::string("Content-Type: ") + ContentTypeFor("aastra.cfg") + "\r\n");
  EXPECT_EQ(cache.total(), 15u);

  // Unchanged: the same entry, from memory, no file opened.
  auto second = cache.Open(store_fd_, "aastra.cfg");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->entry, first->entry);
  EXPECT_EQ(second->file, nullptr);
}

TEST_F(FileCacheTest, RewrittenFileIsReadAgain) {
  Write("0011223344AA.cfg", "old\n");
  Touch("0011223344AA.cfg", 1700000000);
  FileCache cache;
  auto before = cache.Open(store_fd_, "0011223344AA.cfg");
  ASSERT_TRUE(before.has_value());
  // Same size, new content and date.
  Write("0011223344AA.cfg", "new\n");
  Touch("0011223344AA.cfg", 1700000100);
  auto after = cache.Open(store_fd_, "0011223344AA.cfg");
  ASSERT_TRUE(after.has_value());
  EXPECT_NE(after->entry, before->entry);
  ASSERT_NE(after->entry->data, nullptr);
  EXPECT_EQ(*after->entry->data, "new\n");
  EXPECT_NE(after->entry->etag, before->entry->etag);
  EXPECT_EQ(cache.total(), 4u);
}

TEST_F(FileCacheTest, ReplacedFileIsReadAgain) {
  Write("startup.cfg", "one\n");
  Touch("startup.cfg", 1700000000);
  FileCache cache;
  auto before = cache.Open(store_fd_, "startup.cfg");
  ASSERT_TRUE(before.has_value());
  // Replaced by rename (another inode), same size and date.
  Write("startup.tmp", "two\n");
  Touch("startup.tmp", 1700000000);
  std::filesystem::rename(dir_ / "startup.tmp", dir_ / "startup.cfg");
  auto after = cache.Open(store_fd_, "startup.cfg");
  ASSERT_TRUE(after.has_value());
  ASSERT_NE(after->entry->data, nullptr);
  EXPECT_EQ(*after->entry->data, "two\n");
}

TEST_F(FileCacheTest, LargeFileIsServedFromTheFile) {
  Write("firmware.st", std::string(100, 'x'));
  FileCache cache(/*max_file=*/64, /*max_total=*/1024);
  auto found = cache.Open(store_fd_, "firmware.st");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->entry->data, nullptr);
  ASSERT_NE(found->file, nullptr);
  EXPECT_GE(found->file->fd, 0);
  EXPECT_EQ(found->entry->info.size, 100u);
  EXPECT_EQ(cache.total(), 0u);
  // Not kept: opened again the next time.
  auto again = cache.Open(store_fd_, "firmware.st");
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(again->file, nullptr);
}

TEST_F(FileCacheTest, SizeIsBounded) {
  FileCache cache(/*max_file=*/64, /*max_total=*/100);
  for (int i = 0; i < 20; ++i) {
    const std::string name = "f" + std::to_string(i) + ".cfg";
    Write(name, std::string(40, 'a'));
    ASSERT_TRUE(cache.Open(store_fd_, name).has_value());
    EXPECT_LE(cache.total(), 100u);
  }
  EXPECT_GT(cache.total(), 0u);
}

TEST_F(FileCacheTest, OnlyRegularFilesOfTheStore) {
  FileCache cache;
  EXPECT_FALSE(cache.Open(store_fd_, "missing.cfg").has_value());
  std::filesystem::create_directory(dir_ / "sub");
  EXPECT_FALSE(cache.Open(store_fd_, "sub").has_value());
  Write("target.cfg", "secret\n");
  std::filesystem::create_symlink(dir_ / "target.cfg", dir_ / "link.cfg");
  EXPECT_FALSE(cache.Open(store_fd_, "link.cfg").has_value());
}

TEST_F(FileCacheTest, DeletedFileIsGone) {
  Write("aastra.cfg", "x\n");
  FileCache cache;
  ASSERT_TRUE(cache.Open(store_fd_, "aastra.cfg").has_value());
  std::filesystem::remove(dir_ / "aastra.cfg");
  EXPECT_FALSE(cache.Open(store_fd_, "aastra.cfg").has_value());
}

}  // namespace
}  // namespace rwg::provisioning
