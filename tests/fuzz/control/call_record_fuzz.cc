// A call record as the services read it back from Redis: sip-edge to end a dead instance's
// calls (core::DecodeCallRecord), control for ListCalls and GetCall (CallFromJson, on top of
// it). A damaged record must be an error, never a crash. Properties: a record that decodes
// is written again (EncodeCallRecord) as one that decodes to the same; control reads the
// records the codec reads, the call's id the record's "id", or the key's when it has none.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "services/control/admin_service.h"
#include "services/core/calls.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<rwg::core::CallRecord> r = rwg::core::DecodeCallRecord(json);
  const std::string key_id = "c-key";
  absl::StatusOr<rwg::admin::v1::Call> c = rwg::control::CallFromJson(json, key_id);
  RWG_FUZZ_CHECK("call_record", r.ok() == c.ok());
  if (!r.ok()) {
    RWG_FUZZ_CHECK("call_record", r.status().code() == absl::StatusCode::kDataLoss);
    return 0;
  }
  absl::StatusOr<rwg::core::CallRecord> again =
      rwg::core::DecodeCallRecord(rwg::core::EncodeCallRecord(*r));
  RWG_FUZZ_CHECK("call_record", again.ok());
  RWG_FUZZ_CHECK("call_record", *again == *r);
  RWG_FUZZ_CHECK("call_record", c->id() == (r->id.empty() ? key_id : r->id));
  return 0;
}
