// Self-signed certificates for the unit tests (see self_signed.h).
#include "tests/testing/self_signed.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <memory>

namespace rwg::testing {

namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <class T>
using Owned = std::unique_ptr<T, Free>;

std::string Drain(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);  // NOLINT(google-runtime-int): OpenSSL's
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

bool Write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  return static_cast<bool>(f.flush());
}

}  // namespace

SelfSigned MakeSelfSigned(const SelfSignedOptions& o) {
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  Owned<X509> cert(X509_new());
  if (key == nullptr || cert == nullptr) return {};
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), o.serial);
  const time_t now = std::time(nullptr);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), o.not_before != 0 ? o.not_before : now);
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), o.not_after != 0 ? o.not_after : now + 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(o.cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (o.dns_san) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
    const std::string value = "DNS:" + o.cn;
    Owned<X509_EXTENSION> san(
        X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, value.c_str()));
    if (san == nullptr || X509_add_ext(cert.get(), san.get(), -1) != 1) return {};
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) return {};
  Owned<BIO> c(BIO_new(BIO_s_mem()));
  Owned<BIO> k(BIO_new(BIO_s_mem()));
  if (c == nullptr || k == nullptr || PEM_write_bio_X509(c.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(k.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return {};
  }
  return SelfSigned{Drain(c.get()), Drain(k.get())};
}

bool WriteSelfSigned(const SelfSigned& pair, const std::string& cert_file,
                     const std::string& key_file) {
  return pair.ok() && Write(cert_file, pair.cert_pem) && Write(key_file, pair.key_pem);
}

bool UseSelfSigned(SSL_CTX* ctx, const SelfSigned& pair) {
  Owned<BIO> c(BIO_new_mem_buf(pair.cert_pem.data(), static_cast<int>(pair.cert_pem.size())));
  Owned<BIO> k(BIO_new_mem_buf(pair.key_pem.data(), static_cast<int>(pair.key_pem.size())));
  if (c == nullptr || k == nullptr) return false;
  Owned<X509> cert(PEM_read_bio_X509(c.get(), nullptr, nullptr, nullptr));
  Owned<EVP_PKEY> key(PEM_read_bio_PrivateKey(k.get(), nullptr, nullptr, nullptr));
  return cert != nullptr && key != nullptr && SSL_CTX_use_certificate(ctx, cert.get()) == 1 &&
         SSL_CTX_use_PrivateKey(ctx, key.get()) == 1;
}

}  // namespace rwg::testing
