// sofia-sip's own diagnostics (its su_log output, e.g. "tls_read: SSL_read: ...") as rwg log
// records: by default sofia-sip prints them raw on standard error, where they would break the
// one-logfmt-line-per-event rule (and could carry bytes a peer sent).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rwg::sip_edge {

// Sends every sofia-sip log line through core::log (level warn, msg "sofia-sip", the line in
// `text`). Call once, before the SIP stacks start.
void RedirectSofiaLogs();

// Appends `chunk` (sofia-sip writes a line in pieces) to `pending` and returns the lines it
// completed, without their line ends; a line longer than 4 KiB is cut there.
std::vector<std::string> SofiaLogLines(std::string& pending, std::string_view chunk);

}  // namespace rwg::sip_edge
