// What every request of the ott proxy consults, kept fresh by one background thread: the
// domain list and the accounts (reloaded from Redis within a second of rwg:ott:version
// changing), the certificates of the domains (read again from --cert-dir when their files
// change) and the bans of sources (rwg:ban:ott:<source>, listed and lifted with `rwgctl ban`).
// Also the per-source tables of the serving threads: request rate and refusals, both bounded.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/core/bans.h"
#include "services/core/clock.h"
#include "services/core/refresher.h"
#include "services/core/tls_identity.h"
#include "services/ott/paths.h"
#include "services/ott/store.h"

namespace rwg::ott {

std::string OttBanId(const std::string& source);

struct DomainEntry {
  pb::Domain domain;
  pb::PathLists paths;  // effective
  std::string service;  // ServiceName
  // What identifies the application's connections (host, port, TLS, CA, name) in the pool.
  std::string backend_key;
};

// One reading of the domain list and the accounts.
struct Snapshot {
  long long version = -1;
  std::map<std::string, std::shared_ptr<const DomainEntry>> domains;
  std::unordered_set<std::string> enabled_accounts;
  const DomainEntry* Find(const std::string& fqdn) const {
    auto it = domains.find(fqdn);
    return it == domains.end() ? nullptr : it->second.get();
  }
  std::shared_ptr<const DomainEntry> FindShared(const std::string& fqdn) const {
    auto it = domains.find(fqdn);
    return it == domains.end() ? nullptr : it->second;
  }
};

// The certificates under --cert-dir: <dir>/<fqdn>/tls.crt and tls.key. Thread-safe.
class CertStore {
 public:
  // `configure` sets a new context's TLS settings (versions, ciphers) before its certificate.
  CertStore(std::string dir, void (*configure)(SSL_CTX*), prometheus::Registry& registry);
  ~CertStore();
  // Reads the directory again: new or changed files are loaded (a pair that does not load,
  // whose key is not the certificate's or that is outside its validity keeps the previous one
  // and is logged once), removed ones dropped. `force` (SIGHUP) reads a refused pair again.
  void Reload(bool force = false);
  // A new reference to the FQDN's context (SSL_CTX_free it), or null.
  SSL_CTX* Get(const std::string& fqdn) const;
  bool Has(const std::string& fqdn) const;

 private:
  struct Loaded {
    SSL_CTX* ctx = nullptr;
    std::string stamp;  // sizes and modification times of both files
  };
  const std::string dir_;
  void (*const configure_)(SSL_CTX*);
  prometheus::Registry& registry_;
  prometheus::Counter& failures_;
  prometheus::Counter& reloads_loaded_;
  prometheus::Counter& reloads_refused_;
  absl::Mutex reload_mu_;  // one reload at a time
  mutable absl::Mutex mu_;
  std::map<std::string, Loaded> certs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> refused_ ABSL_GUARDED_BY(reload_mu_);  // fqdn → stamp
  // Reset first thing in the destructor: no SIGHUP runs Reload while the contexts go.
  std::optional<core::CertificateReloadHook> hook_{std::in_place,
                                                   [this] { Reload(/*force=*/true); }};
};

struct StateOptions {
  absl::Duration refresh = absl::Seconds(1);
  absl::Duration cert_reload = absl::Seconds(1);
  size_t max_bans = 200000;
  size_t max_sources = 100000;      // per-source tables (rate, refusals)
  double requests_per_second = 50;  // per source; bursts of twice as many
  int ban_refusals = 30;            // refusals within ban_window that ban the source
  absl::Duration ban_window = absl::Minutes(1);
  absl::Duration ban_length = absl::Minutes(10);
};

class OttState {
 public:
  OttState(OttStore& store, core::RedisClient& redis, CertStore& certs, core::Clock& clock,
           std::string instance, StateOptions options, prometheus::Registry& registry);
  ~OttState() { Stop(); }

  // Reads once (an error when Redis cannot be reached), then keeps reading in the background.
  absl::Status Start();
  void Stop();

  std::shared_ptr<const Snapshot> Get() const;
  CertStore& certs() { return certs_; }
  bool Banned(const std::string& source) const;
  // Takes one request from the source's allowance; false when it has none left.
  bool AllowRequest(const std::string& source);
  // Counts a refusal (unknown host, path off the lists, failed login); the one that reaches
  // the threshold bans the source. True when the source is now banned.
  bool Refused(const std::string& source, const std::string& why);
  absl::Status last_status() const;

 private:
  absl::Status Refresh();

  OttStore& store_;
  core::BanStore bans_;
  CertStore& certs_;
  core::Clock& clock_;
  const std::string instance_;
  const StateOptions options_;
  prometheus::Family<prometheus::Gauge>& domains_gauge_;
  prometheus::Counter& bans_made_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<std::string> banned_ ABSL_GUARDED_BY(mu_);
  std::vector<core::Ban> to_store_ ABSL_GUARDED_BY(mu_);
  absl::Time last_cert_reload_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_full_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  struct Bucket {
    double tokens = 0;
    absl::Time at;
  };
  struct Refusals {
    int count = 0;
    absl::Time since;
  };
  mutable absl::Mutex tables_mu_;
  std::unordered_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(tables_mu_);
  std::unordered_map<std::string, Refusals> refusals_ ABSL_GUARDED_BY(tables_mu_);
  absl::Time last_sweep_ ABSL_GUARDED_BY(tables_mu_) = absl::InfinitePast();

  // Last: stopped (its thread joined) before the members Refresh uses go.
  core::Refresher refresher_{"the domains, accounts and bans", [this] { return Refresh(); }};
};

}  // namespace rwg::ott
