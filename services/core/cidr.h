// Address ranges an admin allows a caller from ("192.0.2.10", "192.0.2.0/24", "2001:db8::/48"):
// parsed once, then matched against the source address of each request.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::core {

struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> address{};  // network bytes: 4 used for IPv4
  int prefix = 0;                     // bits that must match

  // "192.0.2.0/24", "2001:db8::/48", a lone address with its full length ("192.0.2.10/32").
  std::string ToString() const;
};

// An address ("192.0.2.10", "2001:db8::1") or a range ("192.0.2.0/24"). The bits beyond the
// prefix must be zero ("192.0.2.1/24" is refused: it most likely means something else).
// InvalidArgument saying what is wrong.
absl::StatusOr<Cidr> ParseCidr(absl::string_view text);

// Whether the address `ip` (text; an IPv4-mapped IPv6 address counts as its IPv4 address) is
// inside `range`. Anything that is not an address is outside every range.
bool CidrContains(const Cidr& range, absl::string_view ip);

}  // namespace rwg::core
