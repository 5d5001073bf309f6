#include "tools/rwgctl/printer.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace rwg::rwgctl {
namespace {

namespace pb = ::google::protobuf;

std::string FieldValue(const pb::Message& m, const pb::FieldDescriptor* f) {
  const pb::Reflection* r = m.GetReflection();
  if (f->is_repeated()) {
    std::vector<std::string> items;
    for (int i = 0; i < r->FieldSize(m, f); ++i) {
      switch (f->cpp_type()) {
        case pb::FieldDescriptor::CPPTYPE_ENUM:
          items.push_back(r->GetRepeatedEnum(m, f, i)->name());
          break;
        case pb::FieldDescriptor::CPPTYPE_STRING:
          items.push_back(r->GetRepeatedString(m, f, i));
          break;
        default:
          items.push_back("?");
      }
    }
    return absl::StrJoin(items, ",");
  }
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return r->GetString(m, f);
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(r->GetUInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(r->GetInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(r->GetInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(r->GetUInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, f) ? "true" : "false";
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnum(m, f)->name();
    default:
      return "?";
  }
}

void FlattenInto(const pb::Message& m, const std::string& prefix, FieldRows& out) {
  const pb::Descriptor* d = m.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    std::string name = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      FlattenInto(m.GetReflection()->GetMessage(m, f), name, out);
    } else {
      out.emplace_back(name, FieldValue(m, f));
    }
  }
}

}  // namespace

std::string ToJson(const pb::Message& m) {
  pb::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  o.add_whitespace = true;
  std::string out;
  // Fails only on strings that are not UTF-8, which the server never sends (its answers are
  // parsed as proto3 first); the output is then empty, as it always was.
  (void)pb::util::MessageToJsonString(m, &out, o);
  return out;
}

size_t DisplayWidth(absl::string_view s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string RenderTable(const Table& table) {
  std::vector<size_t> w(table.header.size());
  for (size_t i = 0; i < table.header.size(); ++i) w[i] = DisplayWidth(table.header[i]);
  for (const auto& r : table.rows) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], DisplayWidth(r[i]));
  }
  std::string text;
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(w[i] - DisplayWidth(r[i]) + 2, ' ');
    }
    absl::StrAppend(&text, absl::StripTrailingAsciiWhitespace(out), "\n");
  };
  line(table.header);
  for (const auto& r : table.rows) line(r);
  return text;
}

FieldRows Flatten(const pb::Message& m) {
  FieldRows rows;
  FlattenInto(m, "", rows);
  return rows;
}

std::string FormatTime(int64_t unix_seconds) {
  if (unix_seconds == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

std::string OrDash(const std::string& value) { return value.empty() ? "-" : value; }

void Printer::Fields(const FieldRows& rows) {
  Table table{{"FIELD", "VALUE"}, {}};
  for (const auto& [name, value] : rows) table.rows.push_back({name, value});
  Print(table);
}

void Printer::Line(const std::string& line) {
  if (!json()) out_ << line << "\n";
}

}  // namespace rwg::rwgctl
