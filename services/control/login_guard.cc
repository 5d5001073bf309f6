#include "services/control/login_guard.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

namespace rwg::control {
namespace {

// "4m59s" style, rounded up to the second.
std::string Wait(absl::Duration d) {
  return absl::FormatDuration(absl::Ceil(std::max(d, absl::Seconds(1)), absl::Seconds(1)));
}

}  // namespace

std::string LoginSourceKey(absl::string_view peer) {
  std::string p = absl::StrReplaceAll(
      peer, {{"%5B", "["}, {"%5D", "]"}, {"%5b", "["}, {"%5d", "]"}, {"%25", "%"}});
  absl::string_view v = p;
  if (absl::StartsWith(v, "unix:") || absl::StartsWith(v, "unix-abstract:")) return "unix";
  if (absl::ConsumePrefix(&v, "ipv4:")) {
    const size_t colon = v.rfind(':');
    std::string addr(v.substr(0, colon));
    in_addr a;
    if (inet_pton(AF_INET, addr.c_str(), &a) == 1) return addr;
  } else if (absl::ConsumePrefix(&v, "ipv6:") && absl::ConsumePrefix(&v, "[")) {
    std::string addr(v.substr(0, v.find(']')));
    addr = addr.substr(0, addr.find('%'));  // zone index
    in6_addr a;
    if (inet_pton(AF_INET6, addr.c_str(), &a) == 1) {
      static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      char buf[INET6_ADDRSTRLEN];
      if (std::memcmp(a.s6_addr, kMapped, sizeof kMapped) == 0) {
        in_addr v4;
        std::memcpy(&v4, a.s6_addr + 12, 4);
        return inet_ntop(AF_INET, &v4, buf, sizeof buf);
      }
      std::memset(a.s6_addr + 8, 0, 8);  // the /64: one site, one customer
      return absl::StrCat(inet_ntop(AF_INET6, &a, buf, sizeof buf), "/64");
    }
  }
  return std::string(peer.substr(0, 64));
}

FailureTable::FailureTable(int limit, absl::Duration window, absl::Duration lockout,
                           size_t max_entries)
    : limit_(std::max(1, limit)),
      window_(window),
      lockout_(lockout),
      max_entries_(std::max<size_t>(1, max_entries)) {}

std::optional<absl::Time> FailureTable::LockedUntil(const std::string& key, absl::Time now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.locked_until <= now) return std::nullopt;
  return it->second.locked_until;
}

bool FailureTable::Fail(const std::string& key, absl::Time now) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    it = entries_.emplace(key, Entry{}).first;
    it->second.lru = lru_.begin();
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Entry& e = it->second;
  std::erase_if(e.failures, [&](absl::Time t) { return t <= now - window_; });
  e.failures.push_back(now);
  if (static_cast<int>(e.failures.size()) < limit_) return false;
  e.failures.clear();
  e.locked_until = now + lockout_;
  return true;
}

void FailureTable::Clear(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

LoginGuard::Slot::~Slot() {
  if (guard_ == nullptr) return;
  absl::MutexLock lock(&guard_->mu_);
  --guard_->in_progress_;
}

LoginGuard::LoginGuard(core::Clock& clock, LoginLimits limits,
                       std::function<void(LoginEvent)> on_event)
    : clock_(clock),
      limits_(limits),
      on_event_(std::move(on_event)),
      sources_(limits.source_failures, limits.window, limits.lockout, limits.max_entries),
      users_(limits.user_failures, limits.window, limits.lockout, limits.max_entries) {}

std::string LoginGuard::UserKey(const std::string& user) {
  return user.substr(0, 128);  // a long name costs no more memory than a short one
}

absl::Status LoginGuard::Admit(const std::string& source, const std::string& user) {
  const absl::Time now = clock_.Now();
  std::optional<absl::Time> until;
  LoginEvent event;
  std::string what;
  {
    absl::MutexLock lock(&mu_);
    if (!source.empty() && (until = sources_.LockedUntil(source, now))) {
      event = LoginEvent::kSourceLocked;
      what = "from this address";
    } else if ((until = users_.LockedUntil(UserKey(user), now))) {
      event = LoginEvent::kUserLocked;
      what = "for this username";
    } else {
      return absl::OkStatus();
    }
  }
  Event(event);
  return absl::ResourceExhaustedError(
      absl::StrCat("too many failed logins ", what, "; try again in ", Wait(*until - now)));
}

absl::Status LoginGuard::Acquire(std::optional<Slot>& slot) {
  {
    absl::MutexLock lock(&mu_);
    if (in_progress_ < limits_.max_concurrent) {
      ++in_progress_;
      slot.emplace(this);
      return absl::OkStatus();
    }
  }
  Event(LoginEvent::kBusy);
  return absl::ResourceExhaustedError(absl::StrCat(
      "busy: ", limits_.max_concurrent, " password checks in progress; try again in a moment"));
}

void LoginGuard::Failed(const std::string& source, const std::string& user) {
  const absl::Time now = clock_.Now();
  bool source_locked = false, user_locked = false;
  {
    absl::MutexLock lock(&mu_);
    if (!source.empty()) source_locked = sources_.Fail(source, now);
    user_locked = users_.Fail(UserKey(user), now);
  }
  if (source_locked) Event(LoginEvent::kSourceLockout);
  if (user_locked) Event(LoginEvent::kUserLockout);
}

void LoginGuard::Succeeded(const std::string& source, const std::string& user) {
  absl::MutexLock lock(&mu_);
  if (!source.empty()) sources_.Clear(source);
  users_.Clear(UserKey(user));
}

size_t LoginGuard::sources_tracked() const {
  absl::MutexLock lock(&mu_);
  return sources_.size();
}

size_t LoginGuard::users_tracked() const {
  absl::MutexLock lock(&mu_);
  return users_.size();
}

}  // namespace rwg::control
