#include "services/control/device_csv.h"

#include <csv.h>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rwg::control {
namespace {

struct Parsed {
  std::vector<std::vector<std::string>> rows;
  std::vector<int> lines;  // line on which each row starts
  std::vector<std::string> current;
  int line = 1;
  int current_line = 1;
  size_t max_rows;
  bool too_many = false;
};

void OnField(void* data, size_t len, void* ctx) {
  auto* p = static_cast<Parsed*>(ctx);
  if (p->current.empty()) p->current_line = p->line;
  p->current.emplace_back(static_cast<const char*>(data), len);
}

void OnRow(int, void* ctx) {
  auto* p = static_cast<Parsed*>(ctx);
  if (p->rows.size() > p->max_rows) {
    p->too_many = true;
    p->current.clear();
    return;
  }
  if (p->current.empty()) p->current_line = p->line;
  p->rows.push_back(std::move(p->current));
  p->lines.push_back(p->current_line);
  p->current.clear();
}

absl::StatusOr<bool> ParseBool(absl::string_view v) {
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(v));
  if (s.empty() || s == "false" || s == "no" || s == "0") return false;
  if (s == "true" || s == "yes" || s == "1") return true;
  return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not true/false/yes/no/1/0"));
}

// A cell a spreadsheet would run as a formula starts with one of these (OWASP "CSV
// injection"); tab and carriage return too, which some spreadsheets strip before looking.
bool IsFormulaStart(char c) {
  return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

// Quotes, then a formula start: "'=x", "''=x". Such a cell is escaped by one more quote.
bool QuotesThenFormulaStart(absl::string_view v) {
  size_t i = 0;
  while (i < v.size() && v[i] == '\'') ++i;
  return i < v.size() && IsFormulaStart(v[i]);
}

std::string RowCol(int row, absl::string_view col) {
  return absl::StrCat("row ", row, ", column ", col);
}

}  // namespace

std::string EscapeCsvCell(absl::string_view v) {
  if (QuotesThenFormulaStart(v)) return absl::StrCat("'", v);
  return std::string(v);
}

std::string UnescapeCsvCell(absl::string_view v) {
  if (!v.empty() && v[0] == '\'' && QuotesThenFormulaStart(v)) return std::string(v.substr(1));
  return std::string(v);
}

absl::StatusOr<std::vector<CsvDevice>> ParseDeviceCsv(absl::string_view csv,
                                                      bool set_password_required, size_t max_rows) {
  if (csv.substr(0, 3) == "\xEF\xBB\xBF") csv.remove_prefix(3);  // spreadsheet BOM
  Parsed parsed;
  parsed.max_rows = max_rows;
  csv_parser parser;
  if (csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
    return absl::ResourceExhaustedError("cannot initialise the CSV parser");
  }
  // Fed line by line so that each row is known by the line it starts on.
  bool ok = true;
  size_t pos = 0;
  while (ok && pos < csv.size()) {
    size_t nl = csv.find('\n', pos);
    size_t end = nl == absl::string_view::npos ? csv.size() : nl + 1;
    ok = csv_parse(&parser, csv.data() + pos, end - pos, OnField, OnRow, &parsed) == end - pos;
    if (nl != absl::string_view::npos) ++parsed.line;
    pos = end;
  }
  ok = ok && csv_fini(&parser, OnField, OnRow, &parsed) == 0;
  std::string parse_error = ok ? "" : csv_strerror(csv_error(&parser));
  csv_free(&parser);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "row ", parsed.line, ": malformed CSV (", parse_error,
        "); a field with a comma, quote or line break must be quoted, quotes doubled"));
  }
  if (parsed.too_many) {
    return absl::InvalidArgumentError(
        absl::StrCat("the file has more than ", max_rows, " device rows"));
  }
  if (parsed.rows.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("row 1: the file is empty; the header row must name the columns (",
                     absl::StrJoin(kDeviceCsvColumns, ","), ")"));
  }

  // Header.
  std::vector<std::string> errors;
  std::map<std::string, size_t> col;
  const std::vector<std::string>& header = parsed.rows[0];
  for (size_t i = 0; i < header.size(); ++i) {
    std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(header[i]));
    bool known = false;
    for (const char* c : kDeviceCsvColumns) known |= name == c;
    if (!known) {
      errors.push_back(absl::StrCat("row 1, column ", i + 1, ": unknown column '", header[i],
                                    "' (known: ", absl::StrJoin(kDeviceCsvColumns, ", "), ")"));
    } else if (!col.emplace(name, i).second) {
      errors.push_back(
          absl::StrCat("row 1, column ", i + 1, ": column '", name, "' appears twice"));
    }
  }
  std::vector<std::string> required = {"set_username", "icp_username", "icp_password"};
  if (set_password_required) required.push_back("set_password");
  for (const std::string& r : required) {
    if (!col.count(r)) {
      errors.push_back(absl::StrCat("row 1: required column '", r, "' is missing"));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));

  auto get = [&](const std::vector<std::string>& row, const char* name) -> std::string {
    auto it = col.find(name);
    return it == col.end() ? std::string() : UnescapeCsvCell(row[it->second]);
  };

  std::vector<CsvDevice> out;
  std::map<std::string, int> users, icps, macs;
  for (size_t r = 1; r < parsed.rows.size(); ++r) {
    const std::vector<std::string>& row = parsed.rows[r];
    const int rowno = parsed.lines[r];
    bool blank = true;
    for (const std::string& f : row) blank &= absl::StripAsciiWhitespace(f).empty();
    if (blank) continue;  // empty lines are allowed anywhere
    if (row.size() != header.size()) {
      errors.push_back(absl::StrCat("row ", rowno, ": has ", row.size(), " fields, the header has ",
                                    header.size()));
      continue;
    }
    CsvDevice d;
    d.row = rowno;
    d.device.set_set_username(get(row, "set_username"));
    d.device.set_set_password(get(row, "set_password"));
    d.device.set_icp_username(get(row, "icp_username"));
    d.device.set_icp_password(get(row, "icp_password"));
    d.device.set_description(get(row, "description"));
    d.device.set_mac(get(row, "mac"));
    d.device.set_site(get(row, "site"));
    d.device.set_location(get(row, "location"));
    absl::StatusOr<bool> srtp = ParseBool(get(row, "srtp_optional"));
    if (!srtp.ok()) {
      errors.push_back(absl::StrCat(RowCol(rowno, "srtp_optional"), ": ", srtp.status().message()));
    } else {
      d.device.set_srtp_optional(*srtp);
    }
    if (!set_password_required && !d.device.set_password().empty()) {
      errors.push_back(absl::StrCat(RowCol(rowno, "set_password"),
                                    ": must be empty in SSO mode (rwg generates it)"));
    }
    for (const FieldError& e : NormalizeAndValidateDevice(d.device, set_password_required)) {
      errors.push_back(absl::StrCat(RowCol(rowno, e.field), ": ", e.message));
    }
    auto dup = [&](std::map<std::string, int>& seen, const std::string& value, const char* field) {
      if (value.empty()) return;
      auto [it, fresh] = seen.emplace(value, rowno);
      if (!fresh) {
        errors.push_back(
            absl::StrCat(RowCol(rowno, field), ": '", value, "' is also on row ", it->second));
      }
    };
    dup(users, d.device.set_username(), "set_username");
    dup(icps, d.device.icp_username(), "icp_username");
    dup(macs, d.device.mac(), "mac");
    out.push_back(std::move(d));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return out;
}

std::string WriteDeviceCsv(const std::vector<adminpb::Device>& devices) {
  std::string out;
  auto field = [&out](absl::string_view raw, bool last) {
    const std::string v = EscapeCsvCell(raw);
    std::string buf(v.size() * 2 + 2, '\0');
    size_t n = csv_write(buf.data(), buf.size(), v.data(), v.size());
    out.append(buf.data(), n);
    out.append(last ? "\r\n" : ",");
  };
  out = absl::StrCat(absl::StrJoin(kDeviceCsvColumns, ","), "\r\n");
  for (const adminpb::Device& d : devices) {
    field(d.set_username(), false);
    field(d.set_password(), false);
    field(d.icp_username(), false);
    field(d.icp_password(), false);
    field(d.description(), false);
    field(d.mac(), false);
    field(d.site(), false);
    field(d.location(), false);
    field(d.srtp_optional() ? "true" : "false", true);
  }
  return out;
}

}  // namespace rwg::control
