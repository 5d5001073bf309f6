#include "services/core/grpc_identity.h"

#include <dirent.h>
#include <fcntl.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"

namespace rwg::core {

namespace {

// The first version's files carry this modification time and each next one a second more:
// gRPC compares modification times before and after reading a pair to catch a swap in between.
constexpr time_t kFirstStamp = 1'000'000'000;

absl::Status WriteFileAt(const std::string& path, const std::string& content, time_t stamp) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", path, ": ", strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("cannot write ", path, ": ", strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  const timespec times[2] = {{stamp, 0}, {stamp, 0}};
  (void)futimens(fd, times);
  close(fd);
  return absl::OkStatus();
}

std::string PrivateBase() {
  struct stat st = {};
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
    return "/dev/shm";
  }
  const char* tmp = getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
}

constexpr char kDirPrefix[] = "rwg-grpc-tls-";
constexpr char kLockName[] = ".lock";

}  // namespace

int GrpcIdentityFiles::RemoveAbandoned(const std::string& base) {
  DIR* d = opendir(base.c_str());
  if (d == nullptr) return 0;
  int removed = 0;
  const time_t now = time(nullptr);
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(kDirPrefix, 0) != 0) continue;
    const std::string dir = absl::StrCat(base, "/", name);
    struct stat st = {};
    if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) continue;
    const int fd = open((dir + "/" + kLockName).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    // Its process would hold the lock; it takes it an instant after making the directory,
    // and a directory that young is left alone. One without a lock file is being made, or is
    // a service's of a version without locks, maybe still running: left alone too.
    const bool abandoned = fd >= 0 && now - st.st_mtime > 10 && flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (abandoned) {
      std::error_code ec;
      if (std::filesystem::remove_all(dir, ec) > 0 && !ec) ++removed;
    }
    if (fd >= 0) close(fd);
  }
  closedir(d);
  if (removed > 0) {
    log::Info("removed certificate copies left by services that were killed",
              {{"directory", base}, {"count", std::to_string(removed)}});
  }
  return removed;
}

absl::StatusOr<std::unique_ptr<GrpcIdentityFiles>> GrpcIdentityFiles::Create(
    CertificateWatcher& watcher) {
  const std::string base = PrivateBase();
  RemoveAbandoned(base);
  std::string templ = absl::StrCat(base, "/", kDirPrefix, "XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError(absl::StrCat(
        "cannot create a private directory for the gRPC certificate: ", strerror(errno)));
  }
  const int lock_fd =
      open((templ + "/" + kLockName).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (lock_fd >= 0) close(lock_fd);
    std::error_code ec;
    std::filesystem::remove_all(templ, ec);
    return absl::InternalError(
        absl::StrCat("cannot lock the gRPC certificate's directory: ", strerror(e)));
  }
  std::unique_ptr<GrpcIdentityFiles> files(new GrpcIdentityFiles(templ, lock_fd));
  {
    absl::MutexLock lock(&files->mu_);
    absl::Status s = files->Write(*watcher.Current());
    if (!s.ok()) return s;
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files->dir_ + "/current/tls.key", files->dir_ + "/current/tls.crt",
      /*refresh_interval_sec=*/1);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  files->credentials_ = grpc::experimental::TlsServerCredentials(options);
  GrpcIdentityFiles* p = files.get();
  watcher.OnChange([p](const std::shared_ptr<const TlsIdentity>& id) {
    absl::MutexLock lock(&p->mu_);
    absl::Status s = p->Write(*id);
    if (!s.ok()) {
      log::Error("cannot hand the new certificate to gRPC; the one in use stays",
                 {{"certificate", "grpc"}, {"error", std::string(s.message())}});
    }
  });
  return files;
}

absl::Status GrpcIdentityFiles::Write(const TlsIdentity& identity) {
  const int version = ++version_;
  const std::string name = absl::StrCat("v", version);
  const std::string vdir = absl::StrCat(dir_, "/", name);
  if (mkdir(vdir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("cannot create ", vdir, ": ", strerror(errno)));
  }
  const time_t stamp = kFirstStamp + version;
  absl::Status s = WriteFileAt(vdir + "/tls.key", identity.key_pem(), stamp);
  if (s.ok()) s = WriteFileAt(vdir + "/tls.crt", identity.cert_pem(), stamp);
  const std::string link = absl::StrCat(dir_, "/current.", version);
  if (s.ok() && symlink(name.c_str(), link.c_str()) != 0) {
    s = absl::InternalError(absl::StrCat("cannot link ", link, ": ", strerror(errno)));
  }
  if (s.ok() && rename(link.c_str(), (dir_ + "/current").c_str()) != 0) {
    s = absl::InternalError(absl::StrCat("cannot switch to ", vdir, ": ", strerror(errno)));
  }
  std::error_code ec;
  if (!s.ok()) {
    std::filesystem::remove_all(vdir, ec);
    std::filesystem::remove(link, ec);
    return s;
  }
  // gRPC may still be reading the previous pair; the one before it is done with.
  if (version > 2) std::filesystem::remove_all(absl::StrCat(dir_, "/v", version - 2), ec);
  return absl::OkStatus();
}

GrpcIdentityFiles::~GrpcIdentityFiles() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  close(lock_fd_);
}

}  // namespace rwg::core
