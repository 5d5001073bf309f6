#include "services/sync/oauth1.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/core/crypto.h"

namespace rwg::sync {
namespace {

constexpr char kProblemPayload[] = "type.rwg/oauth_problem";

bool Unreserved(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Where a parameter came from: oauth_* parameters must all come from one place.
enum class Location { kHeader, kQuery, kBody };

absl::Status AddPairs(absl::string_view encoded, Location where, Parameters& out,
                      std::vector<Location>& locations) {
  for (absl::string_view piece : absl::StrSplit(encoded, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> nv =
        absl::StrSplit(piece, absl::MaxSplits('=', 1));
    absl::StatusOr<std::string> name = PercentDecode(nv.first, true);
    absl::StatusOr<std::string> value = PercentDecode(nv.second, true);
    if (!name.ok() || !value.ok()) {
      return OAuthProblem("parameter_rejected",
                          absl::StrCat("a malformed escape in the ",
                                       where == Location::kQuery ? "query" : "form body"));
    }
    out.all.emplace_back(*name, *value);
    locations.push_back(where);
  }
  return absl::OkStatus();
}

// The OAuth parameters of an Authorization header (RFC 5849 §3.5.1); false when the header is
// of another scheme.
absl::StatusOr<bool> AddHeader(absl::string_view header, Parameters& out,
                               std::vector<Location>& locations) {
  header = absl::StripAsciiWhitespace(header);
  if (header.size() < 5 || !absl::EqualsIgnoreCase(header.substr(0, 5), "OAuth") ||
      (header.size() > 5 && header[5] != ' ' && header[5] != '\t')) {
    return false;
  }
  absl::string_view rest = header.substr(5);
  for (absl::string_view item : absl::StrSplit(rest, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return OAuthProblem("parameter_rejected", "Authorization: a parameter without '=\"value\"'");
    }
    absl::string_view name = absl::StripAsciiWhitespace(item.substr(0, eq));
    absl::string_view quoted = absl::StripAsciiWhitespace(item.substr(eq + 1));
    if (quoted.size() < 2 || quoted.front() != '"' || quoted.back() != '"') {
      return OAuthProblem("parameter_rejected", "Authorization: a value that is not quoted");
    }
    absl::StatusOr<std::string> n = PercentDecode(name, false);
    absl::StatusOr<std::string> v = PercentDecode(quoted.substr(1, quoted.size() - 2), false);
    if (!n.ok() || !v.ok()) {
      return OAuthProblem("parameter_rejected", "Authorization: a malformed escape");
    }
    if (*n == "realm") continue;  // not a parameter of the signature
    out.all.emplace_back(*n, *v);
    locations.push_back(Location::kHeader);
  }
  return true;
}

std::string Normalize(const std::vector<std::pair<std::string, std::string>>& params) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(params.size());
  for (const auto& [n, v] : params) {
    if (n == "oauth_signature") continue;
    enc.emplace_back(PercentEncode(n), PercentEncode(v));
  }
  std::sort(enc.begin(), enc.end());
  std::vector<std::string> parts;
  parts.reserve(enc.size());
  for (const auto& [n, v] : enc) parts.push_back(absl::StrCat(n, "=", v));
  return absl::StrJoin(parts, "&");
}

}  // namespace

absl::Status OAuthProblem(absl::string_view problem, absl::string_view detail) {
  absl::Status s = absl::UnauthenticatedError(absl::StrCat(problem, ": ", detail));
  s.SetPayload(kProblemPayload, absl::Cord(problem));
  return s;
}

std::string ProblemOf(const absl::Status& status) {
  auto p = status.GetPayload(kProblemPayload);
  return p ? std::string(*p) : std::string();
}

std::string PercentEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (Unreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s, bool form) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) {
        return absl::InvalidArgumentError("a truncated %-escape");
      }
      const int hi = HexValue(s[i + 1]);
      const int lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return absl::InvalidArgumentError("a %-escape that is not hex");
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (form && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

absl::StatusOr<Parameters> CollectParameters(const SignedRequest& r) {
  Parameters out;
  std::vector<Location> locations;
  if (!r.authorization.empty()) {
    absl::StatusOr<bool> oauth = AddHeader(r.authorization, out, locations);
    if (!oauth.ok()) return oauth.status();
  }
  if (absl::Status s = AddPairs(r.query, Location::kQuery, out, locations); !s.ok()) return s;
  if (absl::Status s = AddPairs(r.form_body, Location::kBody, out, locations); !s.ok()) return s;
  std::set<Location> oauth_places;
  for (size_t i = 0; i < out.all.size(); ++i) {
    const auto& [name, value] = out.all[i];
    if (!absl::StartsWith(name, "oauth_")) continue;
    if (!out.oauth.emplace(name, value).second) {
      return OAuthProblem("parameter_rejected", absl::StrCat(name, " is given more than once"));
    }
    oauth_places.insert(locations[i]);
  }
  if (oauth_places.size() > 1) {
    return OAuthProblem("parameter_rejected",
                        "the oauth_ parameters are split between the Authorization header, "
                        "the query and the body: give them in one place");
  }
  if (out.oauth.empty()) {
    return OAuthProblem("parameter_absent", "no OAuth parameters (sign the request)");
  }
  return out;
}

std::string BaseStringUri(const SignedRequest& r) {
  const std::string scheme = absl::AsciiStrToLower(r.scheme);
  std::string host = absl::AsciiStrToLower(r.host);
  // The port goes unless it is the scheme's default; an IPv6 literal keeps its brackets.
  const size_t colon = host.rfind(':');
  const size_t bracket = host.rfind(']');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    const std::string port = host.substr(colon + 1);
    if ((scheme == "https" && port == "443") || (scheme == "http" && port == "80")) {
      host.resize(colon);
    }
  }
  return absl::StrCat(scheme, "://", host, r.path.empty() ? "/" : r.path);
}

std::string SignatureBaseString(const SignedRequest& r, const Parameters& params) {
  return absl::StrCat(absl::AsciiStrToUpper(r.method), "&", PercentEncode(BaseStringUri(r)), "&",
                      PercentEncode(Normalize(params.all)));
}

absl::StatusOr<SignatureMethod> ParseSignatureMethod(absl::string_view name) {
  if (name == "HMAC-SHA1") return SignatureMethod::kHmacSha1;
  if (name == "HMAC-SHA256") return SignatureMethod::kHmacSha256;
  if (name == "PLAINTEXT") {
    return OAuthProblem("signature_method_rejected",
                        "PLAINTEXT is not accepted: sign with HMAC-SHA1 or HMAC-SHA256");
  }
  return OAuthProblem("signature_method_rejected",
                      absl::StrCat("'", absl::CHexEscape(name.substr(0, 64)),
                                   "' is not accepted: sign with HMAC-SHA1 or HMAC-SHA256"));
}

std::string Sign(SignatureMethod method, absl::string_view base, absl::string_view client_secret,
                 absl::string_view token_secret) {
  const std::string key =
      absl::StrCat(PercentEncode(client_secret), "&", PercentEncode(token_secret));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(method == SignatureMethod::kHmacSha1 ? EVP_sha1() : EVP_sha256(), key.data(),
       static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(base.data()),
       base.size(), mac, &len);
  return absl::Base64Escape(absl::string_view(reinterpret_cast<const char*>(mac), len));
}

absl::Status VerifySignature(const SignedRequest& r, const Parameters& params,
                             absl::string_view client_secret, absl::string_view token_secret) {
  auto version = params.oauth.find("oauth_version");
  if (version != params.oauth.end() && version->second != "1.0") {
    return OAuthProblem("version_rejected", "oauth_version must be 1.0");
  }
  auto method_name = params.oauth.find("oauth_signature_method");
  if (method_name == params.oauth.end()) {
    return OAuthProblem("parameter_absent", "oauth_signature_method is missing");
  }
  absl::StatusOr<SignatureMethod> method = ParseSignatureMethod(method_name->second);
  if (!method.ok()) return method.status();
  auto signature = params.oauth.find("oauth_signature");
  if (signature == params.oauth.end()) {
    return OAuthProblem("parameter_absent", "oauth_signature is missing");
  }
  const std::string expected =
      Sign(*method, SignatureBaseString(r, params), client_secret, token_secret);
  if (!core::ConstantTimeEquals(expected, signature->second)) {
    return OAuthProblem("signature_invalid",
                        "the signature does not match (method, URL, parameters or secrets "
                        "differ from what was signed)");
  }
  return absl::OkStatus();
}

}  // namespace rwg::sync
