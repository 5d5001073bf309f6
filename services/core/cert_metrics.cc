#include "services/core/cert_metrics.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <prometheus/gauge.h>

#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"
#include "services/core/server.h"

namespace rwg::core {

absl::StatusOr<int64_t> CertificateNotAfter(std::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) return absl::InternalError("out of memory");
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) return absl::InvalidArgumentError("no PEM certificate");
  const ASN1_TIME* not_after = X509_get0_notAfter(cert.get());
  struct tm tm = {};
  if (not_after == nullptr || ASN1_TIME_to_tm(not_after, &tm) != 1) {
    return absl::InvalidArgumentError("certificate without a readable notAfter");
  }
  return static_cast<int64_t>(timegm(&tm));
}

absl::Status ExportCertificateExpiry(prometheus::Registry& registry, const std::string& certificate,
                                     const std::string& cert_file) {
  absl::StatusOr<std::string> pem = ReadFile(cert_file);
  absl::StatusOr<int64_t> not_after =
      pem.ok() ? CertificateNotAfter(*pem) : absl::StatusOr<int64_t>(pem.status());
  if (!not_after.ok()) {
    absl::Status s = absl::InvalidArgumentError(absl::StrCat(
        certificate, " certificate '", cert_file, "': ", not_after.status().message()));
    log::Warn("cannot read the certificate's expiry", {{"error", std::string(s.message())}});
    return s;
  }
  prometheus::BuildGauge()
      .Name(kCertificateExpiryMetric)
      .Help("When the certificate a service presents stops being valid (notAfter), Unix seconds")
      .Register(registry)
      .Add({{"certificate", certificate}})
      .Set(static_cast<double>(*not_after));
  return absl::OkStatus();
}

}  // namespace rwg::core
