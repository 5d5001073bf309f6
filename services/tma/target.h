// Where a deployment writes files: a download server (docs/tma.md). Implementations: rwg's
// provisioning store over rwg.provisioning.v1.FileStore (store_target.cc) and FTP / FTPS
// through libcurl (ftp_target.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rwg::tma {

struct RemoteFile {
  std::string name;
  uint64_t size = 0;
};

// One connection's worth of work against one server; not thread-safe (one per worker).
// Errors: UNAVAILABLE when the server cannot be reached or the connection broke (worth a
// retry), PERMISSION_DENIED for a refused login or write, RESOURCE_EXHAUSTED for a full disk
// or quota, INVALID_ARGUMENT for a name the server refuses (or one outside [A-Za-z0-9._-],
// starting with '.', refused before any network), FAILED_PRECONDITION for a TLS certificate
// that does not verify or a server without TLS when TLS is asked; the message says what the
// server answered, never the password.
class Target {
 public:
  virtual ~Target() = default;
  // Writes `content` as `name` in the server's directory, never half: the file is written
  // under a temporary name ("<name>.rwg-tmp-<random>") and renamed into place, or by the
  // store's atomic put. On failure the old file, if any, is still there, whole, and no
  // temporary file is left behind where the server lets it be removed.
  virtual absl::Status Put(const std::string& name, std::string_view content) = 0;
  // The file's content; NOT_FOUND when absent.
  virtual absl::StatusOr<std::string> Get(const std::string& name) = 0;
  // OK when the file was removed or was not there.
  virtual absl::Status Delete(const std::string& name) = 0;
  // The files of the directory (regular files only, with sizes).
  virtual absl::StatusOr<std::vector<RemoteFile>> List() = 0;
};

struct FtpTargetOptions {
  std::string host;
  int port = 21;
  std::string directory = "/";  // absolute, or from the login directory when not starting '/'
  std::string login = "mngt_ftp_67xxi";
  std::string password;
  bool tls = false;     // explicit TLS (AUTH TLS), control and data channels protected
  std::string ca_file;  // PEM; the system's CAs when empty; the certificate is always verified
  // false (default): TLS 1.2 only; true: TLS 1.2 or 1.3. A TLS 1.3 server sends session
  // tickets on each data connection, which libcurl 7.88 does not read on an upload: closing
  // it then resets the connection and the server loses the upload's tail (curl issue #6149;
  // every upload of 300 KB to pyftpdlib with TLS 1.3 was cut). The stored size is checked
  // before the rename, so such a put fails UNAVAILABLE and never leaves half a file, but it
  // keeps failing: TLS 1.2 is the default until the library reads the tickets.
  bool tls13 = false;
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration transfer_timeout = absl::Seconds(120);  // per file
};

// Keeps the control connection open across calls (libcurl's connection reuse).
std::unique_ptr<Target> NewFtpTarget(const FtpTargetOptions& options);

struct StoreTargetOptions {
  std::string address;  // provisioning's gRPC address, host:port
  std::string token;    // the store's API token
  std::string ca_file;  // TLS with this CA when set; plaintext otherwise
  absl::Duration timeout = absl::Seconds(30);
};
std::unique_ptr<Target> NewStoreTarget(const StoreTargetOptions& options);

}  // namespace rwg::tma
