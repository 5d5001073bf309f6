#include "services/core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rwg::core {
namespace {

constexpr size_t kKeySize = 32;
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
constexpr absl::string_view kSealPrefix = "v1:";

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

const unsigned char* U(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

absl::StatusOr<std::string> Scrypt(absl::string_view password, absl::string_view salt,
                                   const ScryptParams& p, size_t out_len) {
  std::string out(out_len, '\0');
  const uint64_t n = uint64_t{1} << p.log_n;
  // Memory needed is 128*r*N plus slack.
  const uint64_t max_mem = 128ull * p.r * n * static_cast<uint64_t>(p.p) + (64ull << 20);
  if (EVP_PBE_scrypt(password.data(), password.size(), U(salt), salt.size(), n, p.r, p.p, max_mem,
                     reinterpret_cast<unsigned char*>(out.data()), out.size()) != 1) {
    return absl::InternalError("scrypt failed");
  }
  return out;
}

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(U(data), data.size(), md);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), sizeof(md)));
}

absl::StatusOr<std::unique_ptr<SecretBox>> SecretBox::Create(absl::string_view key, Random& rng) {
  if (key.size() != kKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("secret key must be 32 bytes, got ", key.size()));
  }
  return std::unique_ptr<SecretBox>(new SecretBox(std::string(key), rng));
}

absl::StatusOr<std::string> SecretBox::LoadKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("secret key file ", path, " cannot be read"));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string raw = ss.str();
  absl::string_view trimmed = absl::StripAsciiWhitespace(raw);
  if (trimmed.size() == 2 * kKeySize) {
    bool hex = true;
    for (char c : trimmed) hex = hex && absl::ascii_isxdigit(static_cast<unsigned char>(c));
    if (hex) return absl::HexStringToBytes(trimmed);
  }
  if (raw.size() == kKeySize) return raw;
  return absl::InvalidArgumentError(
      absl::StrCat("secret key file ", path,
                   " must hold 64 hex digits or 32 raw bytes (generate one with: "
                   "openssl rand -hex 32)"));
}

std::string SecretBox::Seal(absl::string_view plaintext, absl::string_view context) const {
  std::string nonce = rng_.Bytes(kNonceSize);
  std::string ct(plaintext.size(), '\0');
  unsigned char tag[kTagSize];
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok =
      ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) &&
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, U(key_), U(nonce)) &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(context), static_cast<int>(context.size())) &&
      EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()), &len, U(plaintext),
                        static_cast<int>(plaintext.size())) &&
      EVP_EncryptFinal_ex(ctx.get(), nullptr, &len) &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, tag);
  if (!ok) std::abort();  // only on allocation failure inside OpenSSL
  return absl::StrCat(kSealPrefix,
                      absl::Base64Escape(absl::StrCat(
                          nonce, ct, absl::string_view(reinterpret_cast<char*>(tag), kTagSize))));
}

absl::StatusOr<std::string> SecretBox::Open(absl::string_view sealed,
                                            absl::string_view context) const {
  if (!absl::ConsumePrefix(&sealed, kSealPrefix)) {
    return absl::DataLossError("sealed secret has an unknown format");
  }
  std::string raw;
  if (!absl::Base64Unescape(sealed, &raw) || raw.size() < kNonceSize + kTagSize) {
    return absl::DataLossError("sealed secret is corrupt");
  }
  absl::string_view nonce(raw.data(), kNonceSize);
  absl::string_view ct(raw.data() + kNonceSize, raw.size() - kNonceSize - kTagSize);
  std::string tag(raw.data() + raw.size() - kTagSize, kTagSize);
  std::string pt(ct.size(), '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok =
      ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) &&
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, U(key_), U(nonce)) &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(context), static_cast<int>(context.size())) &&
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(pt.data()), &len, U(ct),
                        static_cast<int>(ct.size())) &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) &&
      EVP_DecryptFinal_ex(ctx.get(), nullptr, &len) == 1;
  if (!ok) {
    return absl::DataLossError(
        "sealed secret does not authenticate (wrong secret key or tampered record)");
  }
  return pt;
}

absl::StatusOr<std::string> HashPassword(absl::string_view password, Random& rng,
                                         ScryptParams params) {
  std::string salt = rng.Bytes(16);
  absl::StatusOr<std::string> hash = Scrypt(password, salt, params, 32);
  if (!hash.ok()) return hash.status();
  return absl::StrCat("scrypt$", params.log_n, "$", params.r, "$", params.p, "$",
                      absl::Base64Escape(salt), "$", absl::Base64Escape(*hash));
}

bool VerifyPassword(absl::string_view password, absl::string_view encoded) {
  std::vector<absl::string_view> parts = absl::StrSplit(encoded, '$');
  if (parts.size() != 6 || parts[0] != "scrypt") return false;
  ScryptParams p;
  if (!absl::SimpleAtoi(parts[1], &p.log_n) || !absl::SimpleAtoi(parts[2], &p.r) ||
      !absl::SimpleAtoi(parts[3], &p.p) || p.log_n < 10 || p.log_n > 20 || p.r < 1 || p.r > 32 ||
      p.p < 1 || p.p > 16) {
    return false;
  }
  std::string salt, want;
  if (!absl::Base64Unescape(parts[4], &salt) || !absl::Base64Unescape(parts[5], &want) ||
      want.empty()) {
    return false;
  }
  absl::StatusOr<std::string> got = Scrypt(password, salt, p, want.size());
  return got.ok() && ConstantTimeEquals(*got, want);
}

}  // namespace rwg::core
