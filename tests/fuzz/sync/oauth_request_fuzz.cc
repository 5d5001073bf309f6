// A signed request as the sync API reads it (CollectParameters, then the signature check):
// the Authorization header, query and form body come from the internet, so a malformed one
// must be a refusal with an oauth_problem, never a crash. Input: header, query and body
// separated by NUL bytes. Properties: every oauth_* parameter kept is one of the request's;
// percent-encoding reads back to what was encoded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "services/sync/oauth1.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts = absl::StrSplit(in, absl::MaxSplits('\0', 2));
  parts.resize(3);
  rwg::sync::SignedRequest r;
  r.method = "POST";
  r.scheme = "https";
  r.host = "rwg.example.com:8443";
  r.path = "/oauth/request_token";
  r.authorization = parts[0];
  r.query = parts[1];
  r.form_body = parts[2];
  absl::StatusOr<rwg::sync::Parameters> p = rwg::sync::CollectParameters(r);
  if (!p.ok()) {
    RWG_FUZZ_CHECK("oauth_request", !rwg::sync::ProblemOf(p.status()).empty());
  } else {
    for (const auto& [name, value] : p->oauth) {
      bool found = false;
      for (const auto& [n, v] : p->all) found = found || (n == name && v == value);
      RWG_FUZZ_CHECK("oauth_request", found);
    }
    absl::Status s = rwg::sync::VerifySignature(r, *p, "secret", "token-secret");
    RWG_FUZZ_CHECK("oauth_request", !s.ok() || p->oauth.count("oauth_signature") == 1);
  }
  absl::StatusOr<std::string> back = rwg::sync::PercentDecode(rwg::sync::PercentEncode(in), false);
  RWG_FUZZ_CHECK("oauth_request", back.ok() && *back == in);
  return 0;
}
