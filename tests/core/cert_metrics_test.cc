#include "services/core/cert_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/testing/self_signed.h"

namespace rwg::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A self-signed certificate valid until `not_after` (Unix seconds), as PEM.
std::string CertificatePem(time_t not_after) {
  rwg::testing::SelfSignedOptions o;
  o.cn = "rwg.example";
  o.not_after = not_after;
  o.serial = 7;
  return rwg::testing::MakeSelfSigned(o).cert_pem;
}

std::string WriteTemp(const std::string& text) {
  char path[] = "/tmp/rwg-cert-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  std::ofstream(path) << text;
  return path;
}

std::string Scrape(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

TEST(CertificateNotAfterTest, ReadsTheFirstCertificateOfAChain) {
  // 2031-05-17T12:00:00Z; the second certificate of the chain (a CA) expires later.
  const std::string chain = CertificatePem(1936872000) + CertificatePem(2000000000);
  absl::StatusOr<int64_t> t = CertificateNotAfter(chain);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, 1936872000);
}

TEST(CertificateNotAfterTest, RefusesTextWithoutACertificate) {
  EXPECT_FALSE(CertificateNotAfter("").ok());
  EXPECT_FALSE(CertificateNotAfter("-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                   "CERTIFICATE-----\n")
                   .ok());
}

TEST(ExportCertificateExpiryTest, ExportsOneSeriesPerCertificate) {
  const std::string grpc = WriteTemp(CertificatePem(1936872000));
  const std::string sip = WriteTemp(CertificatePem(1800000000));
  prometheus::Registry r;
  ASSERT_TRUE(ExportCertificateExpiry(r, "grpc", grpc).ok());
  ASSERT_TRUE(ExportCertificateExpiry(r, "sip_tls", sip).ok());
  const std::string text = Scrape(r);
  EXPECT_THAT(text, HasSubstr("rwg_certificate_expiry_timestamp_seconds{certificate=\"grpc\"} "
                              "1936872000"));
  EXPECT_THAT(text, HasSubstr("rwg_certificate_expiry_timestamp_seconds{certificate=\"sip_tls\"} "
                              "1800000000"));
  std::remove(grpc.c_str());
  std::remove(sip.c_str());
}

TEST(ExportCertificateExpiryTest, AnUnreadableFileIsAnErrorAndNoSeries) {
  const std::string junk = WriteTemp("not a certificate");
  prometheus::Registry r;
  absl::Status s = ExportCertificateExpiry(r, "https", junk);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(junk));
  EXPECT_FALSE(ExportCertificateExpiry(r, "https", "/nonexistent/cert.pem").ok());
  EXPECT_THAT(Scrape(r), Not(HasSubstr("certificate=\"https\"")));
  std::remove(junk.c_str());
}

}  // namespace
}  // namespace rwg::core
