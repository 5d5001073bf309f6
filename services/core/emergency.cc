#include "services/core/emergency.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/core/json.h"

namespace rwg::core {
namespace {

std::string Field(const std::string& location, const std::string& number) {
  return absl::StrCat(location, "\n", number);
}

// A route written or removed and the revision bumped in one step: a reader never sees the
// table changed without the revision that tells it so.
constexpr char kPutScript[] =
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return redis.call('INCR', KEYS[2])";
constexpr char kRemoveScript[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end "
    "redis.call('INCR', KEYS[2]) return 1";

bool AllOf(absl::string_view s, absl::string_view allowed_punct) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
           allowed_punct.find(c) != absl::string_view::npos;
  });
}

}  // namespace

std::vector<std::pair<std::string, std::string>> NormalizeEmergencyRoute(EmergencyRoute& r) {
  std::vector<std::pair<std::string, std::string>> errs;
  r.location = std::string(absl::StripAsciiWhitespace(r.location));
  r.number = std::string(absl::StripAsciiWhitespace(r.number));
  r.dial = std::string(absl::StripAsciiWhitespace(r.dial));
  r.description = std::string(absl::StripAsciiWhitespace(r.description));
  if (r.location.empty()) {
    errs.push_back({"location", "must not be empty (\"*\" for every location)"});
  } else if (r.location.size() > 255) {
    errs.push_back(
        {"location", absl::StrCat("is ", r.location.size(), " bytes long; at most 255")});
  } else if (r.location != kAnyLocation) {
    for (absl::string_view seg : absl::StrSplit(r.location, '/')) {
      const bool ok = !seg.empty() && std::all_of(seg.begin(), seg.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == ' ' || c == '-' ||
               c == '_' || c == '.' || static_cast<unsigned char>(c) >= 0x80;
      });
      if (!ok) {
        errs.push_back({"location", absl::StrCat("'", r.location,
                                                 "' is not a path of names separated by / "
                                                 "(letters, digits, space, - _ .)")});
        break;
      }
    }
  }
  if (r.number.empty() || r.number.size() > 15 || !AllOf(r.number, "*#")) {
    errs.push_back({"number", absl::StrCat("'", r.number, "' is not 1 to 15 digits, * or #")});
  }
  if (r.dial.empty() || r.dial.size() > 32 || !AllOf(r.dial, "*#+") ||
      r.dial.find('+', 1) != std::string::npos) {
    errs.push_back(
        {"dial", absl::StrCat("'", r.dial, "' is not 1 to 32 digits, * or # (+ first only)")});
  }
  if (r.description.size() > 255) {
    errs.push_back(
        {"description", absl::StrCat("is ", r.description.size(), " bytes long; at most 255")});
  } else if (std::any_of(r.description.begin(), r.description.end(), [](char c) {
               return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
             })) {
    errs.push_back({"description", "must not contain control characters"});
  }
  return errs;
}

std::optional<EmergencyRoute> ResolveEmergency(const std::vector<EmergencyRoute>& routes,
                                               absl::string_view location,
                                               absl::string_view number) {
  std::string loc(absl::StripAsciiWhitespace(location));
  while (true) {
    for (const EmergencyRoute& r : routes) {
      if (r.number == number && r.location == loc) return r;
    }
    if (loc == kAnyLocation) return std::nullopt;
    const size_t slash = loc.rfind('/');
    loc = slash == std::string::npos ? std::string(kAnyLocation) : loc.substr(0, slash);
  }
}

absl::Status EmergencyStore::Put(const EmergencyRoute& r) {
  nlohmann::json j = {{"location", r.location},
                      {"number", r.number},
                      {"dial", r.dial},
                      {"description", r.description}};
  return redis_
      .Command({"EVAL", kPutScript, "2", kEmergencyKey, kEmergencyRevisionKey,
                Field(r.location, r.number), JsonDump(j)})
      .status();
}

absl::StatusOr<bool> EmergencyStore::Remove(const std::string& location,
                                            const std::string& number) {
  absl::StatusOr<RedisReply> r = redis_.Command(
      {"EVAL", kRemoveScript, "2", kEmergencyKey, kEmergencyRevisionKey, Field(location, number)});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

absl::StatusOr<EmergencyTable> EmergencyStore::List() {
  absl::StatusOr<RedisReply> all = redis_.Command({"HGETALL", kEmergencyKey});
  if (!all.ok()) return all.status();
  EmergencyTable out;
  for (size_t i = 0; i + 1 < all->elements.size(); i += 2) {
    const std::string& field = all->elements[i].str;
    const size_t nl = field.find('\n');
    DamagedEmergencyRoute damaged{field.substr(0, nl),
                                  nl == std::string::npos ? "" : field.substr(nl + 1), ""};
    std::optional<nlohmann::json> j = JsonObject(all->elements[i + 1].str);
    if (!j) {
      damaged.error = "the record is not a JSON object";
      out.damaged.push_back(std::move(damaged));
      continue;
    }
    EmergencyRoute r;
    try {
      r = {j->value("location", ""), j->value("number", ""), j->value("dial", ""),
           j->value("description", "")};
    } catch (const nlohmann::json::exception&) {
      damaged.error = "a field of the record is not a string";
      out.damaged.push_back(std::move(damaged));
      continue;
    }
    std::vector<std::pair<std::string, std::string>> errs = NormalizeEmergencyRoute(r);
    if (errs.empty() && Field(r.location, r.number) != field) {
      errs.push_back({"location", "the record does not match its key"});
    }
    if (!errs.empty()) {
      damaged.error = absl::StrCat(errs[0].first, ": ", errs[0].second);
      out.damaged.push_back(std::move(damaged));
      continue;
    }
    out.routes.push_back(std::move(r));
  }
  std::sort(out.routes.begin(), out.routes.end(),
            [](const EmergencyRoute& a, const EmergencyRoute& b) {
              return std::tie(a.location, a.number) < std::tie(b.location, b.number);
            });
  std::sort(out.damaged.begin(), out.damaged.end(),
            [](const DamagedEmergencyRoute& a, const DamagedEmergencyRoute& b) {
              return std::tie(a.location, a.number) < std::tie(b.location, b.number);
            });
  return out;
}

}  // namespace rwg::core
