#include "services/provisioning/http_rules.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rwg::provisioning {
namespace {

constexpr char kDateFormat[] = "%a, %d %b %Y %H:%M:%S GMT";

// Entity tags compare weakly here: "W/" is ignored on both sides.
absl::string_view Opaque(absl::string_view tag) {
  tag = absl::StripAsciiWhitespace(tag);
  absl::ConsumePrefix(&tag, "W/");
  return tag;
}

bool ParseUint(absl::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(s, v);
}

}  // namespace

std::string ETagFor(const FileInfo& f) {
  return absl::StrCat("\"", absl::Hex(f.inode), "-", absl::Hex(f.size), "-",
                      absl::Hex(absl::ToUnixNanos(f.modified)), "\"");
}

std::string HttpDate(absl::Time t) { return absl::FormatTime(kDateFormat, t, absl::UTCTimeZone()); }

std::optional<absl::Time> ParseHttpDate(absl::string_view s) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(kDateFormat, s, absl::UTCTimeZone(), &t, &err)) return std::nullopt;
  return t;
}

bool NotModified(absl::string_view if_none_match, absl::string_view if_modified_since,
                 const std::string& etag, absl::Time modified) {
  if (!absl::StripAsciiWhitespace(if_none_match).empty()) {
    for (absl::string_view tag : absl::StrSplit(if_none_match, ',')) {
      if (absl::StripAsciiWhitespace(tag) == "*" || Opaque(tag) == Opaque(etag)) return true;
    }
    return false;
  }
  if (if_modified_since.empty()) return false;
  std::optional<absl::Time> since = ParseHttpDate(absl::StripAsciiWhitespace(if_modified_since));
  if (!since) return false;
  return absl::ToUnixSeconds(modified) <= absl::ToUnixSeconds(*since);
}

RangeResult ParseRange(absl::string_view range, absl::string_view if_range, uint64_t size,
                       const std::string& etag, absl::Time modified, ByteRange* out) {
  range = absl::StripAsciiWhitespace(range);
  if (range.empty()) return RangeResult::kWhole;
  if_range = absl::StripAsciiWhitespace(if_range);
  if (!if_range.empty()) {
    if (absl::StartsWith(if_range, "\"")) {
      if (if_range != etag) return RangeResult::kWhole;  // strong comparison
    } else {
      std::optional<absl::Time> d = ParseHttpDate(if_range);
      if (!d || absl::ToUnixSeconds(*d) != absl::ToUnixSeconds(modified)) {
        return RangeResult::kWhole;
      }
    }
  }
  if (!absl::ConsumePrefix(&range, "bytes=")) return RangeResult::kWhole;
  if (absl::StrContains(range, ',')) return RangeResult::kWhole;
  const size_t dash = range.find('-');
  if (dash == absl::string_view::npos) return RangeResult::kWhole;
  absl::string_view first = absl::StripAsciiWhitespace(range.substr(0, dash));
  absl::string_view last = absl::StripAsciiWhitespace(range.substr(dash + 1));
  uint64_t a = 0;
  uint64_t b = 0;
  if (first.empty()) {  // the last n bytes
    if (!ParseUint(last, &b)) return RangeResult::kWhole;
    if (b == 0) return RangeResult::kUnsatisfiable;
    const uint64_t n = std::min(b, size);
    if (n == 0) return RangeResult::kUnsatisfiable;
    *out = {size - n, n};
    return RangeResult::kPartial;
  }
  if (!ParseUint(first, &a)) return RangeResult::kWhole;
  if (!last.empty() && (!ParseUint(last, &b) || b < a)) return RangeResult::kWhole;
  if (a >= size) return RangeResult::kUnsatisfiable;
  const uint64_t end = last.empty() ? size - 1 : std::min(b, size - 1);
  *out = {a, end - a + 1};
  return RangeResult::kPartial;
}

const char* ContentTypeFor(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (absl::EndsWith(lower, ".cfg") || absl::EndsWith(lower, ".txt")) {
    return "text/plain; charset=utf-8";
  }
  if (absl::EndsWith(lower, ".xml")) return "application/xml";
  if (absl::EndsWith(lower, ".pem") || absl::EndsWith(lower, ".crt")) {
    return "application/x-pem-file";
  }
  return "application/octet-stream";
}

const char* FileKind(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (absl::EndsWith(lower, ".cfg") || absl::EndsWith(lower, ".txt")) return "cfg";
  if (absl::EndsWith(lower, ".xml")) return "xml";
  if (absl::EndsWith(lower, ".pem") || absl::EndsWith(lower, ".crt")) return "cert";
  if (absl::EndsWith(lower, ".st") || absl::EndsWith(lower, ".bin") ||
      absl::EndsWith(lower, ".img") || absl::EndsWith(lower, ".tar")) {
    return "firmware";
  }
  return "other";
}

}  // namespace rwg::provisioning
