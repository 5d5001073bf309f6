#include "services/ott/state.h"

#include <openssl/err.h>
#include <sys/stat.h>

#include <exception>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "services/core/address.h"
#include "services/core/cert_metrics.h"
#include "services/core/log.h"
#include "services/core/openssl_error.h"

namespace rwg::ott {

std::string OttBanId(const std::string& source) { return absl::StrCat("ott:", source); }

namespace {

std::string Stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_size, "@", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "#", st.st_ino);
}

}  // namespace

CertStore::CertStore(std::string dir, void (*configure)(SSL_CTX*), prometheus::Registry& registry)
    : dir_(std::move(dir)),
      configure_(configure),
      registry_(registry),
      failures_(prometheus::BuildCounter()
                    .Name("rwg_ott_certificate_load_failures_total")
                    .Help("Certificate/key pairs under --cert-dir that did not load (the "
                          "previous one, if any, is kept)")
                    .Register(registry)
                    .Add({})),
      reloads_loaded_(prometheus::BuildCounter()
                          .Name("rwg_certificate_reloads_total")
                          .Help("New certificate/key pairs read from an endpoint's files: loaded, "
                                "or refused (the previous pair stays in use)")
                          .Register(registry)
                          .Add({{"certificate", "ott"}, {"result", "loaded"}})),
      reloads_refused_(prometheus::BuildCounter()
                           .Name("rwg_certificate_reloads_total")
                           .Help("New certificate/key pairs read from an endpoint's files: "
                                 "loaded, or refused (the previous pair stays in use)")
                           .Register(registry)
                           .Add({{"certificate", "ott"}, {"result", "refused"}})) {}

CertStore::~CertStore() {
  hook_.reset();
  absl::MutexLock lock(&mu_);
  for (auto& [fqdn, l] : certs_) SSL_CTX_free(l.ctx);
}

void CertStore::Reload(bool force) {
  absl::MutexLock reload(&reload_mu_);
  if (force) refused_.clear();
  std::map<std::string, std::string> found;  // fqdn → stamp
  std::error_code ec;
  if (!dir_.empty()) {
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      std::error_code e2;
      if (!entry.is_directory(e2)) continue;
      const std::string name = entry.path().filename().string();
      // Only names that could be a domain (this also skips Kubernetes' "..data" links).
      if (name.empty() || name[0] == '.' || name.find('.') == std::string::npos) continue;
      const std::string crt = absl::StrCat(dir_, "/", name, "/tls.crt");
      const std::string key = absl::StrCat(dir_, "/", name, "/tls.key");
      const std::string a = Stamp(crt), b = Stamp(key);
      if (a.empty() || b.empty()) continue;
      found[name] = absl::StrCat(a, "|", b);
    }
  }
  std::map<std::string, Loaded> next;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [fqdn, l] : certs_) {
      auto it = found.find(fqdn);
      if (it != found.end() && it->second == l.stamp) {
        next[fqdn] = l;
        l.ctx = nullptr;  // moved
        found.erase(it);
      }
    }
  }
  // What changed or is new: loaded outside the lock.
  std::map<std::string, Loaded> failed_keep;
  for (const auto& [fqdn, stamp] : found) {
    auto refused = refused_.find(fqdn);
    if (refused != refused_.end() && refused->second == stamp) continue;  // logged already
    const std::string crt = absl::StrCat(dir_, "/", fqdn, "/tls.crt");
    const std::string key = absl::StrCat(dir_, "/", fqdn, "/tls.key");
    absl::StatusOr<std::shared_ptr<const core::TlsIdentity>> id =
        core::LoadTlsIdentity(crt, key, absl::Now());
    SSL_CTX* ctx = nullptr;
    std::string error;
    if (!id.ok()) {
      error = std::string(id.status().message());
    } else if ((ctx = SSL_CTX_new(TLS_server_method())) == nullptr) {
      error = core::OpenSslError();
    } else {
      configure_(ctx);
      if (!(*id)->UseOn(ctx)) error = core::OpenSslError();
    }
    if (!error.empty()) {
      SSL_CTX_free(ctx);
      failures_.Increment();
      reloads_refused_.Increment();
      refused_[fqdn] = stamp;
      core::log::Error("new certificate refused; the one in use stays",
                       {{"certificate", "ott"}, {"fqdn", fqdn}, {"error", error}});
      continue;
    }
    refused_.erase(fqdn);
    // The pair was just loaded from these files, so its expiry reads; were it not to, the gauge
    // would only keep its last value, and the certificate is in use either way.
    (void)core::ExportCertificateExpiry(registry_, absl::StrCat("ott_", fqdn), crt);
    reloads_loaded_.Increment();
    core::log::Info("certificate loaded", {{"certificate", "ott"},
                                           {"fqdn", fqdn},
                                           {"fingerprint", (*id)->fingerprint().substr(0, 16)}});
    next[fqdn] = Loaded{ctx, stamp};
  }
  absl::MutexLock lock(&mu_);
  for (auto& [fqdn, l] : certs_) {
    if (l.ctx == nullptr) continue;
    if (next.count(fqdn) == 0 && found.count(fqdn) != 0) {
      next[fqdn] = l;  // changed but the new pair did not load: the previous one stays
      continue;
    }
    SSL_CTX_free(l.ctx);
  }
  certs_ = std::move(next);
}

SSL_CTX* CertStore::Get(const std::string& fqdn) const {
  absl::MutexLock lock(&mu_);
  auto it = certs_.find(fqdn);
  if (it == certs_.end()) return nullptr;
  SSL_CTX_up_ref(it->second.ctx);
  return it->second.ctx;
}

bool CertStore::Has(const std::string& fqdn) const {
  absl::MutexLock lock(&mu_);
  return certs_.count(fqdn) != 0;
}

OttState::OttState(OttStore& store, core::RedisClient& redis, CertStore& certs, core::Clock& clock,
                   std::string instance, StateOptions options, prometheus::Registry& registry)
    : store_(store),
      bans_(redis),
      certs_(certs),
      clock_(clock),
      instance_(std::move(instance)),
      options_(options),
      domains_gauge_(prometheus::BuildGauge()
                         .Name("rwg_ott_domains")
                         .Help("Domains in the list by state (enabled, disabled, no_certificate: "
                               "enabled without a certificate loaded)")
                         .Register(registry)),
      bans_made_(prometheus::BuildCounter()
                     .Name("rwg_ott_bans_total")
                     .Help("Sources banned by this instance (too many refusals)")
                     .Register(registry)
                     .Add({})),
      snapshot_(std::make_shared<Snapshot>()) {
  for (const char* s : {"enabled", "disabled", "no_certificate"}) {
    domains_gauge_.Add({{"state", s}});
  }
}

absl::Status OttState::Refresh() {
  const absl::Time now = clock_.Now();
  bool reload_certs = false;
  {
    absl::MutexLock lock(&mu_);
    if (now - last_cert_reload_ >= options_.cert_reload) {
      last_cert_reload_ = now;
      reload_certs = true;
    }
  }
  if (reload_certs) certs_.Reload();
  std::vector<core::Ban> pending;
  {
    absl::MutexLock lock(&mu_);
    pending.swap(to_store_);
  }
  for (const core::Ban& b : pending) {
    if (absl::Status s = bans_.Put(b); !s.ok()) {
      core::log::Warn("cannot store a ban", {{"ban", b.id}, {"error", std::string(s.message())}});
    }
  }
  absl::StatusOr<long long> version = store_.Version();
  if (!version.ok()) return version.status();
  bool reload;
  {
    absl::MutexLock lock(&mu_);
    // Read again now and then whatever the version says (a Redis restored from a backup).
    reload = *version != snapshot_->version || now - last_full_ >= absl::Seconds(30);
  }
  if (reload) {
    auto next = std::make_shared<Snapshot>();
    next->version = *version;
    absl::StatusOr<std::vector<pb::Domain>> domains = store_.ListDomains();
    if (!domains.ok()) return domains.status();
    for (pb::Domain& d : *domains) {
      auto e = std::make_shared<DomainEntry>();
      e->paths = EffectivePaths(d);
      e->service = std::string(ServiceName(d.service()));
      const pb::Backend& b = d.backend();
      e->backend_key = absl::StrCat(b.host(), "|", b.port(), "|", b.tls() ? "tls" : "plain", "|",
                                    b.ca_file(), "|", b.server_name());
      const std::string fqdn = d.fqdn();
      e->domain = std::move(d);
      next->domains[fqdn] = std::move(e);
    }
    absl::StatusOr<std::vector<pb::Account>> accounts = store_.LoadAccounts();
    if (!accounts.ok()) return accounts.status();
    for (const pb::Account& a : *accounts) {
      if (a.enabled()) next->enabled_accounts.insert(a.name());
    }
    absl::MutexLock lock(&mu_);
    snapshot_ = std::move(next);
    last_full_ = now;
  }
  {
    std::shared_ptr<const Snapshot> snap = Get();
    double enabled = 0, disabled = 0, no_cert = 0;
    for (const auto& [fqdn, e] : snap->domains) {
      if (!e->domain.enabled()) {
        ++disabled;
      } else {
        ++enabled;
        if (!certs_.Has(fqdn)) ++no_cert;
      }
    }
    domains_gauge_.Add({{"state", "enabled"}}).Set(enabled);
    domains_gauge_.Add({{"state", "disabled"}}).Set(disabled);
    domains_gauge_.Add({{"state", "no_certificate"}}).Set(no_cert);
  }
  absl::StatusOr<std::vector<core::Ban>> list = bans_.List();
  if (!list.ok()) return list.status();
  std::unordered_set<std::string> banned;
  absl::MutexLock lock(&mu_);
  for (const core::Ban& b : to_store_) {
    if (banned.size() < options_.max_bans) banned.insert(b.source);
  }
  for (const core::Ban& b : *list) {
    if (banned.size() >= options_.max_bans) break;
    if (b.kind == "ott" && b.until > now) banned.insert(b.source);
  }
  banned_ = std::move(banned);
  return absl::OkStatus();
}

absl::Status OttState::Start() { return refresher_.Start(options_.refresh); }

void OttState::Stop() { refresher_.Stop(); }

std::shared_ptr<const Snapshot> OttState::Get() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

bool OttState::Banned(const std::string& source) const {
  absl::MutexLock lock(&mu_);
  return banned_.count(source) != 0;
}

absl::Status OttState::last_status() const { return refresher_.last_status(); }

bool OttState::AllowRequest(const std::string& source) {
  const absl::Time now = clock_.Now();
  const double rate = options_.requests_per_second;
  const double burst = 2 * rate;
  absl::MutexLock lock(&tables_mu_);
  if (now - last_sweep_ > absl::Seconds(10) || buckets_.size() >= options_.max_sources) {
    last_sweep_ = now;
    // A bucket refilled to the brim is as good as none.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      if (it->second.tokens + absl::ToDoubleSeconds(now - it->second.at) * rate >= burst) {
        it = buckets_.erase(it);
      } else {
        ++it;
      }
    }
  }
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_sources) return true;  // full of active sources
    it = buckets_.emplace(source, Bucket{burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = std::min(burst, b.tokens + absl::ToDoubleSeconds(now - b.at) * rate);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

bool OttState::Refused(const std::string& source, const std::string& why) {
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&tables_mu_);
    if (refusals_.size() >= options_.max_sources) {
      for (auto it = refusals_.begin(); it != refusals_.end();) {
        it = now - it->second.since > options_.ban_window ? refusals_.erase(it) : std::next(it);
      }
      if (refusals_.size() >= options_.max_sources) return false;
    }
    Refusals& r = refusals_[source];
    if (now - r.since > options_.ban_window) r = Refusals{0, now};
    if (++r.count < options_.ban_refusals) return false;
    refusals_.erase(source);
  }
  core::Ban ban;
  ban.id = OttBanId(source);
  ban.kind = "ott";
  ban.source = source;
  ban.reason = absl::StrCat(options_.ban_refusals, " refusals within ",
                            absl::FormatDuration(options_.ban_window), " (last: ", why, ")");
  ban.instance = instance_;
  ban.since = now;
  ban.until = now + options_.ban_length;
  bans_made_.Increment();
  core::log::Warn("source banned", {{"source", source}, {"reason", ban.reason}});
  absl::MutexLock lock(&mu_);
  if (banned_.size() < options_.max_bans) banned_.insert(source);
  // Drained at every refresh; while Redis cannot be reached, the newest are kept.
  if (to_store_.size() >= options_.max_bans) to_store_.erase(to_store_.begin());
  to_store_.push_back(std::move(ban));
  return true;
}

}  // namespace rwg::ott
