// MAC addresses as deployments write them: 12 upper-case hex digits, no separators.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rwg::tma {

// Accepts the common ways of writing a MAC: "08:00:a1:b2:c3:d4", "08-00-A1-B2-C3-D4",
// "0800.a1b2.c3d4", "0800A1B2C3D4" (one kind of separator, consistently placed), upper or
// lower case, whitespace around ignored. Returns "0800A1B2C3D4". INVALID_ARGUMENT naming what is
// wrong otherwise (length, a character that is not hex, mixed separators); the all-zero, broadcast
// and multicast addresses are refused too.
absl::StatusOr<std::string> NormalizeMac(std::string_view text);

}  // namespace rwg::tma
