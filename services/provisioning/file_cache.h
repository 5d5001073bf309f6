// The store's files as the provisioning server opens them: OpenFile (a descriptor closed when
// the last response using it is written) and FileCache, which keeps small files in memory
// with their validators, checked against the file system (one fstatat) on every request so
// that a replaced or rewritten file is read again at once. No network: unit-tested in
// tests/provisioning/file_cache_test.cc.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/provisioning/http_rules.h"

namespace rwg::provisioning {

// An open file of the store, closed when the last response using it is written.
struct OpenFile {
  explicit OpenFile(int f) : fd(f) {}
  ~OpenFile();
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  int fd;
};

// A file's validators as stat gives them.
FileInfo InfoOf(const struct stat& st);

class FileCache {
 public:
  static constexpr uint64_t kMaxFile = uint64_t{256} * 1024;
  static constexpr uint64_t kMaxTotal = uint64_t{64} * 1024 * 1024;

  struct Entry {
    FileInfo info;
    std::string etag;
    std::shared_ptr<const std::string> data;  // the bytes, for a file kept in memory
    // Header lines every answer for the file carries (ETag, Last-Modified, Accept-Ranges,
    // Cache-Control), and its Content-Type line: rendered once.
    std::string validators;
    std::string type;
  };

  // A file of the store: its entry, and the file open for reading (set when it was opened
  // for this request; the body comes from it when the entry holds no data).
  struct Found {
    std::shared_ptr<const Entry> entry;
    std::shared_ptr<OpenFile> file;
  };

  // Files up to `max_file` bytes are kept, `max_total` bytes in all (past it, the cache
  // starts again empty).
  explicit FileCache(uint64_t max_file = kMaxFile, uint64_t max_total = kMaxTotal)
      : max_file_(max_file), max_total_(max_total) {}

  // The regular file `name` in the directory `store_fd`, from memory while it is unchanged,
  // else opened (and kept when small enough). A symbolic link is never followed
  // (AT_SYMLINK_NOFOLLOW / O_NOFOLLOW). nullopt when there is no such regular file.
  std::optional<Found> Open(int store_fd, const std::string& name);

  // The entry kept for `name` if its validators still match `now`; a stale one is dropped.
  std::shared_ptr<const Entry> Get(const std::string& name, const FileInfo& now);
  void Put(const std::string& name, const std::shared_ptr<const Entry>& e);

  // Bytes of the files kept.
  uint64_t total() const;

 private:
  const uint64_t max_file_;
  const uint64_t max_total_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rwg::provisioning
