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

// Writes devices (secrets in clear) with the header row, in kDeviceCsvColumns order. Every
// cell goes through EscapeCsvCell.
std::string WriteDeviceCsv(const std::vector<adminpb::Device>& devices);

// Formula injection (OWASP "CSV injection"): a cell that starts with = + - @, tab or carriage
// return, possibly after single quotes, is written with one more single quote in front, so
// that a spreadsheet shows it as text instead of running it: "=HYPERLINK(...)" is written
// "'=HYPERLINK(...)", "'=x" is written "''=x". Everything else is written as is.
std::string EscapeCsvCell(absl::string_view value);
// The inverse, applied to every imported cell: a cell of one or more single quotes then one
// of those characters loses its first quote. Any other cell is taken as is ("'abc" stays).
std::string UnescapeCsvCell(absl::string_view cell);

}  // namespace rwg::control
