// Cryptographic helpers: secrets at rest (AES-256-GCM), admin password hashing (scrypt),
// constant-time comparison and digests. All on OpenSSL.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/core/random.h"

namespace rwg::core {

// Compares two secrets in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

std::string Sha256Hex(absl::string_view data);

// Encrypts small secrets (device passwords, the hash key) for storage. The output is text:
// "v1:" + base64(nonce || ciphertext || tag). `context` is authenticated but not stored, so a
// ciphertext copied to another record (another context) fails to decrypt.
class SecretBox {
 public:
  // `key` is 32 raw bytes.
  static absl::StatusOr<std::unique_ptr<SecretBox>> Create(absl::string_view key, Random& rng);
  // Reads a key file holding 64 hex digits (surrounding whitespace ignored) or 32 raw bytes.
  static absl::StatusOr<std::string> LoadKeyFile(const std::string& path);

  std::string Seal(absl::string_view plaintext, absl::string_view context) const;
  absl::StatusOr<std::string> Open(absl::string_view sealed, absl::string_view context) const;

 private:
  SecretBox(std::string key, Random& rng) : key_(std::move(key)), rng_(rng) {}
  std::string key_;
  Random& rng_;
};

// Password hashing for admin accounts: scrypt (N=2^15, r=8, p=1), random 16-byte salt,
// encoded as "scrypt$<logN>$<r>$<p>$<salt b64>$<hash b64>".
struct ScryptParams {
  int log_n = 15;
  int r = 8;
  int p = 1;
};
absl::StatusOr<std::string> HashPassword(absl::string_view password, Random& rng,
                                         ScryptParams params = {});
// True when `password` matches `encoded`; false for a mismatch or a malformed hash.
bool VerifyPassword(absl::string_view password, absl::string_view encoded);

}  // namespace rwg::core
