// A private FTP / FTPS server for a unit test: pyftpdlib (tests/testing/scratch_ftp.py, run by
// Debian's python3 with python3-pyftpdlib and python3-openssl) on 127.0.0.1 and a port of its
// own, serving a directory of its own to one user; killed and removed with the object (and
// gone with the test process, however that ends). The
// download targets' unit tests run against it rather than an imitation of an FTP server.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace rwg::testing {

struct ScratchFtpOptions {
  // Explicit TLS (AUTH TLS) required on the control and data channels, with a self-signed
  // certificate made by openssl at start, for `cert_name` (an IP address or a DNS name).
  bool tls = false;
  std::string cert_name = "127.0.0.1";
  // TLS 1.2 only unless set: a TLS 1.3 server sends session tickets on each data connection,
  // an upload's client never reads them, its close then resets the connection and the server
  // may lose the upload's last bytes (what the FTP target's size check is for).
  bool tls13 = false;
  bool mlsd = true;            // false: MLSD is answered 500, only LIST lists
  uint64_t disk_bytes = 0;     // the directory's files hold at most this (552 beyond); 0: no limit
  bool refuse_rename = false;  // RNTO answered 550
  uint64_t upload_bytes_per_second = 0;  // 0: as fast as it goes
};

class ScratchFtp {
 public:
  // FailedPrecondition when python3-pyftpdlib (or openssl) is missing or the server does not
  // start within 10 s.
  static absl::StatusOr<std::unique_ptr<ScratchFtp>> Start(const ScratchFtpOptions& options = {});
  ~ScratchFtp();
  ScratchFtp(const ScratchFtp&) = delete;
  ScratchFtp& operator=(const ScratchFtp&) = delete;

  int port() const { return port_; }
  const std::string& user() const { return user_; }
  const std::string& password() const { return password_; }
  // The directory served as the user's "/".
  const std::string& files_dir() const { return files_dir_; }
  // With tls: the server's certificate (PEM), the CA that verifies it, and another
  // self-signed certificate that does not.
  const std::string& ca_file() const { return ca_file_; }
  const std::string& other_ca_file() const { return other_ca_file_; }
  // Control connections accepted so far.
  int Connections() const;
  // Stops the server (a test of the server going away); the directory stays until destruction.
  void Kill();

 private:
  ScratchFtp() = default;

  pid_t pid_ = -1;
  int stdin_ = -1;  // the server's stdin: it exits when this closes
  int port_ = 0;
  std::string dir_;
  std::string files_dir_;
  std::string user_ = "mngt_ftp_67xxi";
  std::string password_;
  std::string ca_file_;
  std::string other_ca_file_;
};

}  // namespace rwg::testing
