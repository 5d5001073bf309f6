#include "services/sip_edge/sdp.h"

#include <sofia-sip/sdp.h>
#include <sofia-sip/su_alloc.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rwg::sip_edge {
namespace {

constexpr size_t kSdesKeyBytes = 30;  // AES_CM_128: 16-byte master key + 14-byte salt

bool KnownSuite(absl::string_view s) {
  return s == "AES_CM_128_HMAC_SHA1_80" || s == "AES_CM_128_HMAC_SHA1_32";
}

// A memory home for one parse or print, freed on every path.
struct Home {
  Home() { su_home_init(home); }
  ~Home() { su_home_deinit(home); }
  su_home_t home[1] = {};
};

struct ParserFree {
  void operator()(sdp_parser_t* p) const { sdp_parser_free(p); }
};
using Parser = std::unique_ptr<sdp_parser_t, ParserFree>;

bool IsToken(absl::string_view s, bool slashes) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        !absl::StrContains("!#$%&'*+-.^_`{|}~", c) && !(slashes && c == '/')) {
      return false;
    }
  }
  return true;
}

// RFC 4566 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ..., each a token.
// Checked before sofia-sip sees the text: its parser (1.12.11) never returns, allocating without
// bound, on some m= lines that break this grammar (e.g. "m=audio 1 m>;").
absl::Status CheckMediaLines(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, absl::ByAnyChar("\r\n"), absl::SkipEmpty())) {
    line = absl::StripLeadingAsciiWhitespace(line);  // sofia-sip skips it too
    if (!absl::ConsumePrefix(&line, "m=")) continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    bool ok = f.size() >= 4 && IsToken(f[0], false) && IsToken(f[2], true);
    std::vector<absl::string_view> port = absl::StrSplit(ok ? f[1] : "", '/');
    for (absl::string_view p : port) {
      ok = ok && port.size() <= 2 && !p.empty() && p.size() <= 9 &&
           std::all_of(p.begin(), p.end(), [](char c) { return absl::ascii_isdigit(c); });
    }
    for (size_t i = 3; ok && i < f.size(); ++i) ok = IsToken(f[i], false);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sdp: m=", line.substr(0, 80), ": not <media> <port> <proto> <fmt> ... (RFC 4566)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<sdp_session_t*> Parse(su_home_t* home, absl::string_view text, Parser* parser) {
  if (text.empty()) return absl::InvalidArgumentError("sdp: empty body");
  if (absl::Status st = CheckMediaLines(text); !st.ok()) return st;
  parser->reset(sdp_parse(home, text.data(), static_cast<issize_t>(text.size()), 0));
  const char* error = sdp_parsing_error(parser->get());
  sdp_session_t* session = sdp_session(parser->get());
  if (error != nullptr || session == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("sdp: ", error != nullptr ? error : "does not parse"));
  }
  // sofia-sip takes some malformed a=rtpmap lines (e.g. a form feed where the space belongs)
  // as a map without an encoding name, which it would print as "(null)/0". A payload type
  // listed on the m= line without an a=rtpmap is a predefined entry with an empty name: fine.
  for (const sdp_media_t* m = session->sdp_media; m != nullptr; m = m->m_next) {
    for (const sdp_rtpmap_t* r = m->m_rtpmaps; r != nullptr; r = r->rm_next) {
      if (r->rm_encoding == nullptr || (!r->rm_predef && *r->rm_encoding == '\0')) {
        return absl::InvalidArgumentError(
            absl::StrCat("sdp: a=rtpmap:", r->rm_pt, ": no <encoding name> (RFC 4566)"));
      }
    }
  }
  return session;
}

sdp_media_t* FirstAudio(sdp_session_t* s) {
  for (sdp_media_t* m = s->sdp_media; m != nullptr; m = m->m_next) {
    if (m->m_type == sdp_media_audio) return m;
  }
  return nullptr;
}

const char* ModeName(unsigned mode) {
  switch (mode) {
    case sdp_sendonly:
      return "sendonly";
    case sdp_recvonly:
      return "recvonly";
    case sdp_inactive:
      return "inactive";
    default:
      return "sendrecv";
  }
}

void SetAddress(su_home_t* home, sdp_connection_t* c, const std::string& address) {
  for (; c != nullptr; c = c->c_next) {
    c->c_address = su_strdup(home, address.c_str());
    c->c_addrtype = absl::StrContains(address, ':') ? sdp_addr_ip6 : sdp_addr_ip4;
    c->c_nettype = sdp_net_in;
  }
}

}  // namespace

absl::StatusOr<SdesCrypto> ParseCrypto(absl::string_view value) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(value), absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (parts.size() < 3) {
    return absl::InvalidArgumentError("a=crypto: needs a tag, a crypto suite and key parameters");
  }
  SdesCrypto c;
  if (parts[0].size() > 9 || !absl::SimpleAtoi(parts[0], &c.tag) || c.tag < 0 ||
      !absl::ascii_isdigit(static_cast<unsigned char>(parts[0][0]))) {
    return absl::InvalidArgumentError(
        absl::StrCat("a=crypto: tag '", parts[0], "' is not 1 to 9 digits"));
  }
  c.suite = std::string(parts[1]);
  if (!KnownSuite(c.suite)) {
    return absl::FailedPreconditionError(
        absl::StrCat("a=crypto ", c.tag, ": suite ", c.suite, " is not supported"));
  }
  absl::string_view params = parts[2];
  if (absl::StrContains(params, ';')) {
    return absl::FailedPreconditionError(
        absl::StrCat("a=crypto ", c.tag, ": several keys are not supported"));
  }
  if (!absl::ConsumePrefix(&params, "inline:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("a=crypto ", c.tag, ": key parameters must start with inline:"));
  }
  std::vector<absl::string_view> info = absl::StrSplit(params, '|');
  std::string raw;
  if (!absl::Base64Unescape(info[0], &raw) || raw.size() != kSdesKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a=crypto ", c.tag, ": key must be ",
                                                   kSdesKeyBytes, " bytes in base64 (", c.suite,
                                                   "), got ", raw.size()));
  }
  for (size_t i = 1; i < info.size(); ++i) {
    absl::string_view f = info[i];
    if (absl::StrContains(f, ':')) {
      return absl::FailedPreconditionError(
          absl::StrCat("a=crypto ", c.tag, ": MKI is not supported"));
    }
    absl::string_view digits = f;
    absl::ConsumePrefix(&digits, "2^");
    uint64_t n = 0;
    if (i != 1 || digits.empty() || !absl::SimpleAtoi(digits, &n)) {
      return absl::InvalidArgumentError(
          absl::StrCat("a=crypto ", c.tag, ": '", f, "' is not a key lifetime"));
    }
  }
  if (parts.size() > 3) {
    return absl::FailedPreconditionError(
        absl::StrCat("a=crypto ", c.tag, ": session parameter ", parts[3], " is not supported"));
  }
  c.key = std::move(raw);
  return c;
}

std::string FormatCrypto(const SdesCrypto& c) {
  return absl::StrCat(c.tag, " ", c.suite, " inline:", absl::Base64Escape(c.key));
}

absl::StatusOr<AudioStream> ReadAudio(absl::string_view sdp, bool require_srtp) {
  Home h;
  Parser parser;
  absl::StatusOr<sdp_session_t*> session = Parse(h.home, sdp, &parser);
  if (!session.ok()) return session.status();
  sdp_media_t* m = FirstAudio(*session);
  if (m == nullptr) return absl::FailedPreconditionError("sdp: no m=audio stream");
  AudioStream a;
  // One RTP port, 16-bit, with room for RTCP on the next one.
  if (!m->m_rejected && (m->m_port > 65534 || m->m_number_of_ports > 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sdp: m=audio port ", m->m_port, m->m_number_of_ports > 1 ? "/" : "",
                     m->m_number_of_ports > 1 ? absl::StrCat(m->m_number_of_ports) : "",
                     ": not a single port up to 65534"));
  }
  a.port = m->m_rejected ? 0 : static_cast<int>(m->m_port);
  if (m->m_proto == sdp_proto_srtp) {
    a.secure = true;
  } else if (m->m_proto != sdp_proto_rtp) {
    return absl::FailedPreconditionError(absl::StrCat("sdp: m=audio transport ",
                                                      m->m_proto_name ? m->m_proto_name : "?",
                                                      " is not RTP/AVP or RTP/SAVP"));
  }
  const sdp_connection_t* c =
      m->m_connections != nullptr ? m->m_connections : (*session)->sdp_connection;
  if (c == nullptr || c->c_address == nullptr) {
    return absl::InvalidArgumentError("sdp: no c= line for the m=audio stream");
  }
  a.address = c->c_address;
  a.rtcp_port = a.port == 0 ? 0 : a.port + 1;
  std::vector<std::string> unusable;
  for (const sdp_attribute_t* at = m->m_attributes; at != nullptr; at = at->a_next) {
    if (at->a_name == nullptr) continue;
    const absl::string_view name = at->a_name;
    const absl::string_view value = at->a_value ? at->a_value : "";
    if (absl::EqualsIgnoreCase(name, "rtcp")) {
      int port = 0;
      std::vector<absl::string_view> f = absl::StrSplit(value, ' ', absl::SkipEmpty());
      if (f.empty() || !absl::SimpleAtoi(f[0], &port) || port < 1 || port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("sdp: a=rtcp:", value, ": not a port"));
      }
      a.rtcp_port = port;
    } else if (absl::EqualsIgnoreCase(name, "crypto")) {
      absl::StatusOr<SdesCrypto> k = ParseCrypto(value);
      if (k.ok()) {
        a.crypto.push_back(*std::move(k));
      } else if (absl::IsFailedPrecondition(k.status())) {
        unusable.emplace_back(k.status().message());
      } else {
        return absl::InvalidArgumentError(absl::StrCat("sdp: ", k.status().message()));
      }
    }
  }
  a.mode = ModeName(m->m_mode);
  // sofia-sip keeps RTP payload types as rtpmaps (well-known ones without an a=rtpmap too).
  for (const sdp_rtpmap_t* r = m->m_rtpmaps; r != nullptr; r = r->rm_next) {
    a.payload_types.push_back(static_cast<int>(r->rm_pt));
  }
  if (require_srtp && !a.secure) {
    return absl::FailedPreconditionError(
        "sdp: m=audio is RTP/AVP (plain RTP) but SRTP (RTP/SAVP) is required");
  }
  if (a.secure && a.crypto.empty() && a.port != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sdp: m=audio is RTP/SAVP without a usable a=crypto",
        unusable.empty() ? "" : absl::StrCat(" (", absl::StrJoin(unusable, "; "), ")")));
  }
  return a;
}

absl::StatusOr<std::string> RewriteAudio(absl::string_view sdp, const std::string& address,
                                         int port, const std::optional<SdesCrypto>& crypto,
                                         bool avp_with_crypto) {
  Home h;
  Parser parser;
  absl::StatusOr<sdp_session_t*> parsed = Parse(h.home, sdp, &parser);
  if (!parsed.ok()) return parsed.status();
  sdp_session_t* s = *parsed;
  sdp_media_t* audio = FirstAudio(s);
  if (audio == nullptr) return absl::FailedPreconditionError("sdp: no m=audio stream");
  su_home_t* home = sdp_parser_home(parser.get());
  if (s->sdp_origin != nullptr) {
    s->sdp_origin->o_version += 1;
    SetAddress(home, s->sdp_origin->o_address, address);
  }
  SetAddress(home, s->sdp_connection, address);
  for (sdp_media_t* m = s->sdp_media; m != nullptr; m = m->m_next) {
    SetAddress(home, m->m_connections, address);
    if (m != audio) {
      // Only the audio stream is relayed: the others are refused rather than pointed at an
      // address on the other side.
      m->m_port = 0;
      m->m_rejected = 1;
      continue;
    }
    // One port (RTCP on the next). A stream the other side refused (port 0) stays refused
    // (RFC 3264 §6, §8.2): the relay's port would invite media nobody sends or takes.
    if (!m->m_rejected && m->m_port != 0) m->m_port = static_cast<unsigned long>(port);
    m->m_number_of_ports = 0;
    const bool savp = crypto.has_value() && !avp_with_crypto;
    m->m_proto = savp ? sdp_proto_srtp : sdp_proto_rtp;
    m->m_proto_name = savp ? "RTP/SAVP" : "RTP/AVP";
    while (sdp_attribute_remove(&m->m_attributes, "crypto") != nullptr) {
    }
    while (sdp_attribute_remove(&m->m_attributes, "rtcp") != nullptr) {
    }
    // A refused stream carries no key: nothing will be encrypted with it.
    if (crypto && !m->m_rejected && m->m_port != 0) {
      auto* a = static_cast<sdp_attribute_t*>(su_zalloc(home, sizeof(sdp_attribute_t)));
      a->a_size = sizeof(sdp_attribute_t);
      a->a_name = "crypto";
      a->a_value = su_strdup(home, FormatCrypto(*crypto).c_str());
      sdp_attribute_append(&m->m_attributes, a);
    }
  }
  sdp_printer_t* printer = sdp_print(h.home, s, nullptr, 0, 0);
  // The error text lives in the printer: copied before the printer is freed.
  const char* error_text = sdp_printing_error(printer);
  const std::string error = error_text != nullptr ? error_text : "";
  std::string out = error_text == nullptr && sdp_message(printer) ? sdp_message(printer) : "";
  sdp_printer_free(printer);
  if (!error.empty() || out.empty()) {
    return absl::InternalError(
        absl::StrCat("sdp: cannot print: ", error.empty() ? "empty" : error));
  }
  return out;
}

std::string OwnOffer() {
  return "v=0\r\n"
         "o=rwg 1 1 IN IP4 0.0.0.0\r\n"
         "s=rwg\r\n"
         "c=IN IP4 0.0.0.0\r\n"
         "t=0 0\r\n"
         "m=audio 9 RTP/AVP 0 8 9 101\r\n"
         "a=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:8 PCMA/8000\r\n"
         "a=rtpmap:9 G722/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\n"
         "a=fmtp:101 0-15\r\n"
         "a=sendrecv\r\n";
}

}  // namespace rwg::sip_edge
