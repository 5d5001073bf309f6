// SIP method names as metrics labels.
#pragma once

#include "absl/strings/string_view.h"

namespace rwg::sip_edge {

// `method` when it is one of the SIP methods rwg knows (RFC 3261 and its extensions: ACK,
// BYE, CANCEL, INFO, INVITE, MESSAGE, NOTIFY, OPTIONS, PRACK, PUBLISH, REFER, REGISTER,
// SUBSCRIBE, UPDATE; case-sensitive, as SIP methods are), otherwise "other": a label per name
// anyone on the internet makes up would grow the metrics without bound.
const char* MethodLabel(absl::string_view method);

}  // namespace rwg::sip_edge
