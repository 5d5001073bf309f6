#include "services/tma/rw_csv.h"

#include <csv.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/tma/mac.h"

namespace rwg::tma {
namespace {

constexpr std::string_view kUserColumn = "sip line1 user name";
constexpr std::string_view kAuthColumn = "sip line1 auth name";
constexpr std::string_view kPasswordColumn = "sip line1 password";

// System data (seed §6.3) in the order it is written, and whether a phone may change it: the
// servers and the provisioning path are how the phone reaches rwg, so they are locked.
struct SystemField {
  std::string_view name;
  std::string SystemData::*value;
  bool locked;
};
constexpr SystemField kSystemFields[] = {
    {"sip proxy ip", &SystemData::sip_proxy_ip, true},
    {"sip registrar ip", &SystemData::sip_registrar_ip, true},
    {"https server", &SystemData::https_server, true},
    {"https path", &SystemData::https_path, true},
    {"keyboard script", &SystemData::keyboard_script, false},
};

// Debian's abseil has a string_view of its own: the contracts' std::string_view, converted.
absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Decodes the code point at `i` (UTF-8, RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF) and moves `i` past it; false when the bytes there are not one.
bool NextCodePoint(std::string_view s, size_t& i, uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    ++i;
    return true;
  }
  if ((b0 & 0xE0) == 0xC0) {
    n = 2;
    cp = b0 & 0x1F;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3;
    cp = b0 & 0x0F;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return false;
  }
  if (s.size() - i < n) return false;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  i += n;
  return true;
}

// What is wrong with a cell, if anything: what a phone file cannot hold.
std::optional<std::string> CellProblem(std::string_view cell, size_t max_cell) {
  if (cell.size() > max_cell) {
    return absl::StrCat("the cell is longer than the limit of ", max_cell, " bytes");
  }
  size_t i = 0;
  uint32_t cp = 0;
  while (i < cell.size()) {
    if (!NextCodePoint(cell, i, cp)) {
      return "the cell is not valid UTF-8 (save the file as UTF-8)";
    }
    if (cp == '\r' || cp == '\n') return "the cell holds a line break";
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
      return absl::StrFormat("the cell holds the control character U+%04X", cp);
    }
  }
  return std::nullopt;
}

// Header text as a problem may name it: printable UTF-8, not too long.
std::string Shown(std::string_view text) {
  constexpr size_t kMax = 80;
  const bool printable = !CellProblem(text, kMax).has_value();
  if (printable) return std::string(text);
  const std::string escaped = absl::CHexEscape(Sv(text.substr(0, kMax)));
  return text.size() > kMax ? absl::StrCat(escaped, "...") : escaped;
}

// ---- Reading the rows with libcsv ----

struct RawRow {
  int line = 0;      // where the row starts
  size_t cells = 0;  // how many the row has; at most max_columns + 1 are kept
  // Each at most Kept() bytes: enough to see that a cell is over the limit or to show a header.
  std::vector<std::string> text;
};

struct Reader {
  const CsvLimits* limits = nullptr;
  std::vector<RawRow> rows;  // the header, then at most max_rows rows
  RawRow current;
  int line = 1;
  bool between_rows = true;
  bool too_many = false;
};

size_t Kept(const CsvLimits& limits) { return std::max<size_t>(limits.max_cell, 128) + 1; }

void OnField(void* data, size_t len, void* ctx) {
  auto* r = static_cast<Reader*>(ctx);
  ++r->current.cells;
  if (r->current.text.size() > r->limits->max_columns) return;
  if (len == 0) {
    r->current.text.emplace_back();
  } else {
    r->current.text.emplace_back(static_cast<const char*>(data), std::min(len, Kept(*r->limits)));
  }
}

void OnRow(int /*terminator*/, void* ctx) {
  auto* r = static_cast<Reader*>(ctx);
  r->between_rows = true;
  RawRow row = std::move(r->current);
  r->current = RawRow();
  bool blank = row.cells == row.text.size();
  for (const std::string& cell : row.text) blank &= TrimSpaces(cell).empty();
  if (blank) return;
  if (r->rows.size() > r->limits->max_rows) {  // the header and max_rows rows
    r->too_many = true;
    return;
  }
  r->rows.push_back(std::move(row));
}

// libcsv trims spaces around unquoted cells; a tab is kept, for the check to report.
int IsCsvSpace(unsigned char c) { return c == ' ' ? 1 : 0; }

// The rows of the file, each with the line it starts on; a problem when the CSV is malformed.
std::optional<CsvProblem> ReadRows(std::string_view csv, Reader& reader) {
  csv_parser parser;
  if (csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI) != 0) {
    return CsvProblem{0, "", "cannot initialise the CSV parser", false};
  }
  csv_set_space_func(&parser, IsCsvSpace);
  // Fed one line at a time (a chunk ends after each CR or LF), so that each row is known by
  // the line it starts on; a lone CR counts as a line break, as libcsv takes it for one.
  bool ok = true;
  size_t pos = 0;
  while (ok && pos < csv.size()) {
    const size_t brk = csv.find_first_of("\r\n", pos);
    const size_t end = brk == std::string_view::npos ? csv.size() : brk + 1;
    const std::string_view chunk = csv.substr(pos, end - pos);
    if (reader.between_rows && chunk.find_first_not_of(" \r\n") != std::string_view::npos) {
      reader.between_rows = false;
      reader.current.line = reader.line;
    }
    ok = csv_parse(&parser, chunk.data(), chunk.size(), OnField, OnRow, &reader) == chunk.size();
    if (!ok) break;
    if (brk != std::string_view::npos &&
        (csv[brk] == '\n' || brk + 1 >= csv.size() || csv[brk + 1] != '\n')) {
      ++reader.line;
    }
    pos = end;
  }
  const int failed_line = reader.line;
  ok = ok && csv_fini(&parser, OnField, OnRow, &reader) == 0;
  const int error = csv_error(&parser);
  csv_free(&parser);
  if (ok) return std::nullopt;
  const int row = reader.between_rows ? failed_line : reader.current.line;
  std::string what;
  if (error != CSV_EPARSE) {
    what = absl::StrCat("the CSV cannot be read on line ", failed_line, " (", csv_strerror(error),
                        ")");
  } else if (pos >= csv.size()) {
    what = "a quoted cell is not closed";
  } else {
    what = absl::StrCat("malformed CSV on line ", failed_line,
                        ": a quote inside a cell that is not quoted, or text after the closing "
                        "quote of one that is");
  }
  return CsvProblem{row, "",
                    absl::StrCat(what,
                                 "; a cell with a comma, a quote or a line break must be quoted, "
                                 "its quotes doubled"),
                    false};
}

// ---- Checking ----

struct Column {
  std::string header;  // as a problem names it (Shown)
  std::string name;    // parameter name, without '!'
  bool locked = false;
  bool mac = false;
};

// Problems with the index of their column for sorting: -1 for the whole row.
class Problems {
 public:
  void Add(int row, int column_index, std::string column, std::string message,
           bool warning = false) {
    if (!warning) ++errors_;
    items_.push_back(
        {column_index, CsvProblem{row, std::move(column), std::move(message), warning}});
  }
  bool has_errors() const { return errors_ > 0; }
  std::vector<CsvProblem> Sorted() && {
    std::stable_sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) {
      return std::pair(a.problem.row, a.column_index) < std::pair(b.problem.row, b.column_index);
    });
    std::vector<CsvProblem> out;
    out.reserve(items_.size());
    for (Item& item : items_) out.push_back(std::move(item.problem));
    return out;
  }

 private:
  struct Item {
    int column_index;
    CsvProblem problem;
  };
  std::vector<Item> items_;
  size_t errors_ = 0;
};

CheckedCsv Done(Problems problems) {
  CheckedCsv out;
  out.problems = std::move(problems).Sorted();
  return out;
}

// The header row's columns; problems added for every bad header.
std::vector<Column> ReadHeader(const RawRow& header, const CsvLimits& limits, Problems& problems) {
  std::vector<Column> columns;
  if (header.cells > limits.max_columns) {
    problems.Add(header.line, -1, "",
                 absl::StrCat("the header has ", header.cells, " columns, more than the limit of ",
                              limits.max_columns));
    return columns;
  }
  std::map<std::string, size_t> seen;  // name (MAC ADDRESS for the MAC) → column index
  for (size_t i = 0; i < header.text.size(); ++i) {
    const int index = static_cast<int>(i);
    const std::string_view text = TrimSpaces(header.text[i]);
    Column c;
    c.header = Shown(text);
    if (text.empty()) {
      problems.Add(header.line, index, "",
                   absl::StrCat("column ", i + 1, " has no header (a parameter name)"));
    } else if (absl::EqualsIgnoreCase(Sv(text), Sv(kMacColumn))) {
      c.mac = true;
      c.name = std::string(kMacColumn);
    } else {
      c.locked = text.front() == '!';
      const std::string_view name = c.locked ? text.substr(1) : text;
      if (IsParameterName(name)) {
        c.name = std::string(name);
      } else {
        problems.Add(header.line, index, c.header,
                     absl::StrCat("'", c.header,
                                  "' is not a parameter name of the phones (lower-case letters, "
                                  "digits and single spaces, at most 64, '!' in front to lock "
                                  "it) nor '",
                                  Sv(kMacColumn), "'"));
      }
    }
    if (!c.name.empty()) {
      auto [it, fresh] = seen.emplace(c.name, i);
      if (!fresh) {
        problems.Add(header.line, index, c.header,
                     absl::StrCat("repeats column ", it->second + 1, " ('",
                                  columns[it->second].header, "')"));
      }
    }
    columns.push_back(std::move(c));
  }
  int after = static_cast<int>(columns.size());
  for (std::string_view required : {kMacColumn, kUserColumn, kAuthColumn, kPasswordColumn}) {
    if (!seen.contains(std::string(required))) {
      problems.Add(header.line, after++, std::string(required),
                   absl::StrCat("the required column '", Sv(required), "' is missing"));
    }
  }
  return columns;
}

std::optional<int> Find(const std::vector<Column>& columns, std::string_view name) {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].name == name) return static_cast<int>(i);
  }
  return std::nullopt;
}

// The MAC as a device's record has it, for comparing: normalized when it can be.
std::string ComparableMac(const std::string& mac) {
  absl::StatusOr<std::string> n = NormalizeMac(mac);
  return n.ok() ? *n : absl::AsciiStrToUpper(mac);
}

}  // namespace

bool CheckedCsv::ok() const {
  return std::none_of(problems.begin(), problems.end(),
                      [](const CsvProblem& p) { return !p.warning; });
}

CheckedCsv CheckRemoteWorkerCsv(std::string_view csv, const SystemData& system,
                                const DeviceLookup& devices, const CsvLimits& limits) {
  Problems problems;
  if (csv.size() > limits.max_bytes) {
    problems.Add(
        0, -1, "",
        absl::StrCat("the file is ", csv.size(), " bytes, over the limit of ", limits.max_bytes));
    return Done(std::move(problems));
  }
  if (csv.starts_with("\xFF\xFE") || csv.starts_with("\xFE\xFF")) {
    problems.Add(0, -1, "", "the file is UTF-16; save it as CSV in UTF-8");
    return Done(std::move(problems));
  }
  if (csv.starts_with("\xEF\xBB\xBF")) csv.remove_prefix(3);  // a spreadsheet's BOM

  Reader reader;
  reader.limits = &limits;
  if (std::optional<CsvProblem> malformed = ReadRows(csv, reader)) {
    problems.Add(malformed->row, -1, "", malformed->message);
    return Done(std::move(problems));
  }
  if (reader.too_many) {
    problems.Add(0, -1, "",
                 absl::StrCat("the file has more than ", limits.max_rows, " phone rows"));
    return Done(std::move(problems));
  }
  if (reader.rows.empty()) {
    problems.Add(0, -1, "",
                 absl::StrCat("the file is empty; its first row must name the columns (",
                              Sv(kMacColumn), ",!", Sv(kUserColumn), ",!", Sv(kAuthColumn), ",",
                              Sv(kPasswordColumn), ", ...)"));
    return Done(std::move(problems));
  }

  const std::vector<Column> columns = ReadHeader(reader.rows[0], limits, problems);
  // A bad header still lets the rows be checked, so that one refusal names every problem;
  // without the required columns (or any column) the rows cannot be read.
  if (columns.empty() || !Find(columns, kMacColumn) || !Find(columns, kUserColumn) ||
      !Find(columns, kAuthColumn) || !Find(columns, kPasswordColumn)) {
    return Done(std::move(problems));
  }
  if (reader.rows.size() == 1) {
    problems.Add(0, -1, "", "the file has no phone rows, only the header");
    return Done(std::move(problems));
  }
  const int mac_col = *Find(columns, kMacColumn);
  const int user_col = *Find(columns, kUserColumn);
  const int password_col = *Find(columns, kPasswordColumn);
  const std::vector<int> mandatory = {mac_col, user_col, *Find(columns, kAuthColumn), password_col};
  // System data fields with a column of their own: the column's index.
  std::vector<std::optional<int>> system_col;
  for (const SystemField& f : kSystemFields) system_col.push_back(Find(columns, f.name));

  // First the rows' own checks, collecting the user names to look up all at once.
  struct Row {
    Phone phone;
    std::vector<std::string_view> cells;
    std::vector<bool> usable;
    bool looked_up = false;  // the first row of its user: the device is checked on it
  };
  std::vector<Row> rows;
  rows.reserve(reader.rows.size() - 1);
  std::vector<std::string> lookups;
  std::map<std::string, int> macs;   // normalized MAC → row
  std::map<std::string, int> users;  // user name → row
  for (size_t r = 1; r < reader.rows.size(); ++r) {
    const RawRow& raw = reader.rows[r];
    const int line = raw.line;
    if (raw.cells != columns.size()) {
      problems.Add(
          line, -1, "",
          absl::StrCat("the row has ", raw.cells, " cells, the header has ", columns.size()));
      continue;
    }
    Row& row = rows.emplace_back();
    row.cells.resize(columns.size());
    row.usable.assign(columns.size(), true);
    std::vector<std::string_view>& cells = row.cells;
    std::vector<bool>& usable = row.usable;
    for (size_t i = 0; i < columns.size(); ++i) {
      cells[i] = TrimSpaces(raw.text[i]);
      if (std::optional<std::string> bad = CellProblem(cells[i], limits.max_cell)) {
        problems.Add(line, static_cast<int>(i), columns[i].header, *std::move(bad));
        usable[i] = false;
      }
    }
    for (int i : mandatory) {
      if (usable[i] && cells[i].empty()) {
        problems.Add(line, i, columns[i].header, "the cell is empty; it is required");
        usable[i] = false;
      }
    }

    Phone& phone = row.phone;
    phone.row = line;
    if (usable[mac_col]) {
      absl::StatusOr<std::string> mac = NormalizeMac(cells[mac_col]);
      if (!mac.ok()) {
        problems.Add(line, mac_col, columns[mac_col].header, std::string(mac.status().message()));
      } else if (auto [it, fresh] = macs.emplace(*mac, line); !fresh) {
        problems.Add(line, mac_col, columns[mac_col].header,
                     absl::StrCat("MAC ", *mac, " is also on row ", it->second));
      } else {
        phone.mac = *std::move(mac);
      }
    }
    if (usable[user_col]) {
      phone.user = std::string(cells[user_col]);
      if (auto [it, fresh] = users.emplace(phone.user, line); !fresh) {
        problems.Add(line, user_col, columns[user_col].header,
                     absl::StrCat("the user '", phone.user, "' is also on row ", it->second));
      } else {
        row.looked_up = true;
        lookups.push_back(phone.user);
      }
    }
  }

  // Then the devices, in one lookup.
  std::vector<std::optional<DeviceFacts>> found;
  if (devices && !lookups.empty()) found = devices(lookups);
  size_t next = 0;
  for (const Row& row : rows) {
    if (!row.looked_up) continue;
    const size_t k = next++;
    const Phone& phone = row.phone;
    const int line = phone.row;
    if (k >= found.size() || !found[k].has_value()) {
      problems.Add(
          line, user_col, columns[user_col].header,
          absl::StrCat("no declared device has the set-side user name '", phone.user, "'"));
      continue;
    }
    const DeviceFacts& device = *found[k];
    if (row.usable[password_col] && row.cells[password_col] != device.set_password) {
      problems.Add(line, password_col, columns[password_col].header,
                   absl::StrCat("differs from the set-side password of the device '", phone.user,
                                "': the phone will not register"),
                   /*warning=*/true);
    }
    if (!device.mac.empty() && !phone.mac.empty() && ComparableMac(device.mac) != phone.mac) {
      problems.Add(line, mac_col, columns[mac_col].header,
                   absl::StrCat("the device '", phone.user, "' is declared with MAC ",
                                ComparableMac(device.mac), ", not ", phone.mac),
                   /*warning=*/true);
    }
  }

  // Last, when nothing is wrong, the parameters each phone's file is written with.
  CheckedCsv out;
  if (!problems.has_errors()) {
    out.phones.reserve(rows.size());
    for (Row& row : rows) {
      Phone& phone = row.phone;
      for (size_t i = 0; i < columns.size(); ++i) {
        const Column& c = columns[i];
        if (c.mac) continue;
        std::string value(row.cells[i]);
        if (value.empty()) {
          for (size_t f = 0; f < std::size(kSystemFields); ++f) {
            if (system_col[f] == static_cast<int>(i)) value = system.*kSystemFields[f].value;
          }
        }
        if (!value.empty()) phone.params.push_back({c.name, std::move(value), c.locked});
      }
      for (size_t f = 0; f < std::size(kSystemFields); ++f) {
        const std::string& value = system.*kSystemFields[f].value;
        if (!system_col[f].has_value() && !value.empty()) {
          phone.params.push_back(
              {std::string(kSystemFields[f].name), value, kSystemFields[f].locked});
        }
      }
      out.phones.push_back(std::move(phone));
    }
  }
  out.problems = std::move(problems).Sorted();
  if (!out.ok()) out.phones.clear();
  return out;
}

ExportedCsv ExportRemoteWorkerCsv(const std::vector<DeviceFacts>& devices, const SystemData& system,
                                  bool system_columns) {
  ExportedCsv out;
  std::string& csv = out.csv;
  auto cell = [&csv](std::string_view value, bool last) {
    const bool quote =
        value.find_first_of(",\"\r\n") != std::string_view::npos ||
        (!value.empty() && (absl::ascii_isspace(static_cast<unsigned char>(value.front())) ||
                            absl::ascii_isspace(static_cast<unsigned char>(value.back()))));
    if (quote) {
      std::string buf(value.size() * 2 + 2, '\0');
      const size_t n = csv_write(buf.data(), buf.size(), value.data(), value.size());
      csv.append(buf.data(), n);
    } else {
      csv.append(value);
    }
    csv.append(last ? "\r\n" : ",");
  };

  std::vector<const SystemField*> extra;
  if (system_columns) {
    for (const SystemField& f : kSystemFields) {
      if (!(system.*f.value).empty()) extra.push_back(&f);
    }
  }
  cell(kMacColumn, false);
  cell(absl::StrCat("!", Sv(kUserColumn)), false);
  cell(absl::StrCat("!", Sv(kAuthColumn)), false);
  cell(kPasswordColumn, extra.empty());
  for (size_t i = 0; i < extra.size(); ++i) {
    cell(absl::StrCat(extra[i]->locked ? "!" : "", Sv(extra[i]->name)), i + 1 == extra.size());
  }
  for (const DeviceFacts& d : devices) {
    absl::StatusOr<std::string> mac = NormalizeMac(d.mac);
    if (d.mac.empty() || !mac.ok()) {
      out.skipped.push_back(d.set_username);
      continue;
    }
    cell(*mac, false);
    cell(d.set_username, false);
    cell(d.auth_name.empty() ? d.set_username : d.auth_name, false);
    cell(d.set_password, extra.empty());
    for (size_t i = 0; i < extra.size(); ++i) {
      cell(system.*extra[i]->value, i + 1 == extra.size());
    }
  }
  return out;
}

}  // namespace rwg::tma
