// The sync API's records in Redis (see sync_store.h): consumers, their callback status, and the
// OAuth 1.0a tokens through their life (temporary, approved, exchanged, renewed, revoked).
// Why it is about 900 lines: each change is a Lua script run as one step in Redis (a consumer
// and its id index, a token and its consumer's count), written here next to the C++ that
// calls it and decodes its answer, so that a script and its caller are read together; the
// codecs of the two records come first.

#include "services/core/sync_store.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "services/core/cidr.h"
#include "services/core/json.h"
#include "services/core/keys.h"

namespace rwg::core {
namespace {

// A lost compare-and-set is retried this many times before the call answers ABORTED.
constexpr int kAttempts = 5;

// KEYS: consumers, by id. ARGV: name, id, json, most consumers.
constexpr char kAddConsumer[] = R"lua(
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'name' end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 'id' end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 'ok'
)lua";

// KEYS: consumers, by id. ARGV: id.
constexpr char kConsumerById[] = R"lua(
local name = redis.call('HGET', KEYS[2], ARGV[1])
if not name then return false end
return redis.call('HGET', KEYS[1], name)
)lua";

// A consumer and its tokens changed together, if nothing changed since they were read.
// KEYS: consumers, by id, tokens zset, then the key of every member of the zset as read.
// ARGV: name, the consumer's record as read, its new record ('' deletes it and its id), its id,
// then per token key: member, record as read ('' none), action ('=' keep, '-' delete (and drop
// from the zset), else the new record, expiry kept).
// Returns 1, or 0 when anything changed since it was read (the caller reads again).
constexpr char kConsumerAndTokens[] = R"lua(
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
local n = #KEYS - 3
if redis.call('ZCARD', KEYS[3]) ~= n then return 0 end
for i = 1, n do
  local base = 4 + (i - 1) * 3
  if not redis.call('ZSCORE', KEYS[3], ARGV[base + 1]) then return 0 end
  if (redis.call('GET', KEYS[3 + i]) or '') ~= ARGV[base + 2] then return 0 end
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[4]) end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
for i = 1, n do
  local base = 4 + (i - 1) * 3
  local action = ARGV[base + 3]
  if action == '-' then
    redis.call('DEL', KEYS[3 + i])
    redis.call('ZREM', KEYS[3], ARGV[base + 1])
  elseif action ~= '=' then
    redis.call('SET', KEYS[3 + i], action, 'KEEPTTL')
  end
end
return 1
)lua";

// A consumer's callback delivery status written, only while the consumer still has that URL
// set at that revision (deleted or set again meanwhile: nothing is written).
// KEYS: consumers, status. ARGV: name, url, from, delivered, failures, error, attempt_ms,
// next_ms. Returns 1, or 0 when nothing was written.
constexpr char kPutCallbackStatus[] = R"lua(
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local c = cjson.decode(raw)
if c.callback_url ~= ARGV[2] or string.format('%d', c.callback_from or 0) ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[2], 'url', ARGV[2], 'from', ARGV[3], 'delivered', ARGV[4],
           'failures', ARGV[5], 'error', ARGV[6], 'attempt_ms', ARGV[7], 'next_ms', ARGV[8])
return 1
)lua";

// Drops the tokens whose expiry has passed (by Redis' clock) from the zset.
constexpr char kPruneLua[] = R"lua(
local function prune(zset)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('ZREMRANGEBYSCORE', zset, '-inf', tostring(now))
end
)lua";

// KEYS: tokens zset. Returns the members left.
constexpr char kListTokens[] = R"lua(
prune(KEYS[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
)lua";

// A new token. KEYS: token key, tokens zset, consumers. ARGV: record, token, expiry (unix ms),
// expiry (unix s, the zset score), consumer name.
// Returns 'ok', 'exists' or 'consumer' (no such consumer).
constexpr char kPutToken[] = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
if redis.call('HEXISTS', KEYS[3], ARGV[5]) == 0 then return 'consumer' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
prune(KEYS[2])
return 'ok'
)lua";

// A token's record replaced if it is still what was read. KEYS: token key, tokens zset.
// ARGV: record as read, new record, then for a new expiry: token, expiry (unix ms), expiry
// (unix s). Returns 1, or 0 when the record changed (or expired) since it was read.
constexpr char kReplaceToken[] = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
)lua";

// The exchange. KEYS: temporary token key, access token key, tokens zset, consumers.
// ARGV: temporary record as read, its new record, access record, access token, its expiry
// (unix ms), its expiry (unix s), consumer name.
// Returns 'ok', 'changed' (the temporary token), 'exists' (the access token) or 'consumer'.
constexpr char kExchange[] = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'changed' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end
if redis.call('HEXISTS', KEYS[4], ARGV[7]) == 0 then return 'consumer' end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
redis.call('SET', KEYS[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[4])
prune(KEYS[3])
return 'ok'
)lua";

const std::string& WithPrune(const char* body) {
  // One string per script, made once (Eval names scripts by their text).
  static const auto* scripts = new std::map<const char*, std::string>{
      {kListTokens, absl::StrCat(kPruneLua, kListTokens)},
      {kPutToken, absl::StrCat(kPruneLua, kPutToken)},
      {kExchange, absl::StrCat(kPruneLua, kExchange)},
  };
  return scripts->at(body);
}

std::string ConsumerContext(absl::string_view name) {
  return absl::StrCat("sync-consumer:", name, ":secret");
}
std::string TokenContext(absl::string_view token, absl::string_view field) {
  return absl::StrCat("sync-token:", token, ":", field);
}

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }
std::string Score(absl::Time t) {
  const int64_t ms = absl::ToUnixMillis(t);
  return absl::StrCat(ms / 1000, ".", absl::StrFormat("%03d", std::abs(ms % 1000)));
}

bool IsPrintableAscii(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

std::optional<SyncTokenKind> KindFromName(absl::string_view s) {
  for (SyncTokenKind k : {SyncTokenKind::kTemporary, SyncTokenKind::kAccess}) {
    if (SyncTokenKindName(k) == s) return k;
  }
  return std::nullopt;
}

std::optional<SyncTokenState> StateFromName(absl::string_view s) {
  for (SyncTokenState st :
       {SyncTokenState::kPending, SyncTokenState::kApproved, SyncTokenState::kRejected,
        SyncTokenState::kUsed, SyncTokenState::kActive, SyncTokenState::kRevoked}) {
    if (SyncTokenStateName(st) == s) return st;
  }
  return std::nullopt;
}

absl::StatusOr<std::string> Open(const SecretBox& box, const std::string& sealed,
                                 const std::string& context, absl::string_view record,
                                 const char* field) {
  if (sealed.empty()) return std::string();
  absl::StatusOr<std::string> plain = box.Open(sealed, context);
  if (!plain.ok()) {
    return absl::DataLossError(absl::StrCat(record, ": ", field, ": ", plain.status().message()));
  }
  return plain;
}

// ---------------------------------------------------------------------------------------------
// Records

std::string EncodeConsumer(const SyncConsumer& c, const SecretBox& box) {
  nlohmann::json j = {{"name", c.name},
                      {"id", c.id},
                      {"secret", box.Seal(c.secret, ConsumerContext(c.name))},
                      {"enabled", c.enabled},
                      {"sources", c.sources},
                      {"created_ms", UnixMillis(c.created)}};
  if (!c.callback_url.empty()) {
    j["callback_url"] = c.callback_url;
    j["callback_from"] = c.callback_from;
  }
  return JsonDump(j);
}

absl::StatusOr<SyncConsumer> DecodeConsumer(const std::string& text, const std::string& key,
                                            const SecretBox& box) {
  const std::string record = absl::StrCat("sync consumer ", key);
  std::optional<nlohmann::json> j = JsonObject(text);
  if (!j) return absl::DataLossError(absl::StrCat(record, ": not a JSON object"));
  SyncConsumer c;
  std::string sealed;
  int64_t created_ms = 0;
  JsonFields f(*j, record);
  f.Get("name", &c.name);
  f.Get("id", &c.id);
  f.Get("secret", &sealed);
  f.Get("enabled", &c.enabled);
  f.Get("sources", &c.sources);
  f.Get("created_ms", &created_ms);
  f.Get("callback_url", &c.callback_url);
  f.Get("callback_from", &c.callback_from);
  if (!f.status().ok()) return f.status();
  if (c.name != key) return absl::DataLossError(absl::StrCat(record, ": name: not its key"));
  c.created = absl::FromUnixMillis(created_ms);
  absl::StatusOr<std::string> secret = Open(box, sealed, ConsumerContext(c.name), record, "secret");
  if (!secret.ok()) return secret.status();
  c.secret = *std::move(secret);
  return c;
}

std::string EncodeToken(const SyncToken& t, const SecretBox& box) {
  nlohmann::json j = {{"token", t.token},
                      {"secret", box.Seal(t.secret, TokenContext(t.token, "secret"))},
                      {"kind", std::string(SyncTokenKindName(t.kind))},
                      {"state", std::string(SyncTokenStateName(t.state))},
                      {"consumer", t.consumer},
                      {"source", t.source},
                      {"created_ms", UnixMillis(t.created)},
                      {"expires_ms", UnixMillis(t.expires)},
                      {"verifier_failures", t.verifier_failures}};
  if (!t.verifier.empty()) j["verifier"] = box.Seal(t.verifier, TokenContext(t.token, "verifier"));
  if (!t.access_token.empty()) j["access_token"] = t.access_token;
  return JsonDump(j);
}

// The record without opening its secrets (`secret` and `verifier` stay sealed).
absl::StatusOr<SyncToken> DecodeTokenSealed(const std::string& text, const std::string& key) {
  const std::string record = absl::StrCat("sync token ", key);
  std::optional<nlohmann::json> j = JsonObject(text);
  if (!j) return absl::DataLossError(absl::StrCat(record, ": not a JSON object"));
  SyncToken t;
  std::string kind, state;
  int64_t created_ms = 0, expires_ms = 0;
  JsonFields f(*j, record);
  f.Get("token", &t.token);
  f.Get("secret", &t.secret);
  f.Get("kind", &kind);
  f.Get("state", &state);
  f.Get("consumer", &t.consumer);
  f.Get("source", &t.source);
  f.Get("created_ms", &created_ms);
  f.Get("expires_ms", &expires_ms);
  f.Get("verifier", &t.verifier);
  f.Get("verifier_failures", &t.verifier_failures);
  f.Get("access_token", &t.access_token);
  if (!f.status().ok()) return f.status();
  if (t.token != key) return absl::DataLossError(absl::StrCat(record, ": token: not its key"));
  std::optional<SyncTokenKind> k = KindFromName(kind);
  if (!k) return absl::DataLossError(absl::StrCat(record, ": kind: unknown '", kind, "'"));
  std::optional<SyncTokenState> s = StateFromName(state);
  if (!s) return absl::DataLossError(absl::StrCat(record, ": state: unknown '", state, "'"));
  t.kind = *k;
  t.state = *s;
  t.created = absl::FromUnixMillis(created_ms);
  t.expires = absl::FromUnixMillis(expires_ms);
  return t;
}

absl::StatusOr<SyncToken> OpenToken(SyncToken t, const SecretBox& box) {
  const std::string record = absl::StrCat("sync token ", t.token);
  absl::StatusOr<std::string> secret =
      Open(box, t.secret, TokenContext(t.token, "secret"), record, "secret");
  if (!secret.ok()) return secret.status();
  absl::StatusOr<std::string> verifier =
      Open(box, t.verifier, TokenContext(t.token, "verifier"), record, "verifier");
  if (!verifier.ok()) return verifier.status();
  t.secret = *std::move(secret);
  t.verifier = *std::move(verifier);
  return t;
}

absl::Status NoToken(const std::string& token) {
  return absl::NotFoundError(absl::StrCat("token: no token '", token, "' (or it expired)"));
}

absl::Status WrongState(const SyncToken& t, absl::string_view wanted) {
  return absl::FailedPreconditionError(absl::StrCat("state: token '", t.token, "' is ",
                                                    SyncTokenKindName(t.kind), " and ",
                                                    SyncTokenStateName(t.state), ", not ", wanted));
}

absl::Status Lost(absl::string_view what) {
  return absl::AbortedError(
      absl::StrCat(what, ": changed concurrently ", kAttempts, " times; try again"));
}

}  // namespace

absl::string_view SyncTokenKindName(SyncTokenKind kind) {
  switch (kind) {
    case SyncTokenKind::kTemporary:
      return "temporary";
    case SyncTokenKind::kAccess:
      return "access";
  }
  return "unknown";
}

absl::string_view SyncTokenStateName(SyncTokenState state) {
  switch (state) {
    case SyncTokenState::kPending:
      return "pending";
    case SyncTokenState::kApproved:
      return "approved";
    case SyncTokenState::kRejected:
      return "rejected";
    case SyncTokenState::kUsed:
      return "used";
    case SyncTokenState::kActive:
      return "active";
    case SyncTokenState::kRevoked:
      return "revoked";
  }
  return "unknown";
}

absl::StatusOr<HttpsUrl> ParseSyncCallbackUrl(absl::string_view url) {
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("callback_url: ", why));
  };
  if (url.size() > kSyncCallbackUrlMax) {
    return bad(absl::StrCat(url.size(), " characters, at most ", kSyncCallbackUrlMax));
  }
  if (!IsPrintableAscii(url)) return bad("printable ASCII only (no spaces; percent-encode)");
  constexpr absl::string_view kScheme = "https://";
  if (url.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(url.substr(0, kScheme.size()), kScheme)) {
    return bad("must start with https:// (notices are sent over TLS only)");
  }
  if (url.find('#') != absl::string_view::npos) return bad("no fragment (#...)");
  absl::string_view rest = url.substr(kScheme.size());
  const size_t end = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, end);
  absl::string_view target = end == absl::string_view::npos ? "" : rest.substr(end);
  if (authority.find('@') != absl::string_view::npos) return bad("no user name or password");
  HttpsUrl out;
  absl::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("unclosed '[' in the host");
    out.host = std::string(authority.substr(1, close - 1));
    unsigned char buf[16];
    if (inet_pton(AF_INET6, out.host.c_str(), buf) != 1) return bad("not an IPv6 address in []");
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("junk after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return bad("empty port");
    }
    if (out.host.empty() || out.host.size() > 253 ||
        !std::all_of(out.host.begin(), out.host.end(), [](char ch) {
          return absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-';
        })) {
      return bad("the host must be a DNS name or an address");
    }
  }
  if (!port.empty()) {
    int p = 0;
    if (port.size() > 5 ||
        !std::all_of(port.begin(), port.end(),
                     [](char ch) { return absl::ascii_isdigit(static_cast<unsigned char>(ch)); }) ||
        !absl::SimpleAtoi(port, &p) || p < 1 || p > 65535) {
      return bad(absl::StrCat("port '", port, "': 1 to 65535"));
    }
    out.port = p;
  }
  out.target = target.empty() || target[0] == '?' ? absl::StrCat("/", target) : std::string(target);
  out.host_header = std::string(authority);
  return out;
}

absl::Status ValidateSyncConsumer(const SyncConsumer& c) {
  if (c.name.empty() || c.name.size() > 64 ||
      !std::all_of(c.name.begin(), c.name.end(), [](char ch) {
        return absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' ||
               ch == '-';
      })) {
    return absl::InvalidArgumentError(
        "name: 1 to 64 characters of letters, digits, '.', '_' and '-'");
  }
  if (c.id.empty()) return absl::InvalidArgumentError("id: must not be empty");
  if (c.id.size() > kSyncConsumerIdMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: ", c.id.size(), " characters, at most ", kSyncConsumerIdMax));
  }
  if (!IsPrintableAscii(c.id)) {
    return absl::InvalidArgumentError(
        "id: printable ASCII only (no spaces, control characters or non-ASCII)");
  }
  if (c.secret.empty() || c.secret.size() > kSyncConsumerSecretLength ||
      !IsPrintableAscii(c.secret)) {
    return absl::InvalidArgumentError(
        absl::StrCat("secret: 1 to ", kSyncConsumerSecretLength, " printable ASCII characters"));
  }
  // The same parser the sync service matches callers with: a source stored is one it can use.
  for (const std::string& s : c.sources) {
    if (absl::StatusOr<Cidr> range = ParseCidr(s); !range.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sources: ", range.status().message(), " (e.g. 192.0.2.0/24)"));
    }
  }
  if (!c.callback_url.empty()) {
    absl::StatusOr<HttpsUrl> u = ParseSyncCallbackUrl(c.callback_url);
    if (!u.ok()) return u.status();
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Consumers

absl::Status SyncStore::AddConsumer(const SyncConsumer& c) {
  absl::Status valid = ValidateSyncConsumer(c);
  if (!valid.ok()) return valid;
  absl::StatusOr<RedisReply> r =
      redis_.Eval(kAddConsumer, {kSyncConsumersKey, kSyncConsumersByIdKey},
                  {c.name, c.id, EncodeConsumer(c, box_), std::to_string(kSyncConsumersMax)});
  if (!r.ok()) return r.status();
  if (r->str == "name") {
    return absl::AlreadyExistsError(absl::StrCat("name: consumer '", c.name, "' exists"));
  }
  if (r->str == "id") {
    return absl::AlreadyExistsError(
        absl::StrCat("id: consumer id '", c.id, "' belongs to another consumer"));
  }
  if (r->str == "full") {
    return absl::ResourceExhaustedError(
        absl::StrCat("name: at most ", kSyncConsumersMax, " consumers; delete one first"));
  }
  if (r->str != "ok") return absl::InternalError("unexpected reply from the consumer script");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SyncConsumer>> SyncStore::ConsumerByName(const std::string& name) {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGET", kSyncConsumersKey, name});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  absl::StatusOr<SyncConsumer> c = DecodeConsumer(r->str, name, box_);
  if (!c.ok()) return c.status();
  return *std::move(c);
}

absl::StatusOr<std::optional<SyncConsumer>> SyncStore::ConsumerById(const std::string& id) {
  absl::StatusOr<RedisReply> r =
      redis_.Eval(kConsumerById, {kSyncConsumersKey, kSyncConsumersByIdKey}, {id});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  std::optional<nlohmann::json> j = JsonObject(r->str);
  std::string name;
  if (j) JsonFields(*j, "").Get("name", &name);
  absl::StatusOr<SyncConsumer> c = DecodeConsumer(r->str, name, box_);
  if (!c.ok()) return c.status();
  if (c->id != id) {
    return absl::DataLossError(absl::StrCat("sync consumer ", name, ": id: not its index's"));
  }
  return *std::move(c);
}

absl::StatusOr<std::vector<SyncConsumer>> SyncStore::ListConsumers() {
  absl::StatusOr<RedisReply> r = redis_.Command({"HGETALL", kSyncConsumersKey});
  if (!r.ok()) return r.status();
  std::vector<SyncConsumer> out;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    absl::StatusOr<SyncConsumer> c =
        DecodeConsumer(r->elements[i + 1].str, r->elements[i].str, box_);
    if (!c.ok()) return c.status();
    out.push_back(*std::move(c));
  }
  std::sort(out.begin(), out.end(),
            [](const SyncConsumer& a, const SyncConsumer& b) { return a.name < b.name; });
  return out;
}

absl::Status SyncStore::SetConsumerEnabled(const std::string& name, bool enabled) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<int> n = ChangeConsumer(name, [&](SyncConsumer& c, std::vector<SyncToken>&) {
      c.enabled = enabled;
      return true;
    });
    if (!n.ok()) return n.status();
    if (*n >= 0) return absl::OkStatus();
  }
  return Lost(absl::StrCat("consumer ", name));
}

absl::StatusOr<int> SyncStore::ResetConsumer(const std::string& name,
                                             const std::string& new_secret) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::Status valid;
    absl::StatusOr<int> n =
        ChangeConsumer(name, [&](SyncConsumer& c, std::vector<SyncToken>& tokens) {
          c.secret = new_secret;
          valid = ValidateSyncConsumer(c);
          if (!valid.ok()) return false;
          for (SyncToken& t : tokens) {
            if (t.state == SyncTokenState::kPending || t.state == SyncTokenState::kApproved ||
                t.state == SyncTokenState::kActive) {
              t.state = SyncTokenState::kRevoked;
            }
          }
          return true;
        });
    if (!valid.ok()) return valid;
    if (!n.ok()) return n.status();
    if (*n >= 0) return *n;
  }
  return Lost(absl::StrCat("consumer ", name));
}

absl::Status SyncStore::SetConsumerCallback(const std::string& name, const std::string& url) {
  if (!url.empty()) {
    absl::StatusOr<HttpsUrl> u = ParseSyncCallbackUrl(url);
    if (!u.ok()) return u.status();
  }
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<RedisReply> rev = redis_.Command({"GET", kDevicesRevisionKey});
    if (!rev.ok()) return rev.status();
    int64_t from = 0;
    if (!rev->is_nil() && !absl::SimpleAtoi(rev->str, &from)) {
      return absl::DataLossError(absl::StrCat(kDevicesRevisionKey, ": not a number"));
    }
    absl::StatusOr<int> n = ChangeConsumer(name, [&](SyncConsumer& c, std::vector<SyncToken>&) {
      c.callback_url = url;
      c.callback_from = url.empty() ? 0 : from;
      return true;
    });
    if (!n.ok()) return n.status();
    if (*n >= 0) return absl::OkStatus();
  }
  return Lost(absl::StrCat("consumer ", name));
}

absl::StatusOr<SyncCallbackStatus> SyncStore::CallbackStatus(const SyncConsumer& c) {
  SyncCallbackStatus out;
  out.delivered_revision = c.callback_from;
  if (c.callback_url.empty()) return out;
  absl::StatusOr<RedisReply> r = redis_.Command({"HGETALL", SyncCallbackKey(c.name)});
  if (!r.ok()) return r.status();
  std::map<std::string, std::string> f;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    f[r->elements[i].str] = r->elements[i + 1].str;
  }
  if (f["url"] != c.callback_url || f["from"] != std::to_string(c.callback_from)) return out;
  int64_t attempt_ms = 0, next_ms = 0;
  if (!absl::SimpleAtoi(f["delivered"], &out.delivered_revision) ||
      !absl::SimpleAtoi(f["failures"], &out.failures) ||
      !absl::SimpleAtoi(f["attempt_ms"], &attempt_ms) ||
      !absl::SimpleAtoi(f["next_ms"], &next_ms)) {
    return absl::DataLossError(
        absl::StrCat(SyncCallbackKey(c.name), ": a field is missing or not a number"));
  }
  out.last_error = f["error"];
  out.last_attempt = absl::FromUnixMillis(attempt_ms);
  out.next_attempt = absl::FromUnixMillis(next_ms);
  return out;
}

absl::Status SyncStore::PutCallbackStatus(const SyncConsumer& c, const SyncCallbackStatus& st) {
  absl::StatusOr<RedisReply> r = redis_.Eval(
      kPutCallbackStatus, {kSyncConsumersKey, SyncCallbackKey(c.name)},
      {c.name, c.callback_url, std::to_string(c.callback_from),
       std::to_string(st.delivered_revision), std::to_string(st.failures), st.last_error,
       std::to_string(UnixMillis(st.last_attempt)), std::to_string(UnixMillis(st.next_attempt))});
  return r.status();
}

absl::StatusOr<bool> SyncStore::DeleteConsumer(const std::string& name) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<int> n = ChangeConsumer(name, nullptr);
    if (absl::IsNotFound(n.status())) return false;
    if (!n.ok()) return n.status();
    if (*n >= 0) {
      // Its callback status goes too (sync writes one only for a consumer that exists). The
      // consumer is deleted already; a status Redis could not delete stays unread, since a
      // consumer added again under this name ignores it (CallbackStatus reads a status only for
      // the same URL and starting revision).
      (void)redis_.Command({"DEL", SyncCallbackKey(name)});
      return true;
    }
  }
  return Lost(absl::StrCat("consumer ", name));
}

absl::StatusOr<int> SyncStore::ChangeConsumer(
    const std::string& name,
    const std::function<bool(SyncConsumer&, std::vector<SyncToken>&)>& change) {
  absl::StatusOr<std::vector<RedisReply>> read =
      redis_.Pipeline({{"HGET", kSyncConsumersKey, name}, {"ZRANGE", kSyncTokensKey, "0", "-1"}});
  if (!read.ok()) return read.status();
  const RedisReply& raw = (*read)[0];
  if (raw.is_nil()) {
    return absl::NotFoundError(absl::StrCat("name: no consumer '", name, "'"));
  }
  absl::StatusOr<SyncConsumer> consumer = DecodeConsumer(raw.str, name, box_);
  if (!consumer.ok()) return consumer.status();
  const SyncConsumer before = *consumer;

  // Every token, as read: the script checks that none changed and none was added.
  std::vector<std::string> members;
  members.reserve((*read)[1].elements.size());
  for (const RedisReply& m : (*read)[1].elements) members.push_back(m.str);
  std::vector<std::vector<std::string>> gets;
  gets.reserve(members.size());
  for (const std::string& m : members) gets.push_back({"GET", SyncTokenKey(m)});
  std::vector<RedisReply> records;
  if (!gets.empty()) {
    absl::StatusOr<std::vector<RedisReply>> got = redis_.Pipeline(gets);
    if (!got.ok()) return got.status();
    records = *std::move(got);
  }
  // The consumer's tokens (their secrets left sealed: they are written back as they are).
  std::vector<SyncToken> mine;
  std::vector<size_t> mine_at;
  for (size_t i = 0; i < members.size(); ++i) {
    if (records[i].is_nil()) continue;
    absl::StatusOr<SyncToken> t = DecodeTokenSealed(records[i].str, members[i]);
    if (!t.ok() || t->consumer != name) continue;  // a damaged record is nobody's
    mine.push_back(*std::move(t));
    mine_at.push_back(i);
  }
  std::vector<std::string> actions(members.size(), "=");
  for (size_t i = 0; i < members.size(); ++i) {
    if (records[i].is_nil()) actions[i] = "-";  // expired: drop it from the zset
  }
  std::string new_record;
  int changed = 0;
  if (change) {
    std::vector<SyncToken> after = mine;
    if (!change(*consumer, after)) return absl::InvalidArgumentError("change refused");
    new_record = EncodeConsumer(*consumer, box_);
    for (size_t k = 0; k < mine.size(); ++k) {
      if (after[k].state == mine[k].state) continue;
      // The secrets are still sealed: rewrite the record around them.
      std::optional<nlohmann::json> j = JsonObject(records[mine_at[k]].str);
      if (!j) continue;
      (*j)["state"] = std::string(SyncTokenStateName(after[k].state));
      actions[mine_at[k]] = JsonDump(*j);
      ++changed;
    }
  } else {
    for (size_t k = 0; k < mine.size(); ++k) actions[mine_at[k]] = "-";
  }

  std::vector<std::string> keys = {kSyncConsumersKey, kSyncConsumersByIdKey, kSyncTokensKey};
  std::vector<std::string> args = {name, raw.str, new_record, before.id};
  for (size_t i = 0; i < members.size(); ++i) {
    keys.push_back(SyncTokenKey(members[i]));
    args.push_back(members[i]);
    args.push_back(records[i].is_nil() ? "" : records[i].str);
    args.push_back(actions[i]);
  }
  absl::StatusOr<RedisReply> r = redis_.Eval(kConsumerAndTokens, keys, args);
  if (!r.ok()) return r.status();
  return r->integer == 1 ? changed : -1;
}

// ---------------------------------------------------------------------------------------------
// Tokens

absl::Status SyncStore::PutToken(const SyncToken& t) {
  if (t.token.empty()) return absl::InvalidArgumentError("token: must not be empty");
  absl::StatusOr<RedisReply> r =
      redis_.Eval(WithPrune(kPutToken), {SyncTokenKey(t.token), kSyncTokensKey, kSyncConsumersKey},
                  {EncodeToken(t, box_), t.token, std::to_string(UnixMillis(t.expires)),
                   Score(t.expires), t.consumer});
  if (!r.ok()) return r.status();
  if (r->str == "exists") {
    return absl::AlreadyExistsError(absl::StrCat("token: '", t.token, "' exists"));
  }
  if (r->str == "consumer") {
    return absl::FailedPreconditionError(absl::StrCat("consumer: no consumer '", t.consumer, "'"));
  }
  if (r->str != "ok") return absl::InternalError("unexpected reply from the token script");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SyncToken>> SyncStore::GetToken(const std::string& token) {
  absl::StatusOr<RedisReply> r = redis_.Command({"GET", SyncTokenKey(token)});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  absl::StatusOr<SyncToken> t = DecodeTokenSealed(r->str, token);
  if (!t.ok()) return t.status();
  absl::StatusOr<SyncToken> open = OpenToken(*std::move(t), box_);
  if (!open.ok()) return open.status();
  return *std::move(open);
}

absl::StatusOr<std::vector<SyncToken>> SyncStore::ListTokens() {
  absl::StatusOr<RedisReply> members = redis_.Eval(WithPrune(kListTokens), {kSyncTokensKey}, {});
  if (!members.ok()) return members.status();
  std::vector<std::vector<std::string>> gets;
  gets.reserve(members->elements.size());
  for (const RedisReply& m : members->elements) gets.push_back({"GET", SyncTokenKey(m.str)});
  std::vector<SyncToken> out;
  if (gets.empty()) return out;
  absl::StatusOr<std::vector<RedisReply>> got = redis_.Pipeline(gets);
  if (!got.ok()) return got.status();
  for (size_t i = 0; i < got->size(); ++i) {
    if ((*got)[i].is_nil()) continue;  // expired or deleted since
    absl::StatusOr<SyncToken> t = DecodeTokenSealed((*got)[i].str, members->elements[i].str);
    if (!t.ok()) return t.status();
    absl::StatusOr<SyncToken> open = OpenToken(*std::move(t), box_);
    if (!open.ok()) return open.status();
    out.push_back(*std::move(open));
  }
  std::sort(out.begin(), out.end(), [](const SyncToken& a, const SyncToken& b) {
    return a.created != b.created ? a.created > b.created : a.token < b.token;
  });
  return out;
}

absl::StatusOr<int> SyncStore::ChangeToken(const std::string& token,
                                           const std::function<absl::Status(SyncToken&)>& change,
                                           std::optional<absl::Time> expires) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<RedisReply> r = redis_.Command({"GET", SyncTokenKey(token)});
    if (!r.ok()) return r.status();
    if (r->is_nil()) return NoToken(token);
    absl::StatusOr<SyncToken> sealed = DecodeTokenSealed(r->str, token);
    if (!sealed.ok()) return sealed.status();
    absl::StatusOr<SyncToken> t = OpenToken(*sealed, box_);
    if (!t.ok()) return t.status();
    absl::Status s = change(*t);
    if (!s.ok()) return s;
    std::vector<std::string> args = {r->str, EncodeToken(*t, box_)};
    if (expires) {
      args.insert(args.end(), {token, std::to_string(UnixMillis(*expires)), Score(*expires)});
    }
    absl::StatusOr<RedisReply> w =
        redis_.Eval(kReplaceToken, {SyncTokenKey(token), kSyncTokensKey}, args);
    if (!w.ok()) return w.status();
    if (w->integer == 1) return t->verifier_failures;
  }
  return Lost(absl::StrCat("token ", token));
}

absl::Status SyncStore::ApproveToken(const std::string& token, const std::string& verifier) {
  if (verifier.empty()) return absl::InvalidArgumentError("verifier: must not be empty");
  return ChangeToken(
             token,
             [&](SyncToken& t) {
               if (t.kind != SyncTokenKind::kTemporary || t.state != SyncTokenState::kPending) {
                 return WrongState(t, "temporary and pending");
               }
               t.state = SyncTokenState::kApproved;
               t.verifier = verifier;
               return absl::OkStatus();
             })
      .status();
}

absl::Status SyncStore::RejectToken(const std::string& token) {
  return ChangeToken(
             token,
             [&](SyncToken& t) {
               if (t.kind != SyncTokenKind::kTemporary ||
                   (t.state != SyncTokenState::kPending && t.state != SyncTokenState::kApproved)) {
                 return WrongState(t, "temporary and pending or approved");
               }
               t.state = SyncTokenState::kRejected;
               return absl::OkStatus();
             })
      .status();
}

absl::StatusOr<int> SyncStore::CountVerifierFailure(const std::string& token) {
  return ChangeToken(token, [&](SyncToken& t) {
    if (t.kind != SyncTokenKind::kTemporary || t.state != SyncTokenState::kApproved) {
      return WrongState(t, "temporary and approved");
    }
    ++t.verifier_failures;
    if (t.verifier_failures >= kSyncVerifierAttempts) t.state = SyncTokenState::kRejected;
    return absl::OkStatus();
  });
}

absl::Status SyncStore::ExchangeToken(const SyncToken& temporary, const SyncToken& access) {
  if (access.token.empty()) return absl::InvalidArgumentError("token: must not be empty");
  if (access.kind != SyncTokenKind::kAccess || access.state != SyncTokenState::kActive) {
    return absl::InvalidArgumentError("state: the new token must be an active access token");
  }
  if (access.consumer != temporary.consumer) {
    return absl::InvalidArgumentError("consumer: the access token's differs from the temporary's");
  }
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<RedisReply> r = redis_.Command({"GET", SyncTokenKey(temporary.token)});
    if (!r.ok()) return r.status();
    if (r->is_nil()) {
      return absl::FailedPreconditionError(
          absl::StrCat("token: temporary token '", temporary.token, "' is gone (expired)"));
    }
    absl::StatusOr<SyncToken> cur = DecodeTokenSealed(r->str, temporary.token);
    if (!cur.ok()) return cur.status();
    if (cur->kind != SyncTokenKind::kTemporary || cur->state != SyncTokenState::kApproved) {
      return WrongState(*cur, "temporary and approved");
    }
    if (cur->verifier_failures != temporary.verifier_failures ||
        cur->consumer != temporary.consumer) {
      return absl::FailedPreconditionError(
          absl::StrCat("token: temporary token '", temporary.token, "' changed meanwhile"));
    }
    std::optional<nlohmann::json> j = JsonObject(r->str);
    if (!j) return absl::DataLossError("sync token: not a JSON object");
    (*j)["state"] = std::string(SyncTokenStateName(SyncTokenState::kUsed));
    (*j)["access_token"] = access.token;
    absl::StatusOr<RedisReply> w = redis_.Eval(
        WithPrune(kExchange),
        {SyncTokenKey(temporary.token), SyncTokenKey(access.token), kSyncTokensKey,
         kSyncConsumersKey},
        {r->str, JsonDump(*j), EncodeToken(access, box_), access.token,
         std::to_string(UnixMillis(access.expires)), Score(access.expires), access.consumer});
    if (!w.ok()) return w.status();
    if (w->str == "ok") return absl::OkStatus();
    if (w->str == "exists") {
      return absl::AlreadyExistsError(absl::StrCat("token: '", access.token, "' exists"));
    }
    if (w->str == "consumer") {
      return absl::FailedPreconditionError(
          absl::StrCat("consumer: no consumer '", access.consumer, "'"));
    }
    // 'changed': read again; the checks above say why it cannot be exchanged now.
  }
  return Lost(absl::StrCat("token ", temporary.token));
}

absl::Status SyncStore::RenewToken(const std::string& token, absl::Time expires) {
  return ChangeToken(
             token,
             [&](SyncToken& t) {
               if (t.kind != SyncTokenKind::kAccess || t.state != SyncTokenState::kActive) {
                 return WrongState(t, "access and active");
               }
               t.expires = expires;
               return absl::OkStatus();
             },
             expires)
      .status();
}

absl::Status SyncStore::RevokeToken(const std::string& token) {
  return ChangeToken(token,
                     [&](SyncToken& t) {
                       t.state = SyncTokenState::kRevoked;
                       return absl::OkStatus();
                     })
      .status();
}

}  // namespace rwg::core
