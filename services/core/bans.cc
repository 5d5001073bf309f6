#include "services/core/bans.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/crypto.h"
#include "services/core/json.h"
#include "services/core/keys.h"
#include "services/core/log.h"

namespace rwg::core {
namespace {}

std::string SourceBanId(const std::string& ip) { return absl::StrCat("src:", ip); }
std::string AuthBanId(const std::string& ip, const std::string& user) {
  return absl::StrCat("auth:", ip, "|", BanUserKey(user));
}

std::string BanUserKey(const std::string& user) {
  const auto plain = [](unsigned char c) { return c > ' ' && c < 0x7f && c != '#' && c != '\\'; };
  if (user.size() <= kBanUserPlainMax && std::all_of(user.begin(), user.end(), plain)) {
    return user;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < user.size() && i < kBanUserPlainMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(user[i]);
    if (plain(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.append("\\x");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  absl::StrAppend(&out, "#", Sha256Hex(user).substr(0, 16));
  return out;
}

std::string BanToJson(const Ban& b) {
  nlohmann::json j = {{"id", b.id},
                      {"kind", b.kind},
                      {"source", b.source},
                      {"user", b.user},
                      {"reason", b.reason},
                      {"instance", b.instance},
                      {"since", absl::ToUnixSeconds(b.since)},
                      {"until", absl::ToUnixSeconds(b.until)}};
  return JsonDump(j);
}

absl::StatusOr<Ban> BanFromJson(std::string_view json) {
  std::optional<nlohmann::json> j = JsonObject(json);
  if (!j) return absl::DataLossError("not a JSON object");
  Ban b;
  try {
    b.kind = j->value("kind", "");
    b.source = j->value("source", "");
    b.user = j->value("user", "");
    b.reason = j->value("reason", "");
    b.instance = j->value("instance", "");
    b.since = absl::FromUnixSeconds(JsonNumber<int64_t>(*j, "since", 0));
    b.until = absl::FromUnixSeconds(JsonNumber<int64_t>(*j, "until", 0));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(e.what());
  }
  return b;
}

std::vector<std::string> BanStore::PutCommand(const Ban& b) {
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(b.until - b.since));
  return {"SET", kBanPrefix + b.id, BanToJson(b), "PX", std::to_string(ms)};
}

absl::Status BanStore::Put(const Ban& b) { return redis_.Command(PutCommand(b)).status(); }

void BanStore::Put(const Ban& b, AsyncRedisCommands& redis,
                   std::function<void(absl::Status)> done) {
  redis.Command(PutCommand(b), [done = std::move(done)](const absl::StatusOr<RedisReply>& r) {
    done(r.status());
  });
}

absl::StatusOr<std::vector<Ban>> BanStore::List() {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    absl::StatusOr<RedisReply> r =
        redis_.Command({"SCAN", cursor, "MATCH", absl::StrCat(kBanPrefix, "*"), "COUNT", "500"});
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
  for (size_t i = 0; i < vals->elements.size() && i < keys.size(); ++i) {
    const RedisReply& v = vals->elements[i];
    if (v.is_nil()) continue;  // lifted or ended since the SCAN
    absl::StatusOr<Ban> b = BanFromJson(v.str);
    if (!b.ok()) {
      log::Warn("damaged ban record skipped",
                {{"key", keys[i]}, {"error", std::string(b.status().message())}});
      continue;
    }
    b->id = keys[i].substr(sizeof(kBanPrefix) - 1);  // the key's: what removing the ban deletes
    out.push_back(*std::move(b));
  }
  std::sort(out.begin(), out.end(), [](const Ban& a, const Ban& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<bool> BanStore::Remove(const std::string& id) {
  absl::StatusOr<RedisReply> r = redis_.Command({"DEL", kBanPrefix + id});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

}  // namespace rwg::core
