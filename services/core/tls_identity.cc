#include "services/core/tls_identity.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/log.h"
#include "services/core/openssl_error.h"
#include "services/core/server.h"

namespace rwg::core {

namespace {

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

BioPtr MemBio(const std::string& s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())), &BIO_free);
}

absl::StatusOr<absl::Time> AsnTime(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return absl::InvalidArgumentError("certificate without a readable validity date");
  }
  return absl::FromTimeT(timegm(&tm));
}

// A private key protected by a passphrase is refused rather than prompted for.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return 0; }

std::string Date(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::Mutex& WatchersMu() {
  static absl::Mutex mu;
  return mu;
}
std::set<CertificateWatcher*>& Watchers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(WatchersMu()) {
  static auto* watchers = new std::set<CertificateWatcher*>();
  return *watchers;
}
std::set<std::function<void()>*>& Hooks() ABSL_EXCLUSIVE_LOCKS_REQUIRED(WatchersMu()) {
  static auto* hooks = new std::set<std::function<void()>*>();
  return *hooks;
}

std::string StatStamp(const std::string& path) {
  struct stat st = {};
  if (stat(path.c_str(), &st) != 0) return absl::StrCat("missing:", errno);
  return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec);
}

absl::Time NewestChange(const std::string& a, const std::string& b) {
  absl::Time newest = absl::InfinitePast();
  for (const std::string* p : {&a, &b}) {
    struct stat st = {};
    if (stat(p->c_str(), &st) == 0) newest = std::max(newest, absl::TimeFromTimespec(st.st_mtim));
  }
  return newest;
}

}  // namespace

// What a context's certificate callback reads: the watcher, and the pair the context itself
// was given (each connection starts with a copy of it).
struct CertificateWatcher::Installed {
  const CertificateWatcher* watcher;
  std::shared_ptr<const TlsIdentity> own;
};

namespace {

int CertCallback(SSL* ssl, void* arg) {
  const auto* installed = static_cast<const CertificateWatcher::Installed*>(arg);
  std::shared_ptr<const TlsIdentity> id = installed->watcher->Current();
  if (id == nullptr) return 0;
  // The context's own pair is already the connection's: setting it again would cost every
  // handshake a copy of the chain and a key check.
  if (id == installed->own) return 1;
  // Only the pair of the moment: the context's own (the first pair) would otherwise stay in
  // its key type's slot and be chosen after a rotation to another key type.
  SSL_certs_clear(ssl);
  return id->UseOn(ssl) ? 1 : 0;
}

}  // namespace

TlsIdentity::~TlsIdentity() {
  X509_free(cert_);
  if (chain_ != nullptr) sk_X509_pop_free(chain_, X509_free);
  EVP_PKEY_free(key_);
}

absl::StatusOr<std::shared_ptr<const TlsIdentity>> TlsIdentity::Parse(const std::string& cert_pem,
                                                                      const std::string& key_pem,
                                                                      absl::Time now) {
  std::shared_ptr<TlsIdentity> id(new TlsIdentity());
  id->cert_pem_ = cert_pem;
  id->key_pem_ = key_pem;
  ERR_clear_error();
  BioPtr cert_bio = MemBio(cert_pem);
  if (!cert_bio) return absl::ResourceExhaustedError("out of memory");
  id->cert_ = PEM_read_bio_X509(cert_bio.get(), nullptr, &NoPassphrase, nullptr);
  if (id->cert_ == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("certificate: no PEM certificate");
  }
  id->chain_ = sk_X509_new_null();
  if (id->chain_ == nullptr) return absl::ResourceExhaustedError("out of memory");
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, &NoPassphrase, nullptr)) {
    if (sk_X509_push(id->chain_, extra) == 0) {
      X509_free(extra);
      return absl::ResourceExhaustedError("out of memory");
    }
  }
  // The loop ends on "no start line" at the end of the text: expected, not an error.
  const unsigned long last = ERR_peek_last_error();  // NOLINT(google-runtime-int)
  if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate: a chain certificate does not parse: ", OpenSslError()));
  }
  ERR_clear_error();

  BioPtr key_bio = MemBio(key_pem);
  if (!key_bio) return absl::ResourceExhaustedError("out of memory");
  id->key_ = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, &NoPassphrase, nullptr);
  if (id->key_ == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("key: no PEM private key (or one protected by a passphrase)");
  }
  if (X509_check_private_key(id->cert_, id->key_) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("key: the private key is not the certificate's");
  }

  absl::StatusOr<absl::Time> not_before = AsnTime(X509_get0_notBefore(id->cert_));
  if (!not_before.ok()) return not_before.status();
  absl::StatusOr<absl::Time> not_after = AsnTime(X509_get0_notAfter(id->cert_));
  if (!not_after.ok()) return not_after.status();
  id->not_before_ = *not_before;
  id->not_after_ = *not_after;
  if (now < id->not_before_) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate: not valid before ", Date(id->not_before_)));
  }
  if (now >= id->not_after_) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate: expired on ", Date(id->not_after_)));
  }

  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(id->cert_, EVP_sha256(), md, &md_len) != 1) {
    return absl::InternalError(absl::StrCat("certificate digest: ", OpenSslError()));
  }
  id->fingerprint_ =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), md_len));
  return std::shared_ptr<const TlsIdentity>(std::move(id));
}

bool TlsIdentity::UseOn(SSL* ssl) const {
  return SSL_use_cert_and_key(ssl, cert_, key_, chain_, 1) == 1;
}

bool TlsIdentity::UseOn(SSL_CTX* ctx) const {
  return SSL_CTX_use_cert_and_key(ctx, cert_, key_, chain_, 1) == 1;
}

absl::StatusOr<std::shared_ptr<const TlsIdentity>> LoadTlsIdentity(const std::string& cert_file,
                                                                   const std::string& key_file,
                                                                   absl::Time now) {
  absl::StatusOr<std::string> cert = ReadFile(cert_file);
  if (!cert.ok()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", cert_file));
  absl::StatusOr<std::string> key = ReadFile(key_file);
  if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", key_file));
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id = TlsIdentity::Parse(*cert, *key, now);
  if (!id.ok()) {
    // "key: ..." or "certificate: ...": the file's name replaces the word.
    const absl::string_view message = id.status().message();
    const bool key = absl::StartsWith(message, "key: ");
    const size_t colon = message.find(": ");
    const absl::string_view rest =
        colon == absl::string_view::npos ? message : message.substr(colon + 2);
    return absl::Status(id.status().code(), absl::StrCat(key ? key_file : cert_file, ": ", rest));
  }
  return id;
}

CertificateWatcher::CertificateWatcher(Options options, prometheus::Registry& registry,
                                       const Clock& clock)
    : options_(std::move(options)),
      clock_(clock),
      expiry_(prometheus::BuildGauge()
                  .Name("rwg_certificate_expiry_timestamp_seconds")
                  .Help("When the certificate a service presents stops being valid (notAfter), "
                        "Unix seconds")
                  .Register(registry)
                  .Add({{"certificate", options_.endpoint}})),
      days_left_(prometheus::BuildGauge()
                     .Name("rwg_certificate_expiry_days")
                     .Help("Days until the certificate a service presents expires (negative once "
                           "it has)")
                     .Register(registry)
                     .Add({{"certificate", options_.endpoint}})),
      loaded_(prometheus::BuildCounter()
                  .Name("rwg_certificate_reloads_total")
                  .Help("New certificate/key pairs read from an endpoint's files: loaded, or "
                        "refused (the previous pair stays in use)")
                  .Register(registry)
                  .Add({{"certificate", options_.endpoint}, {"result", "loaded"}})),
      refused_(prometheus::BuildCounter()
                   .Name("rwg_certificate_reloads_total")
                   .Help("New certificate/key pairs read from an endpoint's files: loaded, or "
                         "refused (the previous pair stays in use)")
                   .Register(registry)
                   .Add({{"certificate", options_.endpoint}, {"result", "refused"}})) {}

absl::StatusOr<std::unique_ptr<CertificateWatcher>> CertificateWatcher::Create(
    Options options, prometheus::Registry& registry, const Clock& clock) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.cert_file.empty() ? options.cert_option : options.key_option, ": required"));
  }
  const std::string stamp =
      absl::StrCat(StatStamp(options.cert_file), "|", StatStamp(options.key_file));
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
      LoadTlsIdentity(options.cert_file, options.key_file, clock.Now());
  if (!id.ok()) {
    const bool key = absl::StartsWith(id.status().message(), options.key_file);
    return absl::InvalidArgumentError(
        absl::StrCat(key ? options.key_option : options.cert_option, ": ", id.status().message()));
  }
  std::unique_ptr<CertificateWatcher> w(
      new CertificateWatcher(std::move(options), registry, clock));
  {
    absl::MutexLock lock(&w->mu_);
    w->current_ = *id;
  }
  {
    absl::MutexLock lock(&w->check_mu_);
    w->stamp_ = w->seen_stamp_ = stamp;
  }
  w->Publish(**id);
  {
    absl::MutexLock lock(&WatchersMu());
    Watchers().insert(w.get());
  }
  if (w->options_.start_thread) w->thread_ = std::thread([p = w.get()] { p->Run(); });
  return w;
}

CertificateWatcher::~CertificateWatcher() {
  {
    absl::MutexLock lock(&WatchersMu());
    Watchers().erase(this);
  }
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const TlsIdentity> CertificateWatcher::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

void CertificateWatcher::OnChange(
    std::function<void(const std::shared_ptr<const TlsIdentity>&)> f) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::move(f));
}

void CertificateWatcher::InstallOn(SSL_CTX* ctx) {
  auto installed = std::make_unique<Installed>(Installed{this, Current()});
  (void)installed->own->UseOn(ctx);
  SSL_CTX_set_cert_cb(ctx, &CertCallback, installed.get());
  absl::MutexLock lock(&mu_);
  installed_.push_back(std::move(installed));
}

std::string CertificateWatcher::Stamp() const {
  return absl::StrCat(StatStamp(options_.cert_file), "|", StatStamp(options_.key_file));
}

void CertificateWatcher::Publish(const TlsIdentity& identity) {
  expiry_.Set(static_cast<double>(absl::ToUnixSeconds(identity.not_after())));
  days_left_.Set(absl::ToDoubleHours(identity.not_after() - clock_.Now()) / 24);
}

absl::Status CertificateWatcher::CheckNow(bool force) {
  absl::MutexLock check(&check_mu_);
  std::shared_ptr<const TlsIdentity> current = Current();
  Publish(*current);
  const std::string stamp = Stamp();
  if (!force) {
    if (stamp == stamp_ || stamp == refused_stamp_) {
      seen_stamp_ = stamp;
      return absl::OkStatus();
    }
    // Files changed a moment ago may still be being written: read them once they have stayed
    // the same for one look, or once the newest is a second old.
    const bool settled =
        stamp == seen_stamp_ ||
        NewestChange(options_.cert_file, options_.key_file) < clock_.Now() - absl::Seconds(1);
    seen_stamp_ = stamp;
    if (!settled) return absl::OkStatus();
  }
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id =
      LoadTlsIdentity(options_.cert_file, options_.key_file, clock_.Now());
  if (!id.ok()) {
    refused_stamp_ = stamp;
    refused_.Increment();
    log::Error("new certificate refused; the one in use stays",
               {{"certificate", options_.endpoint},
                {"error", std::string(id.status().message())},
                {"in_use", current->fingerprint().substr(0, 16)},
                {"in_use_not_after", Date(current->not_after())}});
    return id.status();
  }
  stamp_ = stamp;
  refused_stamp_.clear();
  if ((*id)->cert_pem() == current->cert_pem() && (*id)->key_pem() == current->key_pem()) {
    if (force) log::Info("certificate unchanged", {{"certificate", options_.endpoint}});
    return absl::OkStatus();
  }
  std::vector<std::function<void(const std::shared_ptr<const TlsIdentity>&)>> listeners;
  {
    absl::MutexLock lock(&mu_);
    current_ = *id;
    listeners = listeners_;
  }
  Publish(**id);
  loaded_.Increment();
  log::Info("certificate loaded", {{"certificate", options_.endpoint},
                                   {"fingerprint", (*id)->fingerprint().substr(0, 16)},
                                   {"not_after", Date((*id)->not_after())},
                                   {"previous", current->fingerprint().substr(0, 16)}});
  for (const auto& f : listeners) f(*id);
  return absl::OkStatus();
}

void CertificateWatcher::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.poll)) return;
    }
    try {
      (void)CheckNow();
    } catch (const std::exception& e) {
      log::Error("certificate check failed",
                 {{"certificate", options_.endpoint}, {"error", e.what()}});
    }
  }
}

CertificateReloadHook::CertificateReloadHook(std::function<void()> reload)
    : reload_(std::move(reload)) {
  absl::MutexLock lock(&WatchersMu());
  Hooks().insert(&reload_);
}

CertificateReloadHook::~CertificateReloadHook() {
  absl::MutexLock lock(&WatchersMu());
  Hooks().erase(&reload_);
}

void ReloadAllCertificates() {
  absl::MutexLock lock(&WatchersMu());
  for (CertificateWatcher* w : Watchers()) {
    try {
      (void)w->CheckNow(/*force=*/true);
    } catch (const std::exception& e) {
      log::Error("certificate reload failed", {{"error", e.what()}});
    }
  }
  for (std::function<void()>* f : Hooks()) {
    try {
      (*f)();
    } catch (const std::exception& e) {
      log::Error("certificate reload failed", {{"error", e.what()}});
    }
  }
}

}  // namespace rwg::core
