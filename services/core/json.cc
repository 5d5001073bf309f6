#include "services/core/json.h"

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

}  // namespace rwg::core
