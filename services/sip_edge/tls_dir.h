// sofia-sip reads its TLS identity from a directory: agent.pem (key and chain, for the phones'
// listener and as rwg's client certificate toward the iPBX) and cafile.pem (what the iPBX's
// certificate must chain to: icp-ca-file, else the system's trusted CAs).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace rwg::sip_edge {

// A private temporary directory (0700, under $TMPDIR or /tmp) holding both files, removed with
// the object. sofia-sip reads them when it creates its transports, so the service removes the
// directory as soon as the edge has started: the private key stays on disk only during start.
class SofiaTlsDir {
 public:
  // Errors name the option of the file that cannot be read.
  static absl::StatusOr<std::unique_ptr<SofiaTlsDir>> Create(const std::string& cert_file,
                                                             const std::string& key_file,
                                                             const std::string& ca_file);
  ~SofiaTlsDir();
  SofiaTlsDir(const SofiaTlsDir&) = delete;
  SofiaTlsDir& operator=(const SofiaTlsDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  explicit SofiaTlsDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace rwg::sip_edge
