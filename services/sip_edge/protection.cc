#include "services/sip_edge/protection.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace rwg::sip_edge {

Protection::Window& Protection::Counts::At(const std::string& key, absl::Time now,
                                           absl::Duration length) {
  // Windows that ended, and the oldest beyond the limit, are forgotten. A key whose window
  // restarted has a newer entry further back: only the entry matching its start removes it.
  while (!order.empty() && (now - order.front().first >= length || windows.size() >= kMaxCounted)) {
    auto it = windows.find(order.front().second);
    if (it != windows.end() && it->second.start == order.front().first) windows.erase(it);
    order.pop_front();
  }
  auto [it, fresh] = windows.try_emplace(key, Window{now, 0});
  if (fresh) {
    order.emplace_back(now, key);
  } else if (now - it->second.start >= length) {
    it->second = Window{now, 0};
    order.emplace_back(now, key);
  }
  return it->second;
}

std::optional<core::Ban> Protection::CountRequest(const std::string& address) {
  const std::string ip = SourceKey(address);
  const absl::Time now = clock_.Now();
  Window& w = requests_.At(ip, now, options_.window);
  if (++w.count != options_.requests + 1) return std::nullopt;
  core::Ban b{core::SourceBanId(ip),
              "source",
              ip,
              "",
              absl::StrCat("more than ", options_.requests, " requests in ",
                           absl::FormatDuration(options_.window)),
              "",
              now,
              now + options_.ban};
  KeepBan(b.id, b.until);
  return b;
}

std::optional<core::Ban> Protection::CountAuthFailure(const std::string& address,
                                                      const std::string& user) {
  const std::string ip = SourceKey(address);
  const absl::Time now = clock_.Now();
  // Counted and banned by a bounded key, whatever the length of the name a phone sends.
  const std::string user_key = core::BanUserKey(user);
  Window& w = failures_.At(absl::StrCat(ip, "|", user_key), now, options_.auth_window);
  if (++w.count != options_.auth_failures) return std::nullopt;
  core::Ban b{core::AuthBanId(ip, user),
              "auth",
              ip,
              user_key,
              absl::StrCat(options_.auth_failures, " failed authentications in ",
                           absl::FormatDuration(options_.auth_window)),
              "",
              now,
              now + options_.auth_ban};
  KeepBan(b.id, b.until);
  w.count = 0;  // counting starts again (the window ends before the ban does)
  return b;
}

bool Protection::SourceBanned(const std::string& ip) const {
  auto it = bans_.find(core::SourceBanId(SourceKey(ip)));
  return it != bans_.end() && it->second > clock_.Now();
}

bool Protection::AuthBanned(const std::string& ip, const std::string& user) const {
  auto it = bans_.find(core::AuthBanId(SourceKey(ip), user));
  return it != bans_.end() && it->second > clock_.Now();
}

std::vector<std::string> Protection::BannedSources() const {
  const std::string prefix = core::SourceBanId("");
  const absl::Time now = clock_.Now();
  std::vector<std::string> out;
  for (const auto& [id, until] : bans_) {
    if (until > now && absl::StartsWith(id, prefix)) out.push_back(id.substr(prefix.size()));
  }
  return out;
}

void Protection::AddBan(const core::Ban& b) { KeepBan(b.id, b.until); }

void Protection::SetBans(const std::vector<core::Ban>& bans) {
  bans_.clear();
  by_end_.clear();
  for (const core::Ban& b : bans) KeepBan(b.id, b.until);
}

void Protection::KeepBan(const std::string& id, absl::Time until) {
  auto it = bans_.find(id);
  if (it != bans_.end()) {
    by_end_.erase({it->second, id});
    it->second = until;
  } else {
    // Full: the bans that ended go first, then those that end first.
    const absl::Time now = clock_.Now();
    while (!by_end_.empty() && (bans_.size() >= kMaxBans || by_end_.begin()->first <= now)) {
      bans_.erase(by_end_.begin()->second);
      by_end_.erase(by_end_.begin());
    }
    it = bans_.emplace(id, until).first;
  }
  by_end_.emplace(until, id);
}

}  // namespace rwg::sip_edge
