// The SIP helpers of the calls (see call_sip.h).
#include "services/sip_edge/call_sip.h"

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/sip_edge/calls.h"

namespace rwg::sip_edge {

std::string UrlText(su_home_t* home, const url_t* u) {
  if (u == nullptr) return "";
  char* s = url_as_string(home, u);
  std::string out = s ? s : "";
  su_free(home, s);
  return out;
}

std::string NameAddr(su_home_t* home, const sip_addr_t* a) {
  if (a == nullptr) return "";
  std::string out;
  if (a->a_display != nullptr && *a->a_display != '\0') out = absl::StrCat(a->a_display, " ");
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
    if (h != nullptr) lines.push_back(absl::StrCat(name, ": ", HeaderText(h)));
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

int StatusFor(const absl::Status& s) { return absl::IsInvalidArgument(s) ? 400 : 488; }

}  // namespace rwg::sip_edge
