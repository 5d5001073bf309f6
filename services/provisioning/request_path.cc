#include "services/provisioning/request_path.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/core/phone_fetches.h"

namespace rwg::provisioning {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(static_cast<unsigned char>(c));
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Decodes one path segment's percent-escapes.
absl::StatusOr<std::string> DecodeSegment(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '\\') {
      return absl::InvalidArgumentError("request target: control character or backslash");
    }
    if (c != '%') {
      out.push_back(static_cast<char>(c));
      continue;
    }
    const int hi = i + 2 < s.size() ? HexValue(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("request target: bad percent-escape");
    const int v = hi * 16 + lo;
    if (v == 0) return absl::InvalidArgumentError("request target: encoded NUL");
    if (v == '/' || v == '\\') {
      return absl::InvalidArgumentError("request target: encoded slash");
    }
    if (v < 0x20 || v == 0x7f) {
      return absl::InvalidArgumentError("request target: encoded control character");
    }
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

}  // namespace

bool IsStoreName(absl::string_view name) {
  if (name.empty() || name.size() > 255 || name[0] == '.') return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

std::string StoreName(absl::string_view file) {
  if (file.size() == 16 && absl::EndsWithIgnoreCase(file, ".cfg")) {
    absl::string_view stem = file.substr(0, 12);
    bool hex = true;
    for (char c : stem) hex = hex && HexValue(c) >= 0;
    if (hex) return absl::StrCat(absl::AsciiStrToUpper(stem), ".cfg");
  }
  return std::string(file);
}

std::string MacOfFile(absl::string_view name) {
  if (name.size() < 13 || (name[12] != '.' && name[12] != '-')) return "";
  for (char c : name.substr(0, 12)) {
    if (HexValue(c) < 0) return "";
  }
  return absl::AsciiStrToUpper(name.substr(0, 12));
}

std::string MacOfConfigFile(absl::string_view store_name) {
  if (store_name.size() != 16 || !absl::EndsWith(store_name, ".cfg") ||
      !core::IsPhoneFetchMac(store_name.substr(0, 12))) {
    return "";
  }
  return std::string(store_name.substr(0, 12));
}

absl::StatusOr<RequestPath> ParseRequestPath(absl::string_view target) {
  if (target.size() > kMaxTarget) return absl::InvalidArgumentError("request target too long");
  if (target.empty() || target[0] != '/') {
    return absl::InvalidArgumentError("request target: not an absolute path");
  }
  absl::string_view path = target;
  bool has_query = false;
  if (size_t q = target.find('?'); q != absl::string_view::npos) {
    path = target.substr(0, q);
    has_query = true;
    for (char c : target.substr(q)) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return absl::InvalidArgumentError("request target: control character in the query");
      }
    }
  }
  std::vector<absl::string_view> raw = absl::StrSplit(path.substr(1), '/');
  std::vector<std::string> segments;
  for (size_t i = 0; i < raw.size(); ++i) {
    absl::StatusOr<std::string> s = DecodeSegment(raw[i]);
    if (!s.ok()) return s.status();
    // A trailing empty segment ("/<hash>/omm.mghc/") is a directory-style path to proxy.
    const bool last = i + 1 == raw.size();
    if ((s->empty() && !last) || *s == "." || *s == "..") {
      return absl::NotFoundError("request target: empty, '.' or '..' segment");
    }
    segments.push_back(*std::move(s));
  }
  RequestPath out;
  out.hash = segments[0];
  if (out.hash.empty()) return absl::NotFoundError("request target: no hash");
  if (segments.size() >= 2 && segments[1] == kFilesDir) {
    if (segments.size() != 3 || has_query || !IsStoreName(segments[2])) {
      return absl::NotFoundError("request target: not a file name of the store");
    }
    out.kind = RequestPath::Kind::kFile;
    out.file = StoreName(segments[2]);
    return out;
  }
  if (segments.size() < 2) return absl::NotFoundError("request target: nothing under the hash");
  out.kind = RequestPath::Kind::kProxy;
  return out;
}

std::string RedactHash(absl::string_view target) {
  if (target.empty() || target[0] != '/') return "<unparsed>";
  const size_t end = target.find_first_of("/?", 1);
  return absl::StrCat("/<hash>", end == absl::string_view::npos ? "" : target.substr(end));
}

}  // namespace rwg::provisioning
