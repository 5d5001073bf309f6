// Certificates that rotate without a restart (docs/operations.md, "Certificate rotation").
//
// A TLS endpoint's certificate and key are read from files (a mounted kubernetes.io/tls Secret,
// files cert-manager renews, or files an admin replaces). A CertificateWatcher checks them once
// a second and on SIGHUP; a new pair is taken only when it is whole and usable (both files
// parse, the key is the certificate's, the certificate is valid now), otherwise it is refused
// with one log line and a metric and the previous pair stays in use. New handshakes present the
// new pair; established connections keep theirs.
//
// Metrics, per endpoint (`certificate` label: a fixed word such as grpc, https, sip_tls):
//   rwg_certificate_expiry_timestamp_seconds  notAfter of the pair in use (Unix seconds)
//   rwg_certificate_expiry_days               days left until then (negative once expired)
//   rwg_certificate_reloads_total{result}     loaded | refused
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/clock.h"

namespace rwg::core {

// A certificate chain and its private key, checked to belong together. Immutable once made;
// shared by every handshake that presents it.
class TlsIdentity {
 public:
  ~TlsIdentity();
  TlsIdentity(const TlsIdentity&) = delete;
  TlsIdentity& operator=(const TlsIdentity&) = delete;

  // Parses `cert_pem` (the leaf first, then intermediates) and `key_pem`. Refused when either
  // does not parse, the key is not the leaf's, or `now` is outside the leaf's validity. The
  // message says which, with the date when it is about validity.
  static absl::StatusOr<std::shared_ptr<const TlsIdentity>> Parse(const std::string& cert_pem,
                                                                  const std::string& key_pem,
                                                                  absl::Time now);

  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }
  absl::Time not_before() const { return not_before_; }
  absl::Time not_after() const { return not_after_; }
  // SHA-256 of the leaf (DER), lower-case hex: what logs name a certificate by.
  const std::string& fingerprint() const { return fingerprint_; }

  // Makes `ssl` present this pair (its chain included) in the handshake under way.
  bool UseOn(SSL* ssl) const;
  // Makes `ctx` present this pair by default (before any handshake uses it).
  bool UseOn(SSL_CTX* ctx) const;

 private:
  TlsIdentity() = default;

  std::string cert_pem_;
  std::string key_pem_;
  X509* cert_ = nullptr;
  STACK_OF(X509) * chain_ = nullptr;
  EVP_PKEY* key_ = nullptr;
  absl::Time not_before_;
  absl::Time not_after_;
  std::string fingerprint_;
};

// Reads both files and parses them (TlsIdentity::Parse). Errors name the file.
absl::StatusOr<std::shared_ptr<const TlsIdentity>> LoadTlsIdentity(const std::string& cert_file,
                                                                   const std::string& key_file,
                                                                   absl::Time now);

// One endpoint's certificate, kept current from its files.
class CertificateWatcher {
 public:
  struct Options {
    std::string endpoint;   // the `certificate` label: a fixed word, never from the network
    std::string cert_file;  // PEM chain, leaf first
    std::string key_file;   // PEM private key
    std::string cert_option = "tls-cert-file";  // what start-up errors name
    std::string key_option = "tls-key-file";
    absl::Duration poll = absl::Seconds(1);
    // Whether a background thread polls; tests call CheckNow instead.
    bool start_thread = true;
  };

  // Reads the pair; an error (InvalidArgument naming the option) means the service must not
  // start. Registers the metrics in `registry`, which must outlive the watcher.
  static absl::StatusOr<std::unique_ptr<CertificateWatcher>> Create(
      Options options, prometheus::Registry& registry, const Clock& clock = SystemClock::Get());
  ~CertificateWatcher();
  CertificateWatcher(const CertificateWatcher&) = delete;
  CertificateWatcher& operator=(const CertificateWatcher&) = delete;

  // The pair in use.
  std::shared_ptr<const TlsIdentity> Current() const;

  // Looks at the files now: when they changed since the last look (or `force`, as SIGHUP
  // does), reads them and takes the new pair if it is usable. Returns the refusal when one was
  // refused, OK otherwise. Also refreshes the days-left gauge.
  absl::Status CheckNow(bool force = false);

  // `f` runs (on the thread that took the pair) after each new pair becomes Current().
  void OnChange(std::function<void(const std::shared_ptr<const TlsIdentity>&)> f);

  // Makes every new handshake of `ctx` (server side, and client side when the peer asks for a
  // certificate) present Current(). Call before `ctx` is in use (it sets the context's own
  // pair too); `ctx` must not outlive the watcher.
  void InstallOn(SSL_CTX* ctx);

  struct Installed;  // one per context InstallOn was given

 private:
  CertificateWatcher(Options options, prometheus::Registry& registry, const Clock& clock);
  // What the files are now: device, inode, size and modification time of both, through links.
  std::string Stamp() const;
  void Run();
  void Publish(const TlsIdentity& identity);

  const Options options_;
  const Clock& clock_;
  prometheus::Gauge& expiry_;
  prometheus::Gauge& days_left_;
  prometheus::Counter& loaded_;
  prometheus::Counter& refused_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const TlsIdentity> current_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Installed>> installed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(const std::shared_ptr<const TlsIdentity>&)>> listeners_
      ABSL_GUARDED_BY(mu_);

  absl::Mutex check_mu_;                                  // one check at a time
  std::string stamp_ ABSL_GUARDED_BY(check_mu_);          // of the files last read
  std::string seen_stamp_ ABSL_GUARDED_BY(check_mu_);     // at the last look
  std::string refused_stamp_ ABSL_GUARDED_BY(check_mu_);  // of the last refused pair

  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread thread_;
};

// Something else that reads certificates (ott's certificate per domain) and reads them again
// on SIGHUP: `reload` runs from ReloadAllCertificates while the hook exists.
class CertificateReloadHook {
 public:
  explicit CertificateReloadHook(std::function<void()> reload);
  ~CertificateReloadHook();
  CertificateReloadHook(const CertificateReloadHook&) = delete;
  CertificateReloadHook& operator=(const CertificateReloadHook&) = delete;

 private:
  std::function<void()> reload_;
};

// Every CertificateWatcher and CertificateReloadHook of the process reads its files now, as if
// they had changed (what SIGHUP does: ServiceHost::WaitForTermination calls it).
void ReloadAllCertificates();

}  // namespace rwg::core
