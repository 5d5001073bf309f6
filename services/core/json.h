// JSON records kept in Redis (bindings, bans, calls, sessions, ...). Their strings often come
// from the network (a phone's display name, Call-ID or Contact, a caller name from the iPBX in
// Latin-1), so they may hold bytes that are not UTF-8. nlohmann::json::dump() throws on those
// (type_error.316); these helpers never throw.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace rwg::core {

// `j` as compact JSON text. Bytes of its strings that are not UTF-8 become U+FFFD (the
// replacement character); everything else is kept exactly.
std::string JsonDump(const nlohmann::json& j);

// `s` with the bytes that are not UTF-8 replaced by U+FFFD: for protobuf string fields, which
// must be UTF-8.
std::string ValidUtf8(const std::string& s);

// `text` parsed as a JSON object; nullopt when it is not JSON or not an object (never throws).
std::optional<nlohmann::json> JsonObject(std::string_view text);

// The number `j[key]` as a T, `fallback` when `j` is not an object or has no such key. A value
// that is not a number, or does not fit in T, throws nlohmann::json::exception (the record is
// damaged), as json::value() does for a wrong type; a float like 1e99 is never converted (that
// would be undefined behaviour). A fraction is cut off.
template <typename T>
T JsonNumber(const nlohmann::json& j, const char* key, T fallback) {
  static_assert(std::is_integral_v<T>);
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_number()) {
    throw nlohmann::json::type_error::create(302, std::string(key) + ": not a number", &*it);
  }
  bool fits = false;
  T out{};
  if (it->is_number_unsigned()) {
    const auto v = it->get<uint64_t>();
    fits = std::in_range<T>(v);
    out = static_cast<T>(v);
  } else if (it->is_number_integer()) {
    const auto v = it->get<int64_t>();
    fits = std::in_range<T>(v);
    out = static_cast<T>(v);
  } else {
    const double d = it->get<double>();
    fits = d >= static_cast<double>(std::numeric_limits<T>::min()) &&
           d < static_cast<double>(std::numeric_limits<T>::max());
    if (fits) out = static_cast<T>(d);
  }
  if (!fits) {
    throw nlohmann::json::out_of_range::create(406, std::string(key) + ": out of range", &*it);
  }
  return out;
}

// Reads the fields of one JSON object of a record (the object of a decoder), never throwing.
// A missing field leaves its output as it is (its default); the first field of the wrong type
// or range makes status() DataLoss naming it, as "<record>: <path><key>: not a string" (record
// "call record", path "set."); reads after an error do nothing.
class JsonFields {
 public:
  // `object` must be a JSON object and outlive this.
  JsonFields(const nlohmann::json& object, std::string record, std::string path = "");

  void Get(const char* key, std::string* out);
  void Get(const char* key, bool* out);
  void Get(const char* key, std::vector<std::string>* out);  // an array of strings
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) void Get(const char* key, T* out) {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return;
    if (!v->is_number()) return Fail(key, "not a number");
    try {
      *out = JsonNumber<T>(object_, key, *out);
    } catch (const nlohmann::json::exception&) {
      Fail(key, "out of range");
    }
  }
  // The object `key`: nullptr when it is missing, or not an object (an error).
  const nlohmann::json* Object(const char* key);
  // The fields of the object `key` (`*present`: whether there is one), read into this
  // reader's status; a missing object reads as an empty one.
  JsonFields Nested(const char* key, bool* present = nullptr);
  // Takes the error of `nested` when this reader has none.
  void Merge(const JsonFields& nested);

  const absl::Status& status() const { return status_; }

 private:
  // The value of `key`; nullptr when missing or after an error.
  const nlohmann::json* Find(const char* key) const;
  void Fail(const std::string& key, const std::string& what);

  const nlohmann::json& object_;
  std::string record_;
  std::string path_;
  absl::Status status_;
};

}  // namespace rwg::core
