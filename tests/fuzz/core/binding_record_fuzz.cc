// A registration record as sip-edge and control read it back from Redis (BindingFromJson):
// a damaged record must be an error, never a crash. Property: what BindingToJson writes
// reads back to the same binding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "services/core/registrations.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<rwg::core::Binding> b = rwg::core::BindingFromJson(json);
  if (!b.ok()) return 0;
  absl::StatusOr<rwg::core::Binding> again =
      rwg::core::BindingFromJson(rwg::core::BindingToJson(*b));
  RWG_FUZZ_CHECK("binding_record", again.ok());
  RWG_FUZZ_CHECK("binding_record",
                 again->set_username == b->set_username && again->icp_username == b->icp_username &&
                     again->contacts == b->contacts && again->reachable == b->reachable);
  return 0;
}
