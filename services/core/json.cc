#include "services/core/json.h"

#include "absl/strings/str_cat.h"

namespace rwg::core {

std::string JsonDump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ValidUtf8(const std::string& s) {
  const std::string quoted = JsonDump(nlohmann::json(s));
  return nlohmann::json::parse(quoted).get<std::string>();
}

std::optional<nlohmann::json> JsonObject(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

JsonFields::JsonFields(const nlohmann::json& object, std::string record, std::string path)
    : object_(object), record_(std::move(record)), path_(std::move(path)) {}

const nlohmann::json* JsonFields::Find(const char* key) const {
  if (!status_.ok() || !object_.is_object()) return nullptr;
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

void JsonFields::Fail(const std::string& key, const std::string& what) {
  if (!status_.ok()) return;  // the first error is the one told
  status_ = absl::DataLossError(absl::StrCat(record_, ": ", path_, key, ": ", what));
}

void JsonFields::Get(const char* key, std::string* out) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) return;
  if (!v->is_string()) return Fail(key, "not a string");
  *out = v->get<std::string>();
}

void JsonFields::Get(const char* key, bool* out) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) return;
  if (!v->is_boolean()) return Fail(key, "not a boolean");
  *out = v->get<bool>();
}

void JsonFields::Get(const char* key, std::vector<std::string>* out) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) return;
  if (!v->is_array()) return Fail(key, "not an array");
  std::vector<std::string> items;
  items.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      return Fail(absl::StrCat(key, "[", i, "]"), "not a string");
    }
    items.push_back((*v)[i].get<std::string>());
  }
  *out = std::move(items);
}

const nlohmann::json* JsonFields::Object(const char* key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) return nullptr;
  if (!v->is_object()) {
    Fail(key, "not an object");
    return nullptr;
  }
  return v;
}

JsonFields JsonFields::Nested(const char* key, bool* present) {
  static const nlohmann::json* const kEmpty = new nlohmann::json(nlohmann::json::object());
  const nlohmann::json* v = Object(key);
  if (present != nullptr) *present = v != nullptr;
  return JsonFields(v != nullptr ? *v : *kEmpty, record_, absl::StrCat(path_, key, "."));
}

void JsonFields::Merge(const JsonFields& nested) {
  if (status_.ok()) status_ = nested.status_;
}

}  // namespace rwg::core
