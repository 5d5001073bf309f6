#include "services/sip_edge/digest.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "services/core/crypto.h"

namespace rwg::sip_edge {
namespace {

// Parses one name=value item into `out`.
bool ParseItem(absl::string_view item, DigestParams& out) {
  item = absl::StripAsciiWhitespace(item);
  if (item.empty()) return true;
  size_t eq = item.find('=');
  if (eq == absl::string_view::npos || eq == 0) return false;
  std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(item.substr(0, eq)));
  absl::string_view value = absl::StripAsciiWhitespace(item.substr(eq + 1));
  std::string v;
  if (!value.empty() && value.front() == '"') {
    if (value.size() < 2 || value.back() != '"') return false;
    value = value.substr(1, value.size() - 2);
    for (size_t i = 0; i < value.size(); ++i) {
      if (value[i] == '\\' && i + 1 < value.size()) ++i;
      v.push_back(value[i]);
    }
  } else {
    v = std::string(value);
  }
  out.values[name] = v;
  return true;
}

// `v` as the inside of a quoted-string (RFC 3261 §25.1): '"' and '\\' escaped, so that a
// value taken from a challenge cannot end its parameter early.
std::string Quoted(absl::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

const char* AlgorithmName(DigestAlgorithm a) {
  return a == DigestAlgorithm::kSha256 ? "SHA-256" : "MD5";
}

std::optional<DigestAlgorithm> ParseAlgorithm(absl::string_view name) {
  if (name.empty() || absl::EqualsIgnoreCase(name, "MD5")) return DigestAlgorithm::kMd5;
  if (absl::EqualsIgnoreCase(name, "SHA-256")) return DigestAlgorithm::kSha256;
  return std::nullopt;
}

absl::StatusOr<DigestParams> ParseDigest(absl::string_view header) {
  header = absl::StripAsciiWhitespace(header);
  if (header.size() >= 6 && absl::EqualsIgnoreCase(header.substr(0, 6), "Digest")) {
    header.remove_prefix(6);
  }
  DigestParams out;
  // Split on commas outside quotes.
  std::string cur;
  bool quoted = false;
  bool escaped = false;  // the previous character was a quoted-pair's backslash
  for (size_t i = 0; i < header.size(); ++i) {
    char c = header[i];
    if (escaped) {
      escaped = false;
    } else if (quoted && c == '\\') {
      escaped = true;
    } else if (c == '"') {
      quoted = !quoted;
    }
    if (c == ',' && !quoted) {
      if (!ParseItem(cur, out)) return absl::InvalidArgumentError("malformed digest parameter");
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (quoted || !ParseItem(cur, out)) {
    return absl::InvalidArgumentError("malformed digest parameter");
  }
  return out;
}

absl::StatusOr<DigestParams> ParseDigestParams(const std::vector<std::string>& params) {
  DigestParams out;
  for (const std::string& p : params) {
    if (!ParseItem(p, out)) return absl::InvalidArgumentError("malformed digest parameter");
  }
  return out;
}

std::string DigestHash(DigestAlgorithm a, absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len,
             a == DigestAlgorithm::kSha256 ? EVP_sha256() : EVP_md5(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), len));
}

std::string DigestResponse(DigestAlgorithm a, absl::string_view user, absl::string_view realm,
                           absl::string_view password, absl::string_view method,
                           absl::string_view uri, absl::string_view nonce, absl::string_view nc,
                           absl::string_view cnonce, absl::string_view qop) {
  std::string ha1 = DigestHash(a, absl::StrCat(user, ":", realm, ":", password));
  std::string ha2 = DigestHash(a, absl::StrCat(method, ":", uri));
  if (qop.empty()) return DigestHash(a, absl::StrCat(ha1, ":", nonce, ":", ha2));
  return DigestHash(a, absl::StrCat(ha1, ":", nonce, ":", nc, ":", cnonce, ":", qop, ":", ha2));
}

NonceKeeper::NonceKeeper(std::string secret, core::Clock& clock, core::Random& rng,
                         absl::Duration lifetime, size_t max_tracked)
    : secret_(std::move(secret)),
      clock_(clock),
      rng_(rng),
      lifetime_(lifetime),
      max_tracked_(std::max<size_t>(max_tracked, 1)) {}

namespace {

// When a nonce of ours was issued (its first 16 hex digits: Unix milliseconds).
absl::Time IssuedAt(absl::string_view nonce) {
  uint64_t ms = 0;
  if (nonce.size() < 16 || !absl::SimpleHexAtoi(nonce.substr(0, 16), &ms)) {
    return absl::InfinitePast();
  }
  return absl::FromUnixMillis(static_cast<int64_t>(ms));
}

}  // namespace

std::string NonceKeeper::Mac(absl::string_view data) const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), 16));
}

std::string NonceKeeper::Issue() {
  std::string body = absl::StrCat(absl::Hex(absl::ToUnixMillis(clock_.Now()), absl::kZeroPad16),
                                  core::RandomHex(rng_, 8));
  return absl::StrCat(body, Mac(body));
}

NonceKeeper::Verdict NonceKeeper::Check(absl::string_view nonce) const {
  if (nonce.size() != 64) return Verdict::kForged;
  absl::string_view body = nonce.substr(0, 32);
  if (!core::ConstantTimeEquals(Mac(body), nonce.substr(32))) return Verdict::kForged;
  uint64_t ms = 0;
  if (!absl::SimpleHexAtoi(body.substr(0, 16), &ms)) return Verdict::kForged;
  absl::Time issued = absl::FromUnixMillis(static_cast<int64_t>(ms));
  absl::Time now = clock_.Now();
  if (issued > now + absl::Seconds(5) || now - issued > lifetime_) return Verdict::kStale;
  return Verdict::kValid;
}

bool NonceKeeper::AcceptCount(absl::string_view nonce, absl::string_view nc) {
  uint64_t count = 0;
  if (nc.empty()) {
    count = 1;  // RFC 2069 clients: each nonce once
  } else if (nc.size() != 8 || !absl::SimpleHexAtoi(nc, &count) || count == 0) {
    return false;
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  // A count first used more than a lifetime ago belongs to a nonce that Check() now calls
  // stale: forget it. Over the limit, forget the oldest and refuse what was issued before.
  while (!order_.empty() &&
         (order_.front().first + lifetime_ < now || counts_.size() >= max_tracked_)) {
    if (counts_.size() >= max_tracked_) {
      horizon_ = std::max(horizon_, IssuedAt(order_.front().second));
    }
    counts_.erase(order_.front().second);
    order_.pop_front();
  }
  auto it = counts_.find(std::string(nonce));
  if (it == counts_.end()) {
    if (IssuedAt(nonce) <= horizon_) return false;
    counts_.emplace(std::string(nonce), count);
    order_.emplace_back(now, std::string(nonce));
    return true;
  }
  if (count <= it->second) return false;
  it->second = count;
  return true;
}

size_t NonceKeeper::tracked() {
  absl::MutexLock lock(&mu_);
  return counts_.size();
}

absl::StatusOr<std::string> AnswerChallenge(absl::string_view challenge, absl::string_view user,
                                            absl::string_view password, absl::string_view method,
                                            absl::string_view uri, uint32_t nc, core::Random& rng) {
  absl::StatusOr<DigestParams> p = ParseDigest(challenge);
  if (!p.ok()) return p.status();
  std::optional<DigestAlgorithm> alg = ParseAlgorithm(p->Get("algorithm"));
  if (!alg) {
    return absl::UnimplementedError(
        absl::StrCat("digest algorithm ", p->Get("algorithm"), " is not supported"));
  }
  const std::string realm = p->Get("realm");
  const std::string nonce = p->Get("nonce");
  if (nonce.empty()) return absl::InvalidArgumentError("challenge without nonce");
  std::string qop;
  for (absl::string_view q : absl::StrSplit(p->Get("qop"), ',', absl::SkipWhitespace())) {
    if (absl::StripAsciiWhitespace(q) == "auth") qop = "auth";
  }
  if (qop.empty() && p->Has("qop")) {
    return absl::UnimplementedError("the challenge offers no qop=auth");
  }
  const std::string cnonce = core::RandomHex(rng, 8);
  const std::string ncs = absl::StrCat(absl::Hex(nc, absl::kZeroPad8));
  std::string out =
      absl::StrCat("Digest username=\"", Quoted(user), "\", realm=\"", Quoted(realm),
                   "\", nonce=\"", Quoted(nonce), "\", uri=\"", Quoted(uri), "\", response=\"",
                   DigestResponse(*alg, user, realm, password, method, uri, nonce,
                                  qop.empty() ? "" : ncs, cnonce, qop),
                   "\", algorithm=", AlgorithmName(*alg));
  if (!qop.empty()) absl::StrAppend(&out, ", qop=auth, nc=", ncs, ", cnonce=\"", cnonce, "\"");
  if (p->Has("opaque")) absl::StrAppend(&out, ", opaque=\"", Quoted(p->Get("opaque")), "\"");
  return out;
}

}  // namespace rwg::sip_edge
