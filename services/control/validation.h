// Validation and normalisation of the admin API's input: gateway configuration (R-CFG) and
// SIP devices (R-DEV). Every error names the field it is about.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rwg/admin/v1/admin.pb.h"

namespace rwg::control {

namespace adminpb = ::rwg::admin::v1;

// One problem with one field: {"icp.host", "'a b' is not a host name or IP address"}.
struct FieldError {
  std::string field;
  std::string message;
};

// Joins errors as "field: message; field: message" (prefixing each field with `prefix`).
std::string JoinErrors(const std::vector<FieldError>& errors, absl::string_view prefix = "");

// The configuration a new gateway starts with (seed §5.4 recommendations).
adminpb::GatewayConfig DefaultConfig();

// Every problem with `config`.
std::vector<FieldError> ValidateConfig(const adminpb::GatewayConfig& config);

// Changed fields of `after` that only take effect when a service restarts.
std::vector<std::string> RestartRequired(const adminpb::GatewayConfig& before,
                                         const adminpb::GatewayConfig& after);

// Well-formed UTF-8 (RFC 3629): no overlong forms, surrogates or code points above U+10FFFF,
// which JSON encoders (nlohmann::json, protobuf) refuse.
bool IsValidUtf8(absl::string_view s);

bool IsIpAddress(absl::string_view s);
// A DNS host name (RFC 1123) or an IP address.
bool IsHost(absl::string_view s);

// Accepts 001122AABBCC, 00:11:22:aa:bb:cc, 00-11-22-AA-BB-CC or 0011.22aa.bbcc; returns
// 12 upper-case hex digits.
absl::StatusOr<std::string> NormalizeMac(absl::string_view mac);

// Normalises (trims, upper-cases the MAC) and checks a device. The set-side password is
// checked only when `check_set_password` (it is generated otherwise).
std::vector<FieldError> NormalizeAndValidateDevice(adminpb::Device& device,
                                                   bool check_set_password);

}  // namespace rwg::control
