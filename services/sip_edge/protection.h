// Flood and password-guessing protection for the set side (R-SIP, docs/sip-edge.md §7), in the
// manner of Kamailio's pike: a source sending more than `requests` in `window` is banned for `ban`;
// `auth_failures` wrong digest answers for one user from one source within `auth_window` ban that
// source+user pair for `auth_ban`. The normal first 401 is not a failure. The iPBX's addresses are
// never banned (the caller does not ask for them).
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/time/time.h"
#include "services/core/address.h"
#include "services/core/bans.h"
#include "services/core/clock.h"

namespace rwg::sip_edge {

struct ProtectionOptions {
  int requests = 16;
  absl::Duration window = absl::Seconds(2);
  absl::Duration ban = absl::Minutes(5);
  int auth_failures = 5;
  absl::Duration auth_window = absl::Minutes(5);
  absl::Duration auth_ban = absl::Minutes(10);
};

// What flood and guessing counters and bans are kept per: the same key as provisioning's
// (services/core/address.h: an IPv4 address, or the /64 of an IPv6 address).
using core::SourceKey;

class Protection {
 public:
  Protection(ProtectionOptions options, core::Clock& clock) : options_(options), clock_(clock) {}

  // Counts a request from `ip`. Returns a new ban when this request crossed the threshold.
  std::optional<core::Ban> CountRequest(const std::string& ip);
  // Counts a failed digest answer. Returns a new ban when this failure crossed the threshold.
  std::optional<core::Ban> CountAuthFailure(const std::string& ip, const std::string& user);

  bool SourceBanned(const std::string& ip) const;
  bool AuthBanned(const std::string& ip, const std::string& user) const;
  // Sources under a ban now: IPv4 addresses and IPv6 /64 prefixes ("2001:db8::/64").
  std::vector<std::string> BannedSources() const;

  // Replaces the known bans with those read from Redis (all instances).
  void SetBans(const std::vector<core::Ban>& bans);
  // Adds one ban (made here, maybe not in the last read from Redis yet).
  void AddBan(const core::Ban& ban);

 private:
  struct Window {
    absl::Time start;
    int count = 0;
  };
  // Counting windows by key, forgotten in the order they started (amortised constant time
  // per request, however many sources are counted). At most kMaxCounted keys: beyond, the
  // oldest windows are forgotten early (a spray of sources costs memory, not time).
  struct Counts {
    std::unordered_map<std::string, Window> windows;
    std::deque<std::pair<absl::Time, std::string>> order;  // (window start, key)
    Window& At(const std::string& key, absl::Time now, absl::Duration length);
    size_t size() const { return windows.size(); }
  };

 public:
  static constexpr size_t kMaxCounted = 200000;
  // At most this many bans are kept; beyond, those that end first are forgotten first.
  static constexpr size_t kMaxBans = 200000;
  size_t counted() const { return requests_.size() + failures_.size(); }
  size_t bans() const { return bans_.size(); }

 private:
  void KeepBan(const std::string& id, absl::Time until);

  ProtectionOptions options_;
  core::Clock& clock_;
  Counts requests_;
  Counts failures_;
  std::map<std::string, absl::Time> bans_;               // id -> until
  std::set<std::pair<absl::Time, std::string>> by_end_;  // (until, id) of every entry of bans_
};

}  // namespace rwg::sip_edge
