// The store's open files and the in-memory cache of its small files (see file_cache.h).
#include "services/provisioning/file_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace rwg::provisioning {

OpenFile::~OpenFile() {
  if (fd >= 0) ::close(fd);
}

FileInfo InfoOf(const struct stat& st) {
  FileInfo info;
  info.size = static_cast<uint64_t>(st.st_size);
  info.inode = static_cast<uint64_t>(st.st_ino);
  info.modified = absl::TimeFromTimespec(st.st_mtim);
  return info;
}

std::optional<FileCache::Found> FileCache::Open(int store_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(store_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  Found found;
  found.entry = Get(name, InfoOf(st));
  if (found.entry != nullptr) return found;
  const int fd = ::openat(store_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  found.file = std::make_shared<OpenFile>(fd);
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  auto e = std::make_shared<Entry>();
  e->info = InfoOf(st);
  e->etag = ETagFor(e->info);
  e->validators = absl::StrCat("ETag: ", e->etag, "\r\nLast-Modified: ", HttpDate(e->info.modified),
                               "\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\n");
  e->type = absl::StrCat("Content-Type: ", ContentTypeFor(name), "\r\n");
  if (e->info.size <= max_file_) {
    auto data = std::make_shared<std::string>(e->info.size, '\0');
    if (::pread(fd, data->data(), data->size(), 0) == static_cast<ssize_t>(data->size())) {
      e->data = std::move(data);
      Put(name, e);
    }
  }
  found.entry = std::move(e);
  return found;
}

std::shared_ptr<const FileCache::Entry> FileCache::Get(const std::string& name,
                                                       const FileInfo& now) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return nullptr;
  const FileInfo& was = it->second->info;
  if (was.inode != now.inode || was.size != now.size || was.modified != now.modified) {
    total_ -= it->second->info.size;
    entries_.erase(it);
    return nullptr;
  }
  return it->second;
}

void FileCache::Put(const std::string& name, const std::shared_ptr<const Entry>& e) {
  absl::MutexLock lock(&mu_);
  if (total_ + e->info.size > max_total_) {
    entries_.clear();
    total_ = 0;
  }
  auto [it, added] = entries_.try_emplace(name, e);
  if (added) total_ += e->info.size;
}

uint64_t FileCache::total() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

}  // namespace rwg::provisioning
