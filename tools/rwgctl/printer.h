// How rwgctl shows answers: aligned tables and plain lines for people (-o table, the default),
// or the answer message as JSON for scripts (-o json: protobuf field names, every field).
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace rwg::rwgctl {

enum class Format { kTable, kJson };

// A header row and data rows. Columns are two spaces apart and as wide as their widest cell,
// counted in bytes; nothing is cut. Trailing blanks of a line are dropped.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

// "name = value" pairs of a message, nested messages flattened as "a.b" (see Flatten).
using FieldRows = std::vector<std::pair<std::string, std::string>>;

// The message as indented JSON with protobuf field names and every field printed.
std::string ToJson(const google::protobuf::Message& m);

// The aligned text of a table, one line per row, each ending in "\n".
// Columns a cell takes on a terminal: its UTF-8 characters (a byte that does not continue a
// character counts one), so that "Zürich" lines up with "Paris"; wide (CJK) characters count one.
size_t DisplayWidth(absl::string_view s);
std::string RenderTable(const Table& table);

// Every field of `m` as text, nested messages flattened to "a.b" names; repeated strings and
// enums joined with ",", enums by name, other repeated or unknown types as "?".
FieldRows Flatten(const google::protobuf::Message& m);

// Unix seconds as "YYYY-MM-DD HH:MM:SS UTC"; 0 is "-".
std::string FormatTime(int64_t unix_seconds);

// `value`, or "-" when empty.
std::string OrDash(const std::string& value);

class Printer {
 public:
  Printer(Format format, std::ostream& out, std::ostream& err)
      : format_(format), out_(out), err_(err) {}

  bool json() const { return format_ == Format::kJson; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // -o json: `m` as JSON; else `text()`, which prints what people read.
  template <typename Text>
  void Show(const google::protobuf::Message& m, Text&& text) {
    if (json()) {
      Json(m);
    } else {
      text();
    }
  }
  void Json(const google::protobuf::Message& m) { out_ << ToJson(m); }
  void Print(const Table& table) { out_ << RenderTable(table); }
  // A two-column FIELD/VALUE table.
  void Fields(const FieldRows& rows);
  // A line for people (a newline is added); nothing with -o json.
  void Line(const std::string& line);

 private:
  Format format_;
  std::ostream& out_;
  std::ostream& err_;
};

}  // namespace rwg::rwgctl
