// The request headers the provisioning server judges (ParseRange, NotModified, ParseHttpDate,
// ContentTypeFor, FileKind). The input is the Range, If-Range, If-None-Match and
// If-Modified-Since values and a file name, separated by newlines, after 8 bytes of file
// size. Properties: a partial range lies inside the file and is not empty; a date rwg writes
// parses back to itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "services/provisioning/http_rules.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::provisioning;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) return 0;
  uint64_t file_size;
  std::memcpy(&file_size, data, 8);
  file_size >>= data[8] % 64;
  std::vector<std::string> f =
      absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data) + 9, size - 9), '\n');
  f.resize(5);
  const std::string &range = f[0], &if_range = f[1], &inm = f[2], &ims = f[3], &name = f[4];

  const FileInfo info{file_size, absl::FromUnixSeconds(1'700'000'000), 4242};
  const std::string etag = ETagFor(info);
  ByteRange r;
  RangeResult res = ParseRange(range, if_range, file_size, etag, info.modified, &r);
  if (res == RangeResult::kPartial) {
    RWG_FUZZ_CHECK("http_rules", r.length > 0);
    RWG_FUZZ_CHECK("http_rules", r.start < file_size);
    RWG_FUZZ_CHECK("http_rules", r.length <= file_size - r.start);
  }
  (void)NotModified(inm, ims, etag, info.modified);
  std::optional<absl::Time> t = ParseHttpDate(ims);
  if (t) {
    std::optional<absl::Time> again = ParseHttpDate(HttpDate(*t));
    RWG_FUZZ_CHECK("http_rules", again.has_value() && *again == *t);
  }
  (void)ContentTypeFor(name);
  (void)FileKind(name);
  return 0;
}
