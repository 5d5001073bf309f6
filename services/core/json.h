// JSON records kept in Redis (bindings, bans, calls, sessions, ...). Their strings often come
// from the network (a phone's display name, Call-ID or Contact, a caller name from the iPBX in
// Latin-1), so they may hold bytes that are not UTF-8. nlohmann::json::dump() throws on those
// (type_error.316); these helpers never throw.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace rwg::core {

// `j` as compact JSON text. Bytes of its strings that are not UTF-8 become U+FFFD (the
// replacement character); everything else is kept exactly.
std::string JsonDump(const nlohmann::json& j);

// `text` parsed as a JSON object; nullopt when it is not JSON or not an object (never throws).
std::optional<nlohmann::json> JsonObject(std::string_view text);

}  // namespace rwg::core
