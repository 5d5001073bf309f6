// The request target of a phone's HTTPS request (ParseRequestPath, RedactHash, StoreName,
// IsStoreName). Properties: a file target names a valid store file; no accepted target keeps
// a "..", '/' or '\' in the file name; the redacted target starts with the placeholder, not the
// hash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "services/provisioning/request_path.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::provisioning;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string target(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<RequestPath> p = ParseRequestPath(target);
  const std::string redacted = RedactHash(target);
  (void)StoreName(target);
  (void)IsStoreName(target);
  if (!p.ok()) return 0;
  RWG_FUZZ_CHECK("request_path", !p->hash.empty());
  if (p->kind == RequestPath::Kind::kFile) {
    RWG_FUZZ_CHECK("request_path", IsStoreName(p->file));
    RWG_FUZZ_CHECK("request_path", p->file.find_first_of("/\\") == std::string::npos);
    RWG_FUZZ_CHECK("request_path", p->file != "." && p->file != "..");
    RWG_FUZZ_CHECK("request_path", StoreName(p->file) == p->file);
  }
  RWG_FUZZ_CHECK("request_path", absl::StartsWith(redacted, "/<hash>"));
  return 0;
}
