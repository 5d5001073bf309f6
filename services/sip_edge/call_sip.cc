// The SIP helpers of the calls (see call_sip.h).
#include "services/sip_edge/call_sip.h"

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/sip_edge/calls.h"

namespace rwg::sip_edge {

namespace {

// sofia keeps a folded line inside a quoted string as it came (a display name "Al<CRLF> ice", a
// URI parameter x="a<CRLF> b", a Session-Expires parameter): each line break with the white
// space around it becomes one space (RFC 3261 §7.3.1), so that what is copied into the other
// side's headers, the call record and the logs is one line.
std::string Unfold(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r' || in[i] == '\n') {
      while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
      while (i + 1 < in.size() &&
             (in[i + 1] == '\r' || in[i + 1] == '\n' || in[i + 1] == ' ' || in[i + 1] == '\t')) {
        ++i;
      }
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

std::string UrlText(su_home_t* home, const url_t* u) {
  if (u == nullptr) return "";
  char* s = url_as_string(home, u);
  std::string out = s ? Unfold(s) : "";
  su_free(home, s);
  return out;
}

std::string NameAddr(su_home_t* home, const sip_addr_t* a) {
  if (a == nullptr) return "";
  std::string out;
  if (a->a_display != nullptr && *a->a_display != '\0') {
    out = absl::StrCat(Unfold(a->a_display), " ");
  }
  return absl::StrCat(out, "<", UrlText(home, a->a_url), ">");
}

std::string PayloadOf(const sip_t* sip) {
  if (sip == nullptr || sip->sip_payload == nullptr || sip->sip_payload->pl_len == 0) return "";
  if (sip->sip_content_type != nullptr && sip->sip_content_type->c_type != nullptr &&
      !absl::EqualsIgnoreCase(sip->sip_content_type->c_type, "application/sdp")) {
    return "";
  }
  return std::string(sip->sip_payload->pl_data, sip->sip_payload->pl_len);
}

bool HasOption(const sip_t* sip, const char* option) {
  return sip != nullptr && ((sip->sip_require && sip_has_feature(sip->sip_require, option)) ||
                            (sip->sip_supported && sip_has_feature(sip->sip_supported, option)));
}
bool RequiresOption(const sip_t* sip, const char* option) {
  return sip != nullptr && sip->sip_require && sip_has_feature(sip->sip_require, option);
}

std::string TimerHeaders(const sip_t* sip) {
  if (sip == nullptr) return "";
  std::vector<std::string> lines;
  auto add = [&](const char* name, const void* h) {
    if (h != nullptr) lines.push_back(absl::StrCat(name, ": ", Unfold(HeaderText(h))));
  };
  add("Session-Expires", sip->sip_session_expires);
  add("Min-SE", sip->sip_min_se);
  auto has_timer = [](const msg_list_t* l) {
    for (; l != nullptr; l = l->k_next) {
      for (msg_param_t const* i = l->k_items; i != nullptr && *i != nullptr; ++i) {
        if (absl::EqualsIgnoreCase(*i, "timer")) return true;
      }
    }
    return false;
  };
  if (has_timer(sip->sip_require)) lines.push_back("Require: timer");
  if (has_timer(sip->sip_supported)) lines.push_back("Supported: timer");
  return absl::StrJoin(lines, "\r\n");
}

RelayRemote RemoteOf(const AudioStream& a) {
  RelayRemote r;
  r.suite = a.crypto.empty() ? "RTP" : a.crypto[0].suite;
  r.key = a.crypto.empty() ? "" : a.crypto[0].key;
  r.address = a.address;
  r.port = a.port;
  r.rtcp_port = a.rtcp_port == a.port + 1 ? 0 : a.rtcp_port;
  return r;
}

std::string PercentEncode(absl::string_view in) {
  std::string out;
  for (char ch : in) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' ||
        ch == '_' || ch == '~') {
      out.push_back(ch);
    } else {
      // Upper-case digits, as RFC 3986 §2.1 asks of producers.
      static constexpr char kHex[] = "0123456789ABCDEF";
      const auto byte = static_cast<unsigned char>(ch);
      out += {'%', kHex[byte >> 4], kHex[byte & 0xF]};
    }
  }
  return out;
}

std::string PercentDecode(absl::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    // Two hexadecimal digits exactly: not a sign, a space or "0x" as a number parser takes.
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

int StatusFor(const absl::Status& s) { return absl::IsInvalidArgument(s) ? 400 : 488; }

}  // namespace rwg::sip_edge
