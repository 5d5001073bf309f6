// A ban record as sip-edge and control read it back from Redis (BanFromJson, what
// BanStore::List parses for each key): a damaged record must be an error, never a crash.
// Property: what BanToJson writes reads back to the same ban.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "services/core/bans.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<rwg::core::Ban> b = rwg::core::BanFromJson(json);
  if (!b.ok()) return 0;
  RWG_FUZZ_CHECK("ban_record", b->id.empty());
  absl::StatusOr<rwg::core::Ban> again = rwg::core::BanFromJson(rwg::core::BanToJson(*b));
  RWG_FUZZ_CHECK("ban_record", again.ok());
  RWG_FUZZ_CHECK("ban_record", again->kind == b->kind && again->source == b->source &&
                                   again->user == b->user && again->reason == b->reason &&
                                   again->instance == b->instance && again->since == b->since &&
                                   again->until == b->until);
  return 0;
}
