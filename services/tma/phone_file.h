// The phones' configuration files (6800 SIP / 6900 IP, docs/tma.md): "parameter: value" lines,
// a leading '!' locks a parameter, '#' starts a comment.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rwg::tma {

struct Param {
  std::string name;  // lower case words, e.g. "sip line1 user name"; without '!'
  std::string value;
  bool locked = false;  // written "!name: value"
  bool operator==(const Param&) const = default;
};

// What a `<MAC>.cfg` for a Remote Worker says besides the CSV's columns.
struct PhoneFileOptions {
  int sip_port = 5061;    // sip proxy port, sip registrar port
  int https_port = 4445;  // https port
  int srtp_mode = 2;      // sip srtp mode: 0 off, 1 preferred, 2 only
  // File name of the CA certificate deployed with the files ("sips trusted certificates",
  // "https user certificates"); nothing written when empty.
  std::string trusted_certificate;
  // Written as a comment at the top (deployment id, time): never a secret.
  std::string comment;
};

// One phone's file: the comment, the fixed Remote Worker parameters (transport TLS, ports,
// SRTP, download protocol HTTPS, contact rcs 0, the certificates), all locked, then `params`
// in order (the CSV's columns, system data included, with their locks). A parameter of
// `params` replaces the fixed one of the same name (the fixed line is left out). Values never
// contain a line break (the CSV check refuses them); one that did would be written with a
// space in its place, never as a second line. Lines end with LF.
std::string RenderPhoneFile(const std::vector<Param>& params, const PhoneFileOptions& options);

// Reads a configuration file back: every parameter line in order; blank lines and comments
// ('#' first on the line) skipped; CRLF and a UTF-8 BOM accepted; names and values trimmed of
// whitespace around them. INVALID_ARGUMENT naming the line for a line that is neither (a
// '^' reset line included: Param cannot say it).
absl::StatusOr<std::vector<Param>> ParsePhoneFile(std::string_view text);

// True when `name` can be a phone parameter name: lower-case letters, digits and single
// spaces, starting with a letter, at most 64 characters.
bool IsParameterName(std::string_view name);

}  // namespace rwg::tma
