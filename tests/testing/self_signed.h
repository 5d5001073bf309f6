// Self-signed P-256 certificates for the unit tests: made in memory, as PEM, or written to
// files, or put straight into an SSL_CTX.
#pragma once

#include <openssl/ssl.h>

#include <ctime>
#include <string>

namespace rwg::testing {

struct SelfSignedOptions {
  std::string cn = "localhost";
  bool dns_san = false;   // a subjectAltName DNS:<cn> (what TLS clients check a name against)
  time_t not_before = 0;  // Unix seconds; 0: now
  time_t not_after = 0;   // Unix seconds; 0: a day from now
  long serial = 1;        // NOLINT(google-runtime-int): OpenSSL's type
};

struct SelfSigned {
  std::string cert_pem;
  std::string key_pem;
  bool ok() const { return !cert_pem.empty() && !key_pem.empty(); }
};

// Empty PEMs if OpenSSL fails (ok() is false).
SelfSigned MakeSelfSigned(const SelfSignedOptions& options = {});
// Both PEMs to their files; false if one cannot be written.
bool WriteSelfSigned(const SelfSigned& pair, const std::string& cert_file,
                     const std::string& key_file);
// The pair as `ctx`'s certificate and key; false if OpenSSL refuses either.
bool UseSelfSigned(SSL_CTX* ctx, const SelfSigned& pair);

}  // namespace rwg::testing
