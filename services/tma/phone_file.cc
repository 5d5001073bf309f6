#include "services/tma/phone_file.h"

#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace rwg::tma {
namespace {

constexpr size_t kMaxNameLength = 64;

// A line break inside a value or a comment would start a new line of the file, that is
// another parameter: it becomes a space.
std::string OneLine(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return out;
}

void AppendLine(std::string& out, const Param& p) {
  absl::StrAppend(&out, p.locked ? "!" : "", OneLine(p.name), p.value.empty() ? ":" : ": ",
                  OneLine(p.value), "\n");
}

// The parameters every Remote Worker phone gets, all locked: each one is part of how the
// phone reaches rwg (TLS to the SIP edge, HTTPS to provisioning, no redirection service)
// or of the calls' security, none is a user's preference.
std::vector<Param> FixedParams(const PhoneFileOptions& options) {
  std::vector<Param> fixed = {
      {"sip transport protocol", "4", true},  // 1 UDP, 2 TCP, 4 TLS
      {"sip proxy port", absl::StrCat(options.sip_port), true},
      {"sip registrar port", absl::StrCat(options.sip_port), true},
      {"sip srtp mode", absl::StrCat(options.srtp_mode), true},
      {"download protocol", "HTTPS", true},
      {"https port", absl::StrCat(options.https_port), true},
      {"contact rcs", "0", true},  // never ask Mitel's redirection service
  };
  if (!options.trusted_certificate.empty()) {
    fixed.push_back({"sips trusted certificates", options.trusted_certificate, true});
    fixed.push_back({"https user certificates", options.trusted_certificate, true});
  }
  return fixed;
}

}  // namespace

bool IsParameterName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (!absl::ascii_islower(static_cast<unsigned char>(name.front())) || name.back() == ' ') {
    return false;
  }
  char previous = 0;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ' ') {
      if (previous == ' ') return false;
    } else if (!absl::ascii_islower(u) && !absl::ascii_isdigit(u)) {
      return false;
    }
    previous = c;
  }
  return true;
}

std::string RenderPhoneFile(const std::vector<Param>& params, const PhoneFileOptions& options) {
  std::string out;
  if (!options.comment.empty()) {
    for (absl::string_view line : absl::StrSplit(options.comment, '\n')) {
      absl::StrAppend(&out, "# ", OneLine(absl::StripTrailingAsciiWhitespace(line)), "\n");
    }
  }
  std::set<std::string_view> given;
  for (const Param& p : params) given.insert(p.name);
  for (const Param& p : FixedParams(options)) {
    if (!given.contains(p.name)) AppendLine(out, p);
  }
  for (const Param& p : params) AppendLine(out, p);
  return out;
}

absl::StatusOr<std::vector<Param>> ParsePhoneFile(std::string_view file) {
  absl::string_view text(file.data(), file.size());
  if (absl::StartsWith(text, "\xEF\xBB\xBF")) text.remove_prefix(3);  // an editor's BOM
  std::vector<Param> params;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);  // the '\r' of a CRLF line too
    if (line.empty() || line.front() == '#') continue;
    Param p;
    if (line.front() == '!') {
      p.locked = true;
      line.remove_prefix(1);
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", number, ": not a \"name: value\" line, a blank line or a '#' comment"));
    }
    const absl::string_view name = absl::StripAsciiWhitespace(line.substr(0, colon));
    if (!IsParameterName(std::string_view(name.data(), name.size()))) {
      constexpr size_t kShown = 64;
      return absl::InvalidArgumentError(
          absl::StrCat("line ", number, ": '", absl::CHexEscape(name.substr(0, kShown)),
                       name.size() > kShown ? "..." : "",
                       "' is not a parameter name (lower-case letters, digits and single spaces)"));
    }
    p.name = std::string(name);
    p.value = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    params.push_back(std::move(p));
  }
  return params;
}

}  // namespace rwg::tma
