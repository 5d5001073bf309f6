// The sync API's request handling end to end (SyncApi::Handle: routing, the OAuth checks, the
// token legs, device reads and writes, the change feed) over a real redis-server, with one
// consumer, an access token and an approved temporary token in place. The input is an HTTP
// request as text: "METHOD TARGET", header lines ("Host:", "Authorization:", "Content-Type:"),
// an empty line, the body. "Authorization: AUTO" (or "AUTO-TEMPORARY", "AUTO-NONE") is
// replaced with a correct signature of the request by the access token (the temporary token,
// no token), so that inputs get past the checks.
// Properties: every request is answered exactly once, at once (no long poll waits here), with
// a status of 200-599; a JSON answer parses; a refusal names an oauth_problem.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/sync_store.h"
#include "services/sync/api.h"
#include "services/sync/oauth1.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/testing/scratch_redis.h"

namespace {

using namespace rwg;

constexpr char kHarness[] = "sync_request";
constexpr char kConsumerSecret[] = "consumer-secret";
constexpr char kAccess[] = "AccessToken0123456789";
constexpr char kAccessSecret[] = "access-secret";
constexpr char kTemporary[] = "TemporaryToken0123456789";
constexpr char kTemporarySecret[] = "temporary-secret";

// Different bytes on every call (tokens requested must not collide), the same sequence in
// every run.
class CountingRandom final : public core::Random {
 public:
  std::string Bytes(size_t n) override {
    std::string out;
    while (out.size() < n) out += core::Sha256Hex(std::to_string(++counter_));
    out.resize(n);
    return out;
  }

 private:
  uint64_t counter_ = 0;
};

struct Fixture {
  std::unique_ptr<testing::ScratchRedis> redis;
  std::unique_ptr<core::SecretBox> box;
  core::ManualClock clock;
  CountingRandom rng;
  prometheus::Registry registry;
  std::unique_ptr<sync::SyncApi> api;
  uint64_t runs = 0;
  uint64_t nonce = 0;
};

void Populate(Fixture& f) {
  (void)f.redis->client().Command({"FLUSHALL"});
  core::SyncStore store(f.redis->client(), *f.box);
  core::SyncConsumer c;
  c.name = "ipbx";
  c.id = "MiVOAppSuite";
  c.secret = kConsumerSecret;
  c.sources = {"0.0.0.0/0", "::/0"};
  if (!store.AddConsumer(c).ok()) rwg::fuzz::Fail(kHarness, "consumer");
  core::SyncToken a;
  a.token = kAccess;
  a.secret = kAccessSecret;
  a.kind = core::SyncTokenKind::kAccess;
  a.state = core::SyncTokenState::kActive;
  a.consumer = "ipbx";
  a.created = f.clock.Now();
  a.expires = f.clock.Now() + core::kSyncAccessTokenLife;
  core::SyncToken t = a;
  t.token = kTemporary;
  t.secret = kTemporarySecret;
  t.kind = core::SyncTokenKind::kTemporary;
  t.state = core::SyncTokenState::kPending;
  t.expires = f.clock.Now() + core::kSyncTemporaryTokenLife;
  if (!store.PutToken(a).ok() || !store.PutToken(t).ok() ||
      !store.ApproveToken(kTemporary, "VERIFIER42").ok()) {
    rwg::fuzz::Fail(kHarness, "tokens");
  }
}

Fixture& Setup() {
  static Fixture* f = [] {
    auto* fx = new Fixture();
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    if (!r.ok()) rwg::fuzz::Fail(kHarness, "redis-server did not start");
    fx->redis = *std::move(r);
    absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
        core::SecretBox::Create(std::string(32, 'k'), fx->rng);
    if (!box.ok()) rwg::fuzz::Fail(kHarness, "secret box");
    fx->box = *std::move(box);
    sync::SyncApiOptions o;
    o.max_wait = absl::ZeroDuration();  // every changes request answers at once
    fx->api = std::make_unique<sync::SyncApi>(o, fx->redis->client(), *fx->box, fx->clock, fx->rng,
                                              fx->registry);
    Populate(*fx);
    // At exit the redis-server goes with its directory (the leak check runs after).
    std::atexit([] {
      Fixture& g = Setup();
      g.api.reset();
      g.redis.reset();
    });
    return fx;
  }();
  return *f;
}

// The Authorization header of `r` signed as `which` says (AUTO, AUTO-TEMPORARY, AUTO-NONE).
std::string Sign(Fixture& f, const sync::HttpRequest& r, absl::string_view which) {
  std::vector<std::pair<std::string, std::string>> oauth = {
      {"oauth_consumer_key", "MiVOAppSuite"},
      {"oauth_nonce", absl::StrCat("n", ++f.nonce)},
      {"oauth_signature_method", "HMAC-SHA1"},
      {"oauth_timestamp", std::to_string(absl::ToUnixSeconds(f.clock.Now()))},
      {"oauth_version", "1.0"}};
  std::string token_secret;
  if (which == "AUTO") {
    oauth.emplace_back("oauth_token", kAccess);
    token_secret = kAccessSecret;
  } else if (which == "AUTO-TEMPORARY") {
    oauth.emplace_back("oauth_token", kTemporary);
    oauth.emplace_back("oauth_verifier", "VERIFIER42");
    token_secret = kTemporarySecret;
  } else {
    oauth.emplace_back("oauth_callback", "oob");
  }
  std::vector<std::string> parts;
  parts.reserve(oauth.size());
  for (const auto& [k, v] : oauth) {
    parts.push_back(absl::StrCat(k, "=\"", sync::PercentEncode(v), "\""));
  }
  const size_t q = r.target.find('?');
  sync::SignedRequest sr;
  sr.method = r.method;
  sr.scheme = "https";
  sr.host = r.host;
  sr.path = r.target.substr(0, q);
  sr.query = q == std::string::npos ? "" : r.target.substr(q + 1);
  sr.authorization = "OAuth " + absl::StrJoin(parts, ", ");
  if (absl::StartsWithIgnoreCase(r.content_type, "application/x-www-form-urlencoded")) {
    sr.form_body = r.body;
  }
  absl::StatusOr<sync::Parameters> params = sync::CollectParameters(sr);
  if (!params.ok()) return sr.authorization;  // the input's own parameters are malformed
  const std::string sig =
      sync::Sign(sync::SignatureMethod::kHmacSha1, sync::SignatureBaseString(sr, *params),
                 kConsumerSecret, token_secret);
  return absl::StrCat(sr.authorization, ", oauth_signature=\"", sync::PercentEncode(sig), "\"");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = Setup();
  // The store grows with devices and tokens the inputs create: start again now and then.
  if (++f.runs % 2000 == 0) Populate(f);
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t blank = in.find("\n\n");
  const absl::string_view head = in.substr(0, blank);
  sync::HttpRequest r;
  r.source = "192.0.2.7";
  r.host = "rwg.example.net:8443";
  if (blank != absl::string_view::npos) r.body = std::string(in.substr(blank + 2));
  std::vector<absl::string_view> lines = absl::StrSplit(head, '\n');
  const std::vector<absl::string_view> first = absl::StrSplit(lines[0], absl::MaxSplits(' ', 1));
  r.method = std::string(first[0]);
  r.target = first.size() > 1 ? std::string(first[1]) : "/";
  std::string auth_mode;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view name = lines[i].substr(0, colon);
    const std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    if (absl::EqualsIgnoreCase(name, "host")) r.host = value;
    if (absl::EqualsIgnoreCase(name, "content-type")) r.content_type = value;
    if (absl::EqualsIgnoreCase(name, "authorization")) {
      r.authorization = value;
      if (absl::StartsWith(value, "AUTO")) auth_mode = value;
    }
  }
  if (!auth_mode.empty()) r.authorization = Sign(f, r, auth_mode);
  int answers = 0;
  sync::HttpResponse got;
  f.api->Handle(r, [&](sync::HttpResponse a) {
    ++answers;
    got = std::move(a);
  });
  RWG_FUZZ_CHECK(kHarness, answers == 1);
  RWG_FUZZ_CHECK(kHarness, got.status >= 200 && got.status <= 599);
  if (got.content_type == "application/json") {
    RWG_FUZZ_CHECK(kHarness, nlohmann::json::accept(got.body));
  }
  if (got.status == 401) {
    RWG_FUZZ_CHECK(kHarness, absl::StrContains(got.body, "oauth_problem="));
  }
  return 0;
}
