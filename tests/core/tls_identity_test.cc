#include "services/core/tls_identity.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/core/clock.h"
#include "tests/testing/self_signed.h"

namespace rwg::core {
namespace {

using ::testing::HasSubstr;

// The ManualClock's start, 2027-01-15T08:00:00Z.
constexpr time_t kNow = 1'800'000'000;
constexpr time_t kDay = 86400;

struct Pair {
  std::string cert;
  std::string key;
};

std::string Pem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);  // NOLINT(google-runtime-int)
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  return pem;
}

// A self-signed pair named `cn`, valid from `not_before` to `not_after` (Unix seconds).
Pair MakePair(const std::string& cn, time_t not_before = kNow - kDay,
              time_t not_after = kNow + 30 * kDay) {
  rwg::testing::SelfSignedOptions o;
  o.cn = cn;
  o.not_before = not_before;
  o.not_after = not_after;
  o.serial = 7;
  const rwg::testing::SelfSigned made = rwg::testing::MakeSelfSigned(o);
  return Pair{made.cert_pem, made.key_pem};
}

std::string Scrape(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

class Dir {
 public:
  Dir() {
    char templ[] = "/tmp/rwg-tls-identity-XXXXXX";
    path_ = mkdtemp(templ);
  }
  ~Dir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  // Replaces the file as an editor or cp would not: a new inode under the old name.
  void Write(const std::string& name, const std::string& text) const {
    const std::string tmp = *this / (name + ".new");
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, *this / name);
  }

 private:
  std::string path_;
};

TEST(TlsIdentityTest, ParsesAPairAndSaysWhenItExpires) {
  const Pair p = MakePair("sip.rwg.example");
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
      TlsIdentity::Parse(p.cert, p.key, absl::FromUnixSeconds(kNow));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ((*id)->not_after(), absl::FromUnixSeconds(kNow + 30 * kDay));
  EXPECT_EQ((*id)->fingerprint().size(), 64u);
}

TEST(TlsIdentityTest, RefusesAKeyOfAnotherCertificate) {
  const Pair a = MakePair("a"), b = MakePair("b");
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
      TlsIdentity::Parse(a.cert, b.key, absl::FromUnixSeconds(kNow));
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("not the certificate's"));
}

TEST(TlsIdentityTest, RefusesACertificateOutsideItsValidity) {
  const Pair old = MakePair("old", kNow - 10 * kDay, kNow - kDay);
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
      TlsIdentity::Parse(old.cert, old.key, absl::FromUnixSeconds(kNow));
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("expired on 2027-01-14T08:00:00Z"));

  const Pair future = MakePair("future", kNow + kDay, kNow + 10 * kDay);
  id = TlsIdentity::Parse(future.cert, future.key, absl::FromUnixSeconds(kNow));
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("not valid before 2027-01-16T08:00:00Z"));
}

TEST(TlsIdentityTest, RefusesWhatIsNotAPair) {
  const Pair p = MakePair("p");
  const absl::Time now = absl::FromUnixSeconds(kNow);
  EXPECT_THAT(TlsIdentity::Parse("", p.key, now).status().message(), HasSubstr("certificate:"));
  EXPECT_THAT(TlsIdentity::Parse(p.key, p.key, now).status().message(), HasSubstr("certificate:"));
  EXPECT_THAT(TlsIdentity::Parse(p.cert, "", now).status().message(), HasSubstr("key:"));
  EXPECT_THAT(TlsIdentity::Parse(p.cert, p.cert, now).status().message(), HasSubstr("key:"));
  // Cut half-way, as a file being written is.
  EXPECT_FALSE(TlsIdentity::Parse(p.cert.substr(0, p.cert.size() / 2), p.key, now).ok());
  EXPECT_FALSE(TlsIdentity::Parse(p.cert, p.key.substr(0, p.key.size() / 2), now).ok());
  // A chain whose second certificate is cut.
  const Pair ca = MakePair("ca");
  EXPECT_FALSE(TlsIdentity::Parse(p.cert + ca.cert.substr(0, 100), p.key, now).ok());
  EXPECT_TRUE(TlsIdentity::Parse(p.cert + ca.cert, p.key, now).ok());
  // Bytes that are not text at all.
  EXPECT_FALSE(TlsIdentity::Parse(std::string("\xff\xfe\0\x01", 4), p.key, now).ok());
}

TEST(TlsIdentityTest, RefusesAKeyProtectedByAPassphraseWithoutAsking) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  BIO* bio = BIO_new(BIO_s_mem());
  static const char kPass[] = "secret";
  PEM_write_bio_PrivateKey(bio, key, EVP_aes_128_cbc(), nullptr, 0, nullptr,
                           const_cast<char*>(kPass));
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);  // NOLINT(google-runtime-int)
  const std::string encrypted(data, static_cast<size_t>(len));
  BIO_free(bio);
  EVP_PKEY_free(key);
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
      TlsIdentity::Parse(MakePair("x").cert, encrypted, absl::FromUnixSeconds(kNow));
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("passphrase"));
}

class WatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<CertificateWatcher> Watch() {
    CertificateWatcher::Options o;
    o.endpoint = "sip_tls";
    o.cert_file = dir_ / "tls.crt";
    o.key_file = dir_ / "tls.key";
    o.cert_option = "sip-tls-cert-file";
    o.key_option = "sip-tls-key-file";
    o.start_thread = false;
    absl::StatusOr<std::unique_ptr<CertificateWatcher>> w =
        CertificateWatcher::Create(o, registry_, clock_);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }
  void Put(const Pair& p) {
    dir_.Write("tls.crt", p.cert);
    dir_.Write("tls.key", p.key);
  }

  Dir dir_;
  prometheus::Registry registry_;
  ManualClock clock_{absl::FromUnixSeconds(kNow)};
};

TEST_F(WatcherTest, AStartWithABadPairNamesTheOption) {
  const Pair a = MakePair("a"), b = MakePair("b");
  dir_.Write("tls.crt", a.cert);
  dir_.Write("tls.key", b.key);
  CertificateWatcher::Options o;
  o.endpoint = "https";
  o.cert_file = dir_ / "tls.crt";
  o.key_file = dir_ / "tls.key";
  o.cert_option = "https-cert-file";
  o.key_option = "https-key-file";
  o.start_thread = false;
  absl::StatusOr<std::unique_ptr<CertificateWatcher>> w =
      CertificateWatcher::Create(o, registry_, clock_);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("https-key-file: "));
  EXPECT_THAT(w.status().message(), HasSubstr("not the certificate's"));

  o.cert_file = dir_ / "missing.crt";
  w = CertificateWatcher::Create(o, registry_, clock_);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("https-cert-file: cannot read"));
}

TEST_F(WatcherTest, TakesANewPairAndKeepsTheOldOneWhenTheNewOneIsBad) {
  const Pair first = MakePair("first");
  Put(first);
  std::unique_ptr<CertificateWatcher> w = Watch();
  ASSERT_NE(w, nullptr);
  const std::string first_fp = w->Current()->fingerprint();
  int changes = 0;
  w->OnChange([&](const std::shared_ptr<const TlsIdentity>&) { ++changes; });

  EXPECT_TRUE(w->CheckNow().ok());  // nothing changed
  EXPECT_EQ(changes, 0);

  const Pair second = MakePair("second");
  Put(second);
  ASSERT_TRUE(w->CheckNow().ok());
  EXPECT_EQ(changes, 1);
  EXPECT_EQ(w->Current()->cert_pem(), second.cert);
  EXPECT_NE(w->Current()->fingerprint(), first_fp);

  // A key that is not the certificate's: refused once, the second pair stays.
  dir_.Write("tls.key", first.key);
  absl::Status s = w->CheckNow();
  EXPECT_THAT(s.message(), HasSubstr("not the certificate's"));
  EXPECT_EQ(w->Current()->cert_pem(), second.cert);
  EXPECT_TRUE(w->CheckNow().ok());  // the same bad files are not read again
  // An expired pair, then an unreadable one: refused too.
  Put(MakePair("expired", kNow - 10 * kDay, kNow - 1));
  EXPECT_THAT(w->CheckNow().message(), HasSubstr("expired on"));
  std::filesystem::remove(dir_ / "tls.crt");
  EXPECT_THAT(w->CheckNow().message(), HasSubstr("cannot read"));
  EXPECT_EQ(w->Current()->cert_pem(), second.cert);
  EXPECT_EQ(changes, 1);

  // Fixed: taken.
  const Pair third = MakePair("third");
  Put(third);
  ASSERT_TRUE(w->CheckNow().ok());
  EXPECT_EQ(w->Current()->cert_pem(), third.cert);
  EXPECT_EQ(changes, 2);

  const std::string metrics = Scrape(registry_);
  EXPECT_THAT(metrics, HasSubstr("rwg_certificate_reloads_total{certificate=\"sip_tls\","
                                 "result=\"loaded\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("rwg_certificate_reloads_total{certificate=\"sip_tls\","
                                 "result=\"refused\"} 3"));
}

TEST_F(WatcherTest, FollowsAKubernetesSecretVolumeSwap) {
  // A Secret volume: tls.crt → ..data/tls.crt, ..data → ..<timestamp>; an update writes a new
  // timestamped directory and renames a new ..data link over the old one.
  const Pair first = MakePair("first");
  std::filesystem::create_directory(dir_ / "..2026_01");
  std::ofstream(dir_ / "..2026_01/tls.crt") << first.cert;
  std::ofstream(dir_ / "..2026_01/tls.key") << first.key;
  std::filesystem::create_directory_symlink("..2026_01", dir_ / "..data");
  std::filesystem::create_symlink("..data/tls.crt", dir_ / "tls.crt");
  std::filesystem::create_symlink("..data/tls.key", dir_ / "tls.key");
  std::unique_ptr<CertificateWatcher> w = Watch();
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->Current()->cert_pem(), first.cert);

  const Pair second = MakePair("second");
  std::filesystem::create_directory(dir_ / "..2026_02");
  std::ofstream(dir_ / "..2026_02/tls.crt") << second.cert;
  std::ofstream(dir_ / "..2026_02/tls.key") << second.key;
  std::filesystem::create_directory_symlink("..2026_02", dir_ / "..data_tmp");
  std::filesystem::rename(dir_ / "..data_tmp", dir_ / "..data");
  std::filesystem::remove_all(dir_ / "..2026_01");
  ASSERT_TRUE(w->CheckNow().ok());
  EXPECT_EQ(w->Current()->cert_pem(), second.cert);
}

TEST_F(WatcherTest, ForcedCheckReadsTheFilesAndCountsOnlyAChange) {
  Put(MakePair("first"));
  std::unique_ptr<CertificateWatcher> w = Watch();
  ASSERT_NE(w, nullptr);
  ReloadAllCertificates();  // SIGHUP with nothing new
  EXPECT_THAT(
      Scrape(registry_),
      HasSubstr("rwg_certificate_reloads_total{certificate=\"sip_tls\",result=\"loaded\"} 0"));
  // A bad pair refused on the last look is read again when forced (the admin fixed something
  // the stamp cannot see, or wants the refusal repeated).
  const Pair other = MakePair("other");
  dir_.Write("tls.key", other.key);
  EXPECT_FALSE(w->CheckNow().ok());
  EXPECT_TRUE(w->CheckNow().ok());
  EXPECT_FALSE(w->CheckNow(/*force=*/true).ok());
}

TEST_F(WatcherTest, ExportsTheExpiryAndTheDaysLeft) {
  Put(MakePair("first", kNow - kDay, kNow + 10 * kDay));
  std::unique_ptr<CertificateWatcher> w = Watch();
  ASSERT_NE(w, nullptr);
  EXPECT_THAT(
      Scrape(registry_),
      HasSubstr(absl::StrCat("rwg_certificate_expiry_timestamp_seconds{certificate=\"sip_tls\"} ",
                             kNow + 10 * kDay)));
  EXPECT_THAT(Scrape(registry_),
              HasSubstr("rwg_certificate_expiry_days{certificate=\"sip_tls\"} 10"));
  clock_.Advance(absl::Hours(24 * 4));
  (void)w->CheckNow();
  EXPECT_THAT(Scrape(registry_),
              HasSubstr("rwg_certificate_expiry_days{certificate=\"sip_tls\"} 6"));
}

// A TLS handshake in memory between a server context the watcher serves and a client; returns
// the certificate the client saw, as PEM ("" when the handshake failed). `server` is the
// server's connection, left for the caller to inspect and free.
std::string Handshake(SSL_CTX* server_ctx, SSL** server) {
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  SSL* c = SSL_new(client_ctx);
  SSL* s = SSL_new(server_ctx);
  BIO *cb = nullptr, *sb = nullptr;
  BIO_new_bio_pair(&cb, 0, &sb, 0);
  SSL_set_bio(c, cb, cb);
  SSL_set_bio(s, sb, sb);
  SSL_set_connect_state(c);
  SSL_set_accept_state(s);
  bool done_c = false, done_s = false;
  for (int i = 0; i < 20 && !(done_c && done_s); ++i) {
    if (!done_c) done_c = SSL_do_handshake(c) == 1;
    if (!done_s) done_s = SSL_do_handshake(s) == 1;
  }
  std::string pem;
  if (done_c && done_s) {
    X509* peer = SSL_get1_peer_certificate(c);
    if (peer != nullptr) pem = Pem(peer);
    X509_free(peer);
  }
  SSL_free(c);
  SSL_CTX_free(client_ctx);
  *server = s;
  return pem;
}

TEST_F(WatcherTest, NewHandshakesPresentTheNewPairAndEstablishedOnesKeepTheirs) {
  // Real time here: OpenSSL checks nothing about validity on the server side, and the pairs
  // are valid now as well as at kNow.
  const time_t now = time(nullptr);
  const Pair first = MakePair("first", now - kDay, kNow + kDay);
  Put(first);
  std::unique_ptr<CertificateWatcher> w = Watch();
  ASSERT_NE(w, nullptr);
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  w->InstallOn(ctx);

  SSL* established = nullptr;
  EXPECT_EQ(Handshake(ctx, &established), first.cert);

  const Pair second = MakePair("second", now - kDay, kNow + kDay);
  Put(second);
  ASSERT_TRUE(w->CheckNow().ok());
  SSL* next = nullptr;
  EXPECT_EQ(Handshake(ctx, &next), second.cert);
  // The connection made before the change still holds the first certificate.
  EXPECT_EQ(Pem(SSL_get_certificate(established)), first.cert);
  EXPECT_EQ(Pem(SSL_get_certificate(next)), second.cert);
  SSL_free(established);
  SSL_free(next);
  SSL_CTX_free(ctx);
}

}  // namespace
}  // namespace rwg::core
