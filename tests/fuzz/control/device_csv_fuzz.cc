// Bulk device import (rwgctl device import → ImportDevices): ParseDeviceCsv on an uploaded
// file, in both password modes. Property: an accepted file written back by WriteDeviceCsv
// (what `rwgctl device export` produces) imports again to the same devices.
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "services/control/device_csv.h"
#include "tests/fuzz/fuzz_support.h"

using rwg::control::CsvDevice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool sso = data[0] & 1;
  const std::string csv(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<std::vector<CsvDevice>> parsed = rwg::control::ParseDeviceCsv(csv, !sso, 64);
  if (!parsed.ok()) return 0;

  std::vector<rwg::admin::v1::Device> devices;
  for (const CsvDevice& d : *parsed) devices.push_back(d.device);
  const std::string written = rwg::control::WriteDeviceCsv(devices);
  absl::StatusOr<std::vector<CsvDevice>> again = rwg::control::ParseDeviceCsv(written, !sso, 64);
  RWG_FUZZ_CHECK("device_csv", again.ok());
  RWG_FUZZ_CHECK("device_csv", again->size() == devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    RWG_FUZZ_CHECK("device_csv", google::protobuf::util::MessageDifferencer::Equals(
                                     (*again)[i].device, devices[i]));
  }
  return 0;
}
