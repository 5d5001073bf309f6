// Reading and writing the SIP of calls: the helpers calls.cc and forwarding.cc share
// (addresses, bodies, options, session timer headers, the relay leg an SDP names). Internal to the
// SIP edge's calls; plain functions of sofia-sip's parsed messages.
#pragma once

#include <sofia-sip/sip.h>
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/url.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/sip_edge/media_relays.h"
#include "services/sip_edge/sdp.h"

namespace rwg::sip_edge {

// A URL as text ("" for none); `home` holds the encoding for a moment.
std::string UrlText(su_home_t* home, const url_t* u);
// `"Display" <uri>` of a From, To or Contact, without its parameters.
std::string NameAddr(su_home_t* home, const sip_addr_t* a);
// The SDP body of a message ("" for none, or for a body of another type).
std::string PayloadOf(const sip_t* sip);
// Whether the message requires or supports `option` (e.g. "100rel").
bool HasOption(const sip_t* sip, const char* option);
// Whether the message requires `option`.
bool RequiresOption(const sip_t* sip, const char* option);
// Session timers (RFC 4028) are the endpoints' business: rwg carries their headers across
// with INVITEs, UPDATEs and the answers (a 422's Min-SE included), and relays the refreshes.
// The message's Session-Expires, Min-SE and timer options as header lines.
std::string TimerHeaders(const sip_t* sip);
// The relay leg toward what an SDP named (address, ports, suite and key).
RelayRemote RemoteOf(const AudioStream& a);
// RFC 3986 percent-encoding of a URI header's value (a REFER's Replaces): everything but
// letters, digits and - . _ ~ is encoded, with upper-case hexadecimal digits.
std::string PercentEncode(absl::string_view in);
// Its reverse: "%" and two hexadecimal digits is that byte; anything else (a "%" not followed
// by two hexadecimal digits included) is itself.
std::string PercentDecode(absl::string_view in);
// The answer to an SDP rwg cannot use: 400 for a malformed one, 488 otherwise.
int StatusFor(const absl::Status& s);

}  // namespace rwg::sip_edge
