// The gRPC port's certificate, rotated without a restart.
//
// gRPC reads its identity from files through its own file watcher, which gives up the pair in
// use when the files it reads are bad. So the files gRPC reads are not the operator's: they are
// validated copies the CertificateWatcher writes, in a private 0700 directory (under /dev/shm
// when it exists: the key stays in memory), swapped as a whole through a symbolic link so that
// gRPC never reads a key of one pair and the certificate of another. A refused pair is never
// copied, so the pair in use stays.
//
// The directory holds a lock file its process keeps locked (flock) for as long as it runs. A
// process killed without its destructor (SIGKILL, OOM) leaves its directory behind, unlocked:
// the next service to start on the same /dev/shm removes it (a Kubernetes pod keeps its
// /dev/shm across a container's restarts).
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/core/tls_identity.h"

namespace rwg::core {

class GrpcIdentityFiles {
 public:
  // Writes the watcher's pair, follows its changes, and returns credentials that present the
  // pair of the moment on each new connection (TLS 1.2+, no client certificate asked for).
  static absl::StatusOr<std::unique_ptr<GrpcIdentityFiles>> Create(CertificateWatcher& watcher);
  ~GrpcIdentityFiles();  // removes the directory
  // Removes the directories under `base` left by processes that are gone (their lock file not
  // locked). Returns how many.
  static int RemoveAbandoned(const std::string& base);
  GrpcIdentityFiles(const GrpcIdentityFiles&) = delete;
  GrpcIdentityFiles& operator=(const GrpcIdentityFiles&) = delete;

  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }
  const std::string& dir() const { return dir_; }

 private:
  GrpcIdentityFiles(std::string dir, int lock_fd) : dir_(std::move(dir)), lock_fd_(lock_fd) {}
  absl::Status Write(const TlsIdentity& identity) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const int lock_fd_;  // flock'ed while this process runs
  absl::Mutex mu_;
  int version_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

}  // namespace rwg::core
