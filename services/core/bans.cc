#include "services/core/bans.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace rwg::core {
namespace {
constexpr char kPrefix[] = "rwg:ban:";
}

std::string SourceBanId(const std::string& ip) { return absl::StrCat("src:", ip); }
std::string AuthBanId(const std::string& ip, const std::string& user) {
  return absl::StrCat("auth:", ip, "|", user);
}

absl::Status BanStore::Put(const Ban& b) {
  nlohmann::json j = {{"id", b.id},
                      {"kind", b.kind},
                      {"source", b.source},
                      {"user", b.user},
                      {"reason", b.reason},
                      {"instance", b.instance},
                      {"since", absl::ToUnixSeconds(b.since)},
                      {"until", absl::ToUnixSeconds(b.until)}};
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(b.until - b.since));
  return redis_.Command({"SET", kPrefix + b.id, j.dump(), "PX", std::to_string(ms)}).status();
}

absl::StatusOr<std::vector<Ban>> BanStore::List() {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    absl::StatusOr<RedisReply> r =
        redis_.Command({"SCAN", cursor, "MATCH", absl::StrCat(kPrefix, "*"), "COUNT", "500"});
    if (!r.ok()) return r.status();
    if (r->elements.size() != 2) return absl::InternalError("unexpected SCAN reply");
    cursor = r->elements[0].str;
    for (const RedisReply& k : r->elements[1].elements) keys.push_back(k.str);
  } while (cursor != "0");
  std::vector<Ban> out;
  if (keys.empty()) return out;
  std::vector<std::string> mget = {"MGET"};
  mget.insert(mget.end(), keys.begin(), keys.end());
  absl::StatusOr<RedisReply> vals = redis_.Command(mget);
  if (!vals.ok()) return vals.status();
  for (const RedisReply& v : vals->elements) {
    if (v.is_nil()) continue;
    nlohmann::json j = nlohmann::json::parse(v.str, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    Ban b;
    b.id = j.value("id", "");
    b.kind = j.value("kind", "");
    b.source = j.value("source", "");
    b.user = j.value("user", "");
    b.reason = j.value("reason", "");
    b.instance = j.value("instance", "");
    b.since = absl::FromUnixSeconds(j.value("since", int64_t{0}));
    b.until = absl::FromUnixSeconds(j.value("until", int64_t{0}));
    out.push_back(std::move(b));
  }
  std::sort(out.begin(), out.end(), [](const Ban& a, const Ban& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<bool> BanStore::Remove(const std::string& id) {
  absl::StatusOr<RedisReply> r = redis_.Command({"DEL", kPrefix + id});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

}  // namespace rwg::core
