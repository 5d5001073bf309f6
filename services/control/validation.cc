#include "services/control/validation.h"

#include <arpa/inet.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace rwg::control {
namespace {

using adminpb::RtpSecurity;

bool IsUserChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '~' ||
         c == '+' || c == '-';
}

// Printable ASCII without space.
bool IsPasswordChar(char c) { return c > ' ' && c < 0x7f; }

bool HasControlChar(absl::string_view s) {
  for (unsigned char c : s) {
    if (c < ' ' || c == 0x7f) return true;
  }
  return false;
}

void CheckPort(std::vector<FieldError>& errs, const std::string& field, uint32_t port) {
  if (port == 0 || port > 65535) {
    errs.push_back({field, absl::StrCat(port, " is not a port number (1-65535)")});
  }
}

void CheckText(std::vector<FieldError>& errs, const std::string& field, absl::string_view v,
               size_t max, bool required) {
  if (required && v.empty()) {
    errs.push_back({field, "must not be empty"});
  } else if (v.size() > max) {
    errs.push_back({field, absl::StrCat("is ", v.size(), " bytes long; at most ", max)});
  } else if (!IsValidUtf8(v)) {
    errs.push_back({field, "is not valid UTF-8"});
  } else if (HasControlChar(v)) {
    errs.push_back({field, "must not contain control characters"});
  }
}

void CheckUser(std::vector<FieldError>& errs, const std::string& field, absl::string_view v) {
  if (v.empty()) {
    errs.push_back({field, "must not be empty"});
    return;
  }
  if (v.size() > 64) {
    errs.push_back({field, absl::StrCat("is ", v.size(), " characters long; at most 64")});
    return;
  }
  for (char c : v) {
    if (!IsUserChar(c)) {
      errs.push_back(
          {field, absl::StrCat("'", v, "' may hold only letters, digits and . _ ~ + -")});
      return;
    }
  }
}

void CheckPassword(std::vector<FieldError>& errs, const std::string& field, absl::string_view v,
                   size_t min) {
  if (v.size() < min || v.size() > 64) {
    errs.push_back({field, v.empty() ? "must not be empty"
                                     : absl::StrCat("must be ", min, " to 64 characters long, got ",
                                                    v.size())});
    return;
  }
  for (char c : v) {
    if (!IsPasswordChar(c)) {
      errs.push_back({field, "may hold only printable ASCII characters without spaces"});
      return;
    }
  }
}

void CheckSecurity(std::vector<FieldError>& errs, const std::string& field, RtpSecurity v,
                   bool inbound) {
  bool ok = inbound
                ? (v == adminpb::SRTP_ONLY || v == adminpb::SRTP_OR_RTP || v == adminpb::RTP_ONLY)
                : (v == adminpb::SRTP_ONLY || v == adminpb::AVP_CRYPTO || v == adminpb::RTP_ONLY);
  if (!ok) {
    errs.push_back({field, absl::StrCat(adminpb::RtpSecurity_Name(v), " is not allowed; use ",
                                        inbound ? "SRTP_ONLY, SRTP_OR_RTP or RTP_ONLY"
                                                : "SRTP_ONLY, AVP_CRYPTO or RTP_ONLY")});
  }
}

void CheckExposure(std::vector<FieldError>& errs, const std::string& field,
                   adminpb::SipExposure v) {
  if (v == adminpb::SIP_EXPOSURE_UNSPECIFIED || !adminpb::SipExposure_IsValid(v)) {
    errs.push_back({field, "must be DISABLED, PRIVATE or PUBLIC"});
  }
}

}  // namespace

bool IsValidUtf8(absl::string_view s) {
  // RFC 3629: shortest form only, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return false;  // continuation byte first, overlong C0/C1, or F5..FF
    }
    if (i + n > s.size()) return false;
    const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return false;
    for (size_t k = 2; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

std::string JoinErrors(const std::vector<FieldError>& errors, absl::string_view prefix) {
  return absl::StrJoin(errors, "; ", [prefix](std::string* out, const FieldError& e) {
    absl::StrAppend(out, prefix, e.field, ": ", e.message);
  });
}

bool IsIpAddress(absl::string_view s) {
  std::string z(s);
  unsigned char buf[16];
  return inet_pton(AF_INET, z.c_str(), buf) == 1 || inet_pton(AF_INET6, z.c_str(), buf) == 1;
}

bool IsHost(absl::string_view s) {
  if (s.empty()) return false;
  if (IsIpAddress(s)) return true;
  if (s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
  }
  // All-numeric names are mistyped IPv4 addresses, not host names.
  bool all_digits_or_dots = true;
  for (char c : s) {
    all_digits_or_dots &= (absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.');
  }
  return !all_digits_or_dots;
}

absl::StatusOr<std::string> NormalizeMac(absl::string_view mac) {
  std::string hex;
  for (char c : mac) {
    if (c == ':' || c == '-' || c == '.') continue;
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat("'", mac, "' is not a MAC address"));
    }
    hex.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 12) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", mac, "' is not a MAC address (12 hex digits)"));
  }
  return hex;
}

adminpb::GatewayConfig DefaultConfig() {
  adminpb::GatewayConfig c;
  c.set_public_name("rwg.example.com");
  adminpb::Icp* icp = c.mutable_icp();
  icp->set_name("ipbx");
  icp->set_type(adminpb::MIVOICE_5000);
  icp->set_host("192.0.2.10");
  icp->add_sip_transports(adminpb::TCP);
  icp->add_sip_transports(adminpb::TLS);
  icp->set_sip_port(5061);
  icp->set_xml_listen_port(4445);
  icp->set_xml_destination_port(4443);
  icp->set_link_enabled(true);
  adminpb::SipSettings* sip = c.mutable_sip();
  sip->set_udp(adminpb::DISABLED);
  sip->set_tcp(adminpb::PUBLIC);
  sip->set_tls(adminpb::PUBLIC);
  sip->set_set_side_inbound(adminpb::SRTP_ONLY);
  sip->set_set_side_outbound(adminpb::SRTP_ONLY);
  sip->set_icp_side_inbound(adminpb::SRTP_OR_RTP);
  sip->set_icp_side_outbound(adminpb::AVP_CRYPTO);
  sip->set_srtp_suite(adminpb::AES_CM_128_HMAC_SHA1_80);
  c.mutable_licences()->set_teleworker(0);
  adminpb::Ports* p = c.mutable_ports();
  p->set_sip_tls(5061);
  p->set_sip_tcp(5060);
  p->set_sip_udp(5060);
  p->set_media_min(20000);
  p->set_media_max(31000);
  return c;
}

std::vector<FieldError> ValidateConfig(const adminpb::GatewayConfig& c) {
  std::vector<FieldError> errs;
  if (!IsHost(c.public_name())) {
    errs.push_back(
        {"public_name", absl::StrCat("'", c.public_name(), "' is not a host name or IP address")});
  }
  const adminpb::Icp& icp = c.icp();
  CheckText(errs, "icp.name", icp.name(), 64, true);
  if (icp.type() != adminpb::MIVOICE_5000) {
    errs.push_back({"icp.type", "must be MIVOICE_5000"});
  }
  if (!IsHost(icp.host())) {
    errs.push_back(
        {"icp.host", icp.host().empty()
                         ? std::string("must not be empty")
                         : absl::StrCat("'", icp.host(), "' is not a host name or IP address")});
  }
  if (icp.sip_transports().empty()) {
    errs.push_back({"icp.sip_transports", "must list at least one of UDP, TCP, TLS"});
  }
  std::set<int> seen;
  for (int t : icp.sip_transports()) {
    if (t == adminpb::SIP_TRANSPORT_UNSPECIFIED || !adminpb::SipTransport_IsValid(t)) {
      errs.push_back({"icp.sip_transports", "each must be UDP, TCP or TLS"});
    } else if (!seen.insert(t).second) {
      errs.push_back(
          {"icp.sip_transports", absl::StrCat(adminpb::SipTransport_Name(t), " is listed twice")});
    }
  }
  CheckPort(errs, "icp.sip_port", icp.sip_port());
  CheckPort(errs, "icp.xml_listen_port", icp.xml_listen_port());
  CheckPort(errs, "icp.xml_destination_port", icp.xml_destination_port());

  const adminpb::NetworkProfile& net = c.network();
  if (!net.rtp_icp_side_address().empty() && !IsIpAddress(net.rtp_icp_side_address())) {
    errs.push_back({"network.rtp_icp_side_address",
                    absl::StrCat("'", net.rtp_icp_side_address(), "' is not an IP address")});
  }
  if (!net.rtp_set_side_address().empty() && !IsIpAddress(net.rtp_set_side_address())) {
    errs.push_back({"network.rtp_set_side_address",
                    absl::StrCat("'", net.rtp_set_side_address(), "' is not an IP address")});
  }

  const adminpb::SipSettings& sip = c.sip();
  CheckExposure(errs, "sip.udp", sip.udp());
  CheckExposure(errs, "sip.tcp", sip.tcp());
  CheckExposure(errs, "sip.tls", sip.tls());
  CheckSecurity(errs, "sip.set_side_inbound", sip.set_side_inbound(), true);
  CheckSecurity(errs, "sip.set_side_outbound", sip.set_side_outbound(), false);
  CheckSecurity(errs, "sip.icp_side_inbound", sip.icp_side_inbound(), true);
  CheckSecurity(errs, "sip.icp_side_outbound", sip.icp_side_outbound(), false);
  if (sip.srtp_suite() == adminpb::SRTP_SUITE_UNSPECIFIED ||
      !adminpb::SrtpSuite_IsValid(sip.srtp_suite())) {
    errs.push_back(
        {"sip.srtp_suite", "must be AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32"});
  }

  if (c.licences().teleworker() > 100000) {
    errs.push_back(
        {"licences.teleworker", absl::StrCat(c.licences().teleworker(), " is more than 100000")});
  }

  const adminpb::Ports& p = c.ports();
  CheckPort(errs, "ports.sip_tls", p.sip_tls());
  CheckPort(errs, "ports.sip_tcp", p.sip_tcp());
  CheckPort(errs, "ports.sip_udp", p.sip_udp());
  if (p.sip_tls() != 0 && p.sip_tls() == p.sip_tcp()) {
    errs.push_back({"ports.sip_tls", absl::StrCat(p.sip_tls(), " is also ports.sip_tcp")});
  }
  const uint32_t https = c.icp().xml_listen_port();
  if (https != 0 && (https == p.sip_tcp() || https == p.sip_tls())) {
    errs.push_back({"icp.xml_listen_port", absl::StrCat(https, " is also a SIP port")});
  }
  if (p.media_min() < 1024 || p.media_min() > 65535) {
    errs.push_back({"ports.media_min", absl::StrCat(p.media_min(), " is not in 1024-65535")});
  } else if (p.media_min() % 2 != 0) {
    errs.push_back({"ports.media_min",
                    absl::StrCat(p.media_min(), " must be even (RTP on even, RTCP on odd)")});
  }
  if (p.media_max() < 1024 || p.media_max() > 65535) {
    errs.push_back({"ports.media_max", absl::StrCat(p.media_max(), " is not in 1024-65535")});
  } else if (p.media_max() < p.media_min() + 3) {
    errs.push_back(
        {"ports.media_max", absl::StrCat(p.media_max(), " leaves no room for two port pairs after ",
                                         "ports.media_min ", p.media_min())});
  }
  if (sip.udp() != adminpb::DISABLED && p.sip_udp() >= p.media_min() &&
      p.sip_udp() <= p.media_max()) {
    errs.push_back({"ports.sip_udp", absl::StrCat(p.sip_udp(), " lies in the media port range")});
  }
  return errs;
}

std::vector<std::string> RestartRequired(const adminpb::GatewayConfig& before,
                                         const adminpb::GatewayConfig& after) {
  std::vector<std::string> out;
  auto check = [&](bool changed, const char* what) {
    if (changed) out.push_back(what);
  };
  const adminpb::Ports& a = before.ports();
  const adminpb::Ports& b = after.ports();
  check(a.sip_tls() != b.sip_tls(), "ports.sip_tls (sip-edge)");
  check(a.sip_tcp() != b.sip_tcp(), "ports.sip_tcp (sip-edge)");
  check(a.sip_udp() != b.sip_udp(), "ports.sip_udp (sip-edge)");
  check(before.icp().xml_listen_port() != after.icp().xml_listen_port(),
        "icp.xml_listen_port (provisioning)");
  check(a.media_min() != b.media_min() || a.media_max() != b.media_max(),
        "ports.media_min/media_max (media-relay)");
  return out;
}

std::vector<FieldError> NormalizeAndValidateDevice(adminpb::Device& d, bool check_set_password) {
  std::vector<FieldError> errs;
  d.set_set_username(std::string(absl::StripAsciiWhitespace(d.set_username())));
  d.set_icp_username(std::string(absl::StripAsciiWhitespace(d.icp_username())));
  d.set_description(std::string(absl::StripAsciiWhitespace(d.description())));
  d.set_site(std::string(absl::StripAsciiWhitespace(d.site())));
  d.set_location(std::string(absl::StripAsciiWhitespace(d.location())));
  std::string mac(absl::StripAsciiWhitespace(d.mac()));
  CheckUser(errs, "set_username", d.set_username());
  if (check_set_password) CheckPassword(errs, "set_password", d.set_password(), 8);
  CheckUser(errs, "icp_username", d.icp_username());
  CheckPassword(errs, "icp_password", d.icp_password(), 1);
  CheckText(errs, "description", d.description(), 255, false);
  if (!mac.empty()) {
    absl::StatusOr<std::string> m = NormalizeMac(mac);
    if (m.ok()) {
      d.set_mac(*m);
    } else {
      errs.push_back({"mac", std::string(m.status().message())});
    }
  } else {
    d.clear_mac();
  }
  CheckText(errs, "site", d.site(), 64, false);
  CheckText(errs, "location", d.location(), 255, false);
  return errs;
}

}  // namespace rwg::control
