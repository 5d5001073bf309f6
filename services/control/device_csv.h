// Bulk device files (R-DEV): CSV with a header row. Columns (any order, names
// case-insensitive): set_username, set_password, icp_username, icp_password, description,
// mac, site, location, srtp_optional. A row is known by the line of the file it starts on, as
// in a text editor: with the header on line 1, the first device is row 2. Blank lines are
// skipped (and counted).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/control/validation.h"

namespace rwg::control {

struct CsvDevice {
  int row = 0;
  adminpb::Device device;
};

inline constexpr const char* kDeviceCsvColumns[] = {
    "set_username", "set_password", "icp_username", "icp_password", "description",
    "mac",          "site",         "location",     "srtp_optional"};

// Parses and validates a whole file. Any problem refuses the whole file: the error is
// InvalidArgument listing every bad row and column ("row 3, column mac: ...; row 9, ...").
// `set_password_required` is false in SSO mode, where the column must be empty or absent.
absl::StatusOr<std::vector<CsvDevice>> ParseDeviceCsv(absl::string_view csv,
                                                      bool set_password_required,
                                                      size_t max_rows = 100000);

// Writes devices (secrets in clear) with the header row, in kDeviceCsvColumns order.
std::string WriteDeviceCsv(const std::vector<adminpb::Device>& devices);

}  // namespace rwg::control
