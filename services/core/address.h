// What per-source counters, limits and bans are kept per. A single IPv6 host can use every
// address of its /64, so IPv6 sources are grouped by their /64; IPv4 sources stay whole.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace rwg::core {

// The key of a source address: an IPv4 address as it is ("192.0.2.7"), the /64 of an IPv6
// address ("2001:db8:1:2::/64"), an IPv4-mapped IPv6 address as its IPv4 address. Anything that
// is not an IP address comes back unchanged.
std::string SourceKey(absl::string_view ip);

}  // namespace rwg::core
