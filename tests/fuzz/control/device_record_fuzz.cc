// A device record as control reads it back from Redis (DeviceFromJson): a damaged record is
// an error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "services/control/store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<rwg::admin::v1::Device> d = rwg::control::DeviceFromJson(json);
  if (d.ok()) (void)rwg::control::DeviceToJson(*d);
  return 0;
}
