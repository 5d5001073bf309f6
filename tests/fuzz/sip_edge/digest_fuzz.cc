// Digest authentication as the network hands it to sip-edge: Authorization values from phones
// (ParseDigest, ParseDigestParams, the nonce checks of NonceKeeper) and WWW-Authenticate /
// Proxy-Authenticate challenges from the iPBX (AnswerChallenge). Properties: an answer to a
// challenge parses back with the challenge's realm, nonce and opaque, whatever they hold; a nonce
// we issued checks valid.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "services/core/clock.h"
#include "services/sip_edge/digest.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::sip_edge;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  rwg::fuzz::FixedRandom rng;

  // Authorization: the whole value, and sofia-sip's split of it (one entry per comma).
  absl::StatusOr<DigestParams> parsed = ParseDigest(text);
  std::vector<std::string> items = absl::StrSplit(text, ',');
  (void)ParseDigestParams(items);
  if (parsed.ok()) {
    (void)ParseAlgorithm(parsed->Get("algorithm"));
    rwg::core::ManualClock clock;
    NonceKeeper keeper("fuzz-secret", clock, rng, absl::Minutes(5), 4);
    (void)keeper.Check(parsed->Get("nonce"));
    (void)keeper.AcceptCount(parsed->Get("nonce"), parsed->Get("nc"));
    const std::string mine = keeper.Issue();
    RWG_FUZZ_CHECK("digest", keeper.Check(mine) == NonceKeeper::Verdict::kValid);
  }

  // A challenge from the iPBX.
  const char* method = (mode & 1) ? "REGISTER" : "INVITE";
  absl::StatusOr<std::string> answer =
      AnswerChallenge(text, "21001", "icp-secret", method, "sip:192.0.2.1:5060;transport=tcp",
                      (mode >> 1) + 1u, rng);
  if (answer.ok()) {
    RWG_FUZZ_CHECK("digest", parsed.ok());
    absl::StatusOr<DigestParams> back = ParseDigest(*answer);
    RWG_FUZZ_CHECK("digest", back.ok());
    RWG_FUZZ_CHECK("digest", back->Get("nonce") == parsed->Get("nonce"));
    RWG_FUZZ_CHECK("digest", back->Get("realm") == parsed->Get("realm"));
    RWG_FUZZ_CHECK("digest", back->Get("opaque") == parsed->Get("opaque"));
    RWG_FUZZ_CHECK("digest", back->Get("uri") == "sip:192.0.2.1:5060;transport=tcp");
  }
  return 0;
}
