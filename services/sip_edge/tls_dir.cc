#include "services/sip_edge/tls_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/core/server.h"

namespace rwg::sip_edge {
namespace {

// Debian's bundle of the system's trusted CAs (package ca-certificates).
constexpr char kSystemCaFile[] = "/etc/ssl/certs/ca-certificates.crt";

}  // namespace

absl::StatusOr<std::unique_ptr<SofiaTlsDir>> SofiaTlsDir::Create(const std::string& cert_file,
                                                                 const std::string& key_file,
                                                                 const std::string& ca_file) {
  absl::StatusOr<core::TlsMaterial> tls =
      core::LoadTlsMaterial("sip-tls-cert-file", cert_file, "sip-tls-key-file", key_file);
  if (!tls.ok()) return tls.status();
  absl::StatusOr<std::string> ca = core::ReadFile(ca_file.empty() ? kSystemCaFile : ca_file);
  if (!ca.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        ca_file.empty() ? absl::StrCat("the system's trusted CAs (", kSystemCaFile, ")")
                        : std::string("icp-ca-file"),
        ": ", ca.status().message()));
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/rwg-sip-tls-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a directory for TLS files under ",
                                            tmpl.substr(0, tmpl.rfind('/'))));
  }
  std::unique_ptr<SofiaTlsDir> dir(new SofiaTlsDir(tmpl));
  {
    std::ofstream agent(dir->path_ + "/agent.pem", std::ios::trunc);
    agent << tls->key_pem << "\n" << tls->cert_pem;
    std::ofstream cafile(dir->path_ + "/cafile.pem", std::ios::trunc);
    cafile << *ca;
  }
  chmod((dir->path_ + "/agent.pem").c_str(), 0600);
  return dir;
}

SofiaTlsDir::~SofiaTlsDir() {
  std::remove((path_ + "/agent.pem").c_str());
  std::remove((path_ + "/cafile.pem").c_str());
  rmdir(path_.c_str());
}

}  // namespace rwg::sip_edge
