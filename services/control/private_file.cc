#include "services/control/private_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace rwg::control {
namespace {

absl::Status Failed(const std::string& path, const char* what, int err) {
  return absl::PermissionDeniedError(
      absl::StrCat("cannot write ", path, ": ", what, ": ", std::strerror(err)));
}

}  // namespace

absl::Status WritePrivateFile(const std::string& path, absl::string_view content) {
  std::string tmp = absl::StrCat(path, ".tmp-XXXXXX");
  // mkstemp creates the file with O_CREAT|O_EXCL and mode 0600 less the umask.
  const int fd = mkstemp(tmp.data());
  if (fd < 0) return Failed(path, "create", errno);
  auto fail = [&](const char* what) {
    const int err = errno;
    close(fd);
    unlink(tmp.c_str());
    return Failed(path, what, err);
  };
  if (fchmod(fd, 0600) != 0) return fail("chmod");
  while (!content.empty()) {
    const ssize_t n = write(fd, content.data(), content.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
  if (fsync(fd) != 0) return fail("fsync");
  if (close(fd) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return Failed(path, "close", err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return Failed(path, "rename", err);
  }
  return absl::OkStatus();
}

}  // namespace rwg::control
