#include "services/sip_edge/protection.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace rwg::sip_edge {

void Protection::Prune(absl::Time now) {
  // Bounded memory under a spray of sources.
  auto prune = [now](std::map<std::string, Window>& m, absl::Duration w) {
    if (m.size() < 50000) return;
    for (auto it = m.begin(); it != m.end();) it = now - it->second.start > w ? m.erase(it) : ++it;
  };
  prune(requests_, options_.window);
  prune(failures_, options_.auth_window);
}

std::optional<core::Ban> Protection::CountRequest(const std::string& ip) {
  const absl::Time now = clock_.Now();
  Prune(now);
  Window& w = requests_[ip];
  if (now - w.start >= options_.window) w = Window{now, 0};
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
  bans_[b.id] = b.until;
  return b;
}

std::optional<core::Ban> Protection::CountAuthFailure(const std::string& ip,
                                                      const std::string& user) {
  const absl::Time now = clock_.Now();
  Window& w = failures_[absl::StrCat(ip, "|", user)];
  if (now - w.start >= options_.auth_window) w = Window{now, 0};
  if (++w.count != options_.auth_failures) return std::nullopt;
  core::Ban b{core::AuthBanId(ip, user),
              "auth",
              ip,
              user,
              absl::StrCat(options_.auth_failures, " failed authentications in ",
                           absl::FormatDuration(options_.auth_window)),
              "",
              now,
              now + options_.auth_ban};
  bans_[b.id] = b.until;
  w = Window{now, 0};
  return b;
}

bool Protection::SourceBanned(const std::string& ip) const {
  auto it = bans_.find(core::SourceBanId(ip));
  return it != bans_.end() && it->second > clock_.Now();
}

bool Protection::AuthBanned(const std::string& ip, const std::string& user) const {
  auto it = bans_.find(core::AuthBanId(ip, user));
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

void Protection::AddBan(const core::Ban& b) { bans_[b.id] = b.until; }

void Protection::SetBans(const std::vector<core::Ban>& bans) {
  std::map<std::string, absl::Time> next;
  for (const core::Ban& b : bans) next[b.id] = b.until;
  bans_ = std::move(next);
}

}  // namespace rwg::sip_edge
