#include "services/ott/paths.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rwg::ott {

namespace {

struct ServiceDef {
  pb::Service service;
  const char* name;
  const char* description;
  std::vector<std::string> user, admin, common;
};

const std::vector<ServiceDef>& Defs() {
  // The applications' own paths; a site whose applications sit elsewhere gives the domain its
  // own lists.
  static const std::vector<ServiceDef> defs = {
      {pb::SERVICE_USER_PORTAL,
       "user-portal",
       "MiVoice 5000 User Portal on the MiVoice 5000 Manager",
       {"/userportal/", "/UserPortal/", "/sso/"},
       {},
       {"/favicon.ico", "/static/", "/resources/"}},
      {pb::SERVICE_WEB_CLIENT,
       "web-client",
       "MiVoice 5000 Manager Web Client (WebSocket)",
       {"/webclient/", "/WebClient/", "/ws/"},
       {},
       {"/favicon.ico", "/static/", "/resources/"}},
      {pb::SERVICE_EMBEDDED_USER_PORTAL,
       "embedded-user-portal",
       "User Portal embedded in the MiVoice 5000 Server (HTTPS 443)",
       {"/userportal/", "/UserPortal/"},
       {},
       {"/favicon.ico", "/static/"}},
      {pb::SERVICE_WEB_ADMIN,
       "web-admin",
       "MiVoice 5000 Web Admin (rwg's login first)",
       {},
       {"/"},
       {"/favicon.ico"}},
  };
  return defs;
}

const ServiceDef* Find(pb::Service s) {
  for (const ServiceDef& d : Defs()) {
    if (d.service == s) return &d;
  }
  return nullptr;
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool Same(absl::string_view a, absl::string_view b, bool any_case) {
  return any_case ? absl::EqualsIgnoreCase(a, b) : a == b;
}

bool Matches(const google::protobuf::RepeatedPtrField<std::string>& list, absl::string_view path,
             bool any_case) {
  for (const std::string& e : list) {
    if (e.empty()) continue;
    if (e.back() == '/') {
      if (path.size() >= e.size() && Same(path.substr(0, e.size()), e, any_case)) return true;
      if (Same(path, absl::string_view(e).substr(0, e.size() - 1), any_case)) return true;
    } else if (Same(path, e, any_case)) {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::string_view ServiceName(pb::Service service) {
  const ServiceDef* d = Find(service);
  return d == nullptr ? "" : d->name;
}

absl::StatusOr<pb::Service> ParseService(absl::string_view name, absl::string_view field) {
  for (const ServiceDef& d : Defs()) {
    if (name == d.name || name == pb::Service_Name(d.service)) return d.service;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": '", absl::CHexEscape(name.substr(0, 64)),
                   "' is not a service (user-portal, web-client, embedded-user-portal, "
                   "web-admin)"));
}

pb::PathLists DefaultPaths(pb::Service service) {
  pb::PathLists l;
  const ServiceDef* d = Find(service);
  if (d == nullptr) return l;
  for (const std::string& p : d->user) l.add_user(p);
  for (const std::string& p : d->admin) l.add_admin(p);
  for (const std::string& p : d->common) l.add_common(p);
  return l;
}

std::vector<pb::ServiceInfo> Services() {
  std::vector<pb::ServiceInfo> out;
  for (const ServiceDef& d : Defs()) {
    pb::ServiceInfo i;
    i.set_service(d.service);
    i.set_name(d.name);
    i.set_description(d.description);
    *i.mutable_default_paths() = DefaultPaths(d.service);
    out.push_back(std::move(i));
  }
  return out;
}

pb::PathLists EffectivePaths(const pb::Domain& domain) {
  const pb::PathLists& p = domain.paths();
  if (p.user_size() + p.admin_size() + p.common_size() > 0) return p;
  return DefaultPaths(domain.service());
}

absl::Status ValidatePathEntry(absl::string_view entry, absl::string_view field) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", absl::CHexEscape(entry.substr(0, 64)), "' ", why));
  };
  if (entry.empty() || entry.front() != '/') return bad("does not start with '/'");
  if (entry.size() > 256) return bad("is longer than 256 bytes");
  for (char c : entry) {
    if (c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '%' || c == '\\') {
      return bad("holds a character a path entry may not (space, control, ?, #, %, \\)");
    }
  }
  for (absl::string_view seg : absl::StrSplit(entry, '/')) {
    if (seg == "." || seg == "..") return bad("holds a '.' or '..' segment");
  }
  return absl::OkStatus();
}

namespace {
// True when `path` (starting with '/') is its own normal form: printable ASCII without '\\'
// or '%', no empty segment ("//") and no "." or ".." segment. What the loop below makes of
// such a path is the path itself, and most requests' paths are such.
bool IsNormal(absl::string_view path) {
  for (size_t i = 0; i < path.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(path[i]);
    if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '%') return false;
    if (c != '/') continue;
    const absl::string_view next = path.substr(i + 1);
    if (absl::StartsWith(next, "/")) return false;
    const absl::string_view segment = next.substr(0, next.find('/'));
    if (segment == "." || segment == "..") return false;
  }
  return true;
}
}  // namespace

absl::StatusOr<std::string> NormalizePath(absl::string_view target, size_t max_length) {
  if (target.size() > max_length) {
    return absl::InvalidArgumentError(absl::StrCat("path longer than ", max_length, " bytes"));
  }
  if (target.empty() || target.front() != '/') {
    return absl::InvalidArgumentError("request target is not a path");
  }
  const size_t end = target.find_first_of("?#");
  const absl::string_view raw = target.substr(0, end);
  if (IsNormal(raw)) return std::string(raw);
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return absl::InvalidArgumentError("path holds a byte outside printable ASCII");
    }
    if (c == '\\') return absl::InvalidArgumentError("path holds a '\\'");
    if (c == '%') {
      if (i + 2 >= raw.size()) {
        return absl::InvalidArgumentError("path holds a truncated percent escape");
      }
      const int h = Hex(raw[i + 1]);
      const int l = Hex(raw[i + 2]);
      if (h < 0 || l < 0) return absl::InvalidArgumentError("path holds a bad percent escape");
      const int v = h * 16 + l;
      if (v == '/' || v == '\\' || v == '.' || v == '%' || v == 0) {
        return absl::InvalidArgumentError("path holds an encoded '/', '\\', '.', '%' or NUL");
      }
      i += 2;
      // An unreserved character is the same decoded (RFC 3986 §2.3): decoded, so that
      // "/%61dmin/" is checked, and forwarded, as "/admin/". Any other stays encoded, in upper
      // case.
      if (absl::ascii_isalnum(static_cast<unsigned char>(v)) || v == '-' || v == '_' || v == '~') {
        out.push_back(static_cast<char>(v));
      } else {
        static constexpr char kHex[] = "0123456789ABCDEF";
        out.push_back('%');
        out.push_back(kHex[v >> 4]);
        out.push_back(kHex[v & 15]);
      }
      continue;
    }
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  for (absl::string_view seg : absl::StrSplit(out, '/')) {
    if (seg == "." || seg == "..") {
      return absl::InvalidArgumentError("path holds a '.' or '..' segment");
    }
  }
  return out;
}

Access Classify(const pb::PathLists& lists, absl::string_view path) {
  if (Matches(lists.common(), path, false)) return Access::kCommon;
  // In any case: an application that does not tell "/Admin/" from "/admin/" must not be
  // reached at its admin paths without rwg's login.
  if (Matches(lists.admin(), path, true)) return Access::kAdmin;
  if (Matches(lists.user(), path, false)) return Access::kUser;
  return Access::kRefused;
}

}  // namespace rwg::ott
