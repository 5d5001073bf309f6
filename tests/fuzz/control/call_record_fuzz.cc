// A call record of sip-edge as control reads it back from Redis for ListCalls and GetCall
// (CallFromJson): a damaged record must be an error, never a crash. Property: the call's id
// is the record's "id", or the key's when the record has none.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "services/control/admin_service.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  const std::string key_id = "c-key";
  absl::StatusOr<rwg::admin::v1::Call> c = rwg::control::CallFromJson(json, key_id);
  if (!c.ok()) return 0;
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  RWG_FUZZ_CHECK("call_record", j.is_object());
  const auto it = j.find("id");
  if (it == j.end()) {
    RWG_FUZZ_CHECK("call_record", c->id() == key_id);
  } else {
    RWG_FUZZ_CHECK("call_record", it->is_string() && c->id() == it->get<std::string>());
  }
  return 0;
}
