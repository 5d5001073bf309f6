// Protection of the admin password checks. Each check costs 32 MiB of scrypt memory and tens
// of milliseconds, so that guessing is slow; the guard keeps that cost from becoming a denial of
// service and slows guessing further:
//   - at most `max_concurrent` checks at once; a check beyond that is refused at once
//     (RESOURCE_EXHAUSTED), never queued;
//   - `source_failures` failed checks from one source (an IPv4 address, or an IPv6 /64) within
//     `window` lock that source out for `lockout`; `user_failures` failures for one user name,
//     from any sources, lock that name out. Unknown names are counted like existing ones. A
//     locked-out attempt is refused (RESOURCE_EXHAUSTED) without looking at the password;
//   - each table holds at most `max_entries` sources or names; the least recently failed entry
//     makes room for a new one.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/clock.h"

namespace rwg::control {

struct LoginLimits {
  int max_concurrent = 2;
  int source_failures = 5;
  int user_failures = 10;
  absl::Duration window = absl::Minutes(5);
  absl::Duration lockout = absl::Minutes(5);
  size_t max_entries = 10000;
};

// What the guard saw, for metrics.
enum class LoginEvent {
  kBusy,           // refused: max_concurrent checks in progress
  kSourceLocked,   // refused: the source is locked out
  kUserLocked,     // refused: the user name is locked out
  kSourceLockout,  // a source has just been locked out
  kUserLockout,    // a user name has just been locked out
};

// The key a source is counted under, from gRPC's peer string: "ipv4:203.0.113.9:51234" gives
// "203.0.113.9", "ipv6:[2001:db8:1:2::7]:443" (or %5B...%5D) gives "2001:db8:1:2::/64", an
// IPv4-mapped IPv6 address its IPv4 address, a Unix socket "unix". Anything else is kept as
// is (at most 64 bytes).
std::string LoginSourceKey(absl::string_view peer);

// Failures per key within a sliding window; bounded, least recently failed evicted first.
class FailureTable {
 public:
  FailureTable(int limit, absl::Duration window, absl::Duration lockout, size_t max_entries);

  // When `key` is locked out at `now`: the time it is let in again.
  std::optional<absl::Time> LockedUntil(const std::string& key, absl::Time now) const;
  // Counts a failure; true when it locks `key` out.
  bool Fail(const std::string& key, absl::Time now);
  void Clear(const std::string& key);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::vector<absl::Time> failures;  // within the window, oldest first
    absl::Time locked_until = absl::InfinitePast();
    std::list<std::string>::iterator lru;
  };
  int limit_;
  absl::Duration window_;
  absl::Duration lockout_;
  size_t max_entries_;
  std::list<std::string> lru_;  // most recently failed first
  std::unordered_map<std::string, Entry> entries_;
};

class LoginGuard {
 public:
  LoginGuard(core::Clock& clock, LoginLimits limits,
             std::function<void(LoginEvent)> on_event = nullptr);

  // One password check in progress; released when destroyed.
  class Slot {
   public:
    explicit Slot(LoginGuard* guard) : guard_(guard) {}
    Slot(Slot&& o) noexcept : guard_(o.guard_) { o.guard_ = nullptr; }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    Slot& operator=(Slot&&) = delete;
    ~Slot();

   private:
    LoginGuard* guard_;
  };

  // OK, or RESOURCE_EXHAUSTED when `source` or `user` is locked out (an empty source is not
  // checked), naming which and for how long.
  absl::Status Admit(const std::string& source, const std::string& user);
  // A slot, or RESOURCE_EXHAUSTED when max_concurrent checks are in progress.
  absl::Status Acquire(std::optional<Slot>& slot);
  void Failed(const std::string& source, const std::string& user);
  // A right password: the source's and the user's failures are forgotten.
  void Succeeded(const std::string& source, const std::string& user);

  size_t sources_tracked() const;
  size_t users_tracked() const;

 private:
  void Event(LoginEvent e) {
    if (on_event_) on_event_(e);
  }
  static std::string UserKey(const std::string& user);

  core::Clock& clock_;
  LoginLimits limits_;
  std::function<void(LoginEvent)> on_event_;
  mutable absl::Mutex mu_;
  int in_progress_ ABSL_GUARDED_BY(mu_) = 0;
  FailureTable sources_ ABSL_GUARDED_BY(mu_);
  FailureTable users_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::control
