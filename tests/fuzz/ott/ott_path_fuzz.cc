// The path of a browser's request through ott (NormalizePath, Classify). Properties: an
// accepted path starts with '/', holds no empty, "." or ".." segment, only printable ASCII, no
// encoded '/', '\', '.', '%' or NUL; normalizing it again changes nothing (what is checked is
// what the application gets); a path the admin list matches in any case never passes as a user
// path.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "services/ott/paths.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::ott;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string target(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::string> p = NormalizePath(target);
  if (!p.ok()) return 0;
  RWG_FUZZ_CHECK("ott_path", absl::StartsWith(*p, "/"));
  RWG_FUZZ_CHECK("ott_path", p->find("//") == std::string::npos);
  for (absl::string_view seg : absl::StrSplit(absl::string_view(*p).substr(1), '/')) {
    RWG_FUZZ_CHECK("ott_path", seg != "." && seg != "..");
  }
  for (char c : *p) {
    RWG_FUZZ_CHECK("ott_path", c > ' ' && c < 0x7f && c != '\\' && c != '?' && c != '#');
  }
  const std::string upper = absl::AsciiStrToUpper(*p);
  for (const char* bad : {"%2F", "%2E", "%25", "%5C", "%00"}) {
    RWG_FUZZ_CHECK("ott_path", upper.find(bad) == std::string::npos);
  }
  absl::StatusOr<std::string> again = NormalizePath(*p);
  RWG_FUZZ_CHECK("ott_path", again.ok() && *again == *p);
  pb::PathLists lists;
  lists.add_user("/");
  lists.add_admin("/admin/");
  const Access a = Classify(lists, *p);
  RWG_FUZZ_CHECK("ott_path", a != Access::kRefused);
  const std::string lower = absl::AsciiStrToLower(*p);
  if (lower == "/admin" || absl::StartsWith(lower, "/admin/")) {
    RWG_FUZZ_CHECK("ott_path", a == Access::kAdmin);
  }
  return 0;
}
