// The Remote Worker CSV (seed §6.3, docs/tma.md): one row per phone, the column headers are the
// phones' parameter names ('!' in front: locked), checked as a whole before anything is
// deployed.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/tma/phone_file.h"

namespace rwg::tma {

inline constexpr std::string_view kMacColumn = "MAC ADDRESS";

struct CsvProblem {
  int row = 0;  // 1-based line of the CSV where the row starts; 0: the whole file
  // The header as written (C-escaped when it is not printable UTF-8); empty: the whole row.
  // A required column that is missing is named without '!'.
  std::string column;
  std::string message;
  bool warning = false;  // false: an error, nothing is deployed
  bool operator==(const CsvProblem&) const = default;
};

// System data for all MACs, used where the CSV has no such column (seed §6.3). Empty: not
// written.
struct SystemData {
  std::string sip_proxy_ip;
  std::string sip_registrar_ip;
  std::string https_server;
  std::string https_path;
  std::string keyboard_script;
};

struct Phone {
  int row = 0;
  std::string mac;   // normalized (NormalizeMac)
  std::string user;  // "sip line1 user name": the device's set-side user name
  // The parameters written in the phone's file: every column but MAC ADDRESS in header order
  // (line credentials included), then the system data the CSV has no column for (`sip proxy
  // ip`, `sip registrar ip`, `https server`, `https path` locked, `keyboard script` not).
  // Cells are trimmed of spaces. An empty cell writes nothing, except in a system data
  // column, where the system data's value (if any) is written with the column's lock.
  std::vector<Param> params;
};

// What the check needs to know of a declared device.
struct DeviceFacts {
  std::string set_username;
  std::string set_password;
  std::string mac;  // may be empty
  std::string site;
  // "sip line1 auth name" in an export: the login in SSO mode, the number (ICP-side user name)
  // otherwise (seed §6.3). Empty: set_username. (Initialized so that `{user, password, mac,
  // site}` stays a complete initializer for -Wmissing-field-initializers.)
  std::string auth_name = {};
};
// The declared devices among `users` (set-side user names, each asked once), all at once:
// one answer per name, in the same order; nullopt: not declared.
using DeviceLookup =
    std::function<std::vector<std::optional<DeviceFacts>>(const std::vector<std::string>& users)>;

struct CsvLimits {
  size_t max_bytes = 16 << 20;
  size_t max_rows = 20000;
  size_t max_cell = 1024;    // bytes
  size_t max_columns = 128;  // MAC ADDRESS included
};

struct CheckedCsv {
  std::vector<Phone> phones;         // in CSV order; empty when there is an error
  std::vector<CsvProblem> problems;  // errors and warnings, by row then column
  bool ok() const;                   // no problem is an error
};

// Parses and checks the whole file (RFC 4180, UTF-8, optional BOM, header row):
// - columns: `MAC ADDRESS`, `sip line1 user name`, `sip line1 auth name`, `sip line1 password`
//   required, with or without '!'; a header that is not a parameter name (IsParameterName,
//   after '!'), repeated, or empty is an error on row 1;
// - per row: a MAC that NormalizeMac refuses, repeated (both rows named), empty mandatory
//   cells, a cell with a line break, a control character or invalid UTF-8, over
//   `limits.max_cell`, the wrong number of cells; a user name that is not a declared device
//   (error), that is declared twice in the file (error), whose password differs from the
//   device's set-side password (warning), whose device has another MAC (warning);
// - the whole file: empty, UTF-16, no rows, malformed CSV (an unclosed quote, a quote inside
//   an unquoted cell), over the limits (then nothing else is reported).
// Rows whose cells are all empty are skipped (spreadsheets write them). Every problem is
// reported, not only the first. `devices` is asked once, for every user name the rows give (none
// when the file itself is refused); a null `devices` declares no device.
CheckedCsv CheckRemoteWorkerCsv(std::string_view csv, const SystemData& system,
                                const DeviceLookup& devices, const CsvLimits& limits = {});

// The CSV for `devices` (those with a MAC NormalizeMac accepts, written normalized; the
// others' set_username are returned in `skipped`), header `MAC ADDRESS,!sip line1 user
// name,!sip line1 auth name,sip line1 password`, and with `system_columns` the system data's
// non-empty fields as columns on every row, locked as CheckRemoteWorkerCsv locks them. Lines
// end with CRLF. Cells are RFC 4180-quoted where needed and otherwise as they are: the file is
// meant to be read back by a deployment, where a formula guard would change a password.
struct ExportedCsv {
  std::string csv;
  std::vector<std::string> skipped;
};
ExportedCsv ExportRemoteWorkerCsv(const std::vector<DeviceFacts>& devices, const SystemData& system,
                                  bool system_columns);

}  // namespace rwg::tma
