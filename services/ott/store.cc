#include "services/ott/store.h"

#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/ott/paths.h"

namespace rwg::ott {

namespace {

absl::Status Field(absl::string_view field, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": '", absl::CHexEscape(value.substr(0, 80)), "' ", why));
}

bool IsHostName(absl::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(h, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
  }
  return true;
}

bool IsIpv6Literal(absl::string_view h) {
  if (h.size() < 2 || h.size() > 45 || h.find(':') == absl::string_view::npos) return false;
  for (char c : h) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
  }
  return true;
}

absl::Status ValidateList(const google::protobuf::RepeatedPtrField<std::string>& list,
                          absl::string_view field) {
  if (list.size() > 64) return absl::InvalidArgumentError(absl::StrCat(field, ": more than 64"));
  for (const std::string& e : list) {
    if (absl::Status s = ValidatePathEntry(e, field); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string SessionKey(const std::string& cookie) {
  return absl::StrCat("rwg:ott:session:", core::Sha256Hex(cookie));
}
std::string FailKey(const std::string& name) { return absl::StrCat("rwg:ott:fail:", name); }
std::string LockKey(const std::string& name) { return absl::StrCat("rwg:ott:lock:", name); }

// Stored when an account record is missing, so that an unknown name costs what a known one
// does.
const std::string& DummyHash() {
  static const std::string h = [] {
    absl::StatusOr<std::string> s =
        core::HashPassword("rwg-ott-no-such-account", core::Random::System());
    return s.ok() ? *s : std::string();
  }();
  return h;
}

// Sets the field if it exists (ARGV[1] field, ARGV[2] value); 1 when set. Increments the
// version.
constexpr char kPutIfExists[] = R"lua(
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
)lua";

// Adds the field unless it exists or the hash holds ARGV[3] fields already: 1 added, 0
// exists, -1 full.
constexpr char kAddBounded[] = R"lua(
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
)lua";

// A failed login: counts it (KEYS[1], expiring after ARGV[2] s) and locks the account
// (KEYS[2], ARGV[2] s) at ARGV[1] failures. 1 when this failure locked it.
constexpr char kFailure[] = R"lua(
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
)lua";

}  // namespace

absl::Status ValidateDomain(const pb::Domain& d) {
  if (!IsHostName(d.fqdn()) || d.fqdn().find('.') == std::string::npos) {
    return Field("fqdn", d.fqdn(), "is not a fully qualified domain name");
  }
  if (absl::AsciiStrToLower(d.fqdn()) != d.fqdn()) {
    return Field("fqdn", d.fqdn(), "must be lower case");
  }
  if (ServiceName(d.service()).empty()) {
    return absl::InvalidArgumentError(
        "service: required (user-portal, web-client, "
        "embedded-user-portal, web-admin)");
  }
  const pb::Backend& b = d.backend();
  if (!IsHostName(b.host()) && !IsIpv6Literal(b.host())) {
    return Field("backend.host", b.host(), "is not a host name or IP address");
  }
  if (b.port() > 65535) return Field("backend.port", absl::StrCat(b.port()), "is not a port");
  if (!b.server_name().empty() && !IsHostName(b.server_name())) {
    return Field("backend.server_name", b.server_name(), "is not a host name");
  }
  if (!b.ca_file().empty()) {
    if (!b.tls()) return absl::InvalidArgumentError("backend.ca_file: only with backend.tls");
    if (b.ca_file().size() > 4096 || ::access(b.ca_file().c_str(), R_OK) != 0) {
      return Field("backend.ca_file", b.ca_file(), "cannot be read on this ott host");
    }
  }
  if (absl::Status s = ValidateList(d.paths().user(), "paths.user"); !s.ok()) return s;
  if (absl::Status s = ValidateList(d.paths().admin(), "paths.admin"); !s.ok()) return s;
  if (absl::Status s = ValidateList(d.paths().common(), "paths.common"); !s.ok()) return s;
  return absl::OkStatus();
}

absl::Status ValidateAccountName(const std::string& name) {
  if (name.empty() || name.size() > 64) return Field("name", name, "must be 1 to 64 characters");
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '@' &&
        c != '-') {
      return Field("name", name, "may hold only letters, digits and . _ @ -");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePassword(const std::string& password) {
  if (password.size() < 12 || password.size() > 256) {
    return absl::InvalidArgumentError("password: must be 12 to 256 bytes");
  }
  return absl::OkStatus();
}

absl::Status OttStore::Bump() {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"INCR", kVersionKey});
  return r.status();
}

absl::StatusOr<pb::Domain> OttStore::AddDomain(pb::Domain d) {
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  d.set_create_time_unix(now);
  d.set_update_time_unix(now);
  d.clear_effective_paths();
  d.clear_has_certificate();
  absl::StatusOr<core::RedisReply> r =
      redis_.Eval(kAddBounded, {kDomainsKey, kVersionKey},
                  {d.fqdn(), d.SerializeAsString(), absl::StrCat(kMaxDomains)});
  if (!r.ok()) return r.status();
  if (r->integer == 0) {
    return absl::AlreadyExistsError(absl::StrCat("domain '", d.fqdn(), "' exists"));
  }
  if (r->integer < 0) {
    return absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxDomains, " domains"));
  }
  return d;
}

absl::StatusOr<pb::Domain> OttStore::PutDomain(const pb::Domain& given) {
  pb::Domain d = given;
  d.set_update_time_unix(absl::ToUnixSeconds(clock_.Now()));
  d.clear_effective_paths();
  d.clear_has_certificate();
  absl::StatusOr<core::RedisReply> r =
      redis_.Eval(kPutIfExists, {kDomainsKey, kVersionKey}, {d.fqdn(), d.SerializeAsString()});
  if (!r.ok()) return r.status();
  if (r->integer == 0) return absl::NotFoundError(absl::StrCat("no domain '", d.fqdn(), "'"));
  return d;
}

absl::StatusOr<std::optional<pb::Domain>> OttStore::GetDomain(const std::string& fqdn) {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"HGET", kDomainsKey, fqdn});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  pb::Domain d;
  if (!d.ParseFromString(r->str)) {
    return absl::DataLossError(absl::StrCat("the record of domain '", fqdn, "' is damaged"));
  }
  return d;
}

absl::StatusOr<bool> OttStore::DeleteDomain(const std::string& fqdn) {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"HDEL", kDomainsKey, fqdn});
  if (!r.ok()) return r.status();
  if (r->integer == 0) return false;
  if (absl::Status s = Bump(); !s.ok()) return s;
  return true;
}

absl::StatusOr<std::vector<pb::Domain>> OttStore::ListDomains() {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"HGETALL", kDomainsKey});
  if (!r.ok()) return r.status();
  std::vector<pb::Domain> out;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    pb::Domain d;
    if (!d.ParseFromString(r->elements[i + 1].str)) {
      return absl::DataLossError(
          absl::StrCat("the record of domain '", r->elements[i].str, "' is damaged"));
    }
    out.push_back(std::move(d));
  }
  std::sort(out.begin(), out.end(),
            [](const pb::Domain& a, const pb::Domain& b) { return a.fqdn() < b.fqdn(); });
  return out;
}

absl::StatusOr<pb::Account> OttStore::AddAccount(const std::string& name,
                                                 const std::string& password, bool enabled) {
  if (absl::Status s = ValidateAccountName(name); !s.ok()) return s;
  if (absl::Status s = ValidatePassword(password); !s.ok()) return s;
  absl::StatusOr<std::string> hash = core::HashPassword(password, rng_);
  if (!hash.ok()) return hash.status();
  pb::Account a;
  a.set_name(name);
  a.set_password(*hash);
  a.set_enabled(enabled);
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  a.set_create_time_unix(now);
  a.set_update_time_unix(now);
  absl::StatusOr<core::RedisReply> r =
      redis_.Eval(kAddBounded, {kAccountsKey, kVersionKey},
                  {name, a.SerializeAsString(), absl::StrCat(kMaxAccounts)});
  if (!r.ok()) return r.status();
  if (r->integer == 0) return absl::AlreadyExistsError(absl::StrCat("account '", name, "' exists"));
  if (r->integer < 0) {
    return absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxAccounts, " accounts"));
  }
  a.clear_password();
  return a;
}

absl::StatusOr<pb::Account> OttStore::UpdateAccount(const std::string& name,
                                                    const std::optional<std::string>& password,
                                                    std::optional<bool> enabled, bool unlock) {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"HGET", kAccountsKey, name});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return absl::NotFoundError(absl::StrCat("no account '", name, "'"));
  pb::Account a;
  if (!a.ParseFromString(r->str)) {
    return absl::DataLossError(absl::StrCat("the record of account '", name, "' is damaged"));
  }
  if (password.has_value()) {
    if (absl::Status s = ValidatePassword(*password); !s.ok()) return s;
    absl::StatusOr<std::string> hash = core::HashPassword(*password, rng_);
    if (!hash.ok()) return hash.status();
    a.set_password(*hash);
    unlock = true;
  }
  if (enabled.has_value()) a.set_enabled(*enabled);
  a.set_update_time_unix(absl::ToUnixSeconds(clock_.Now()));
  absl::StatusOr<core::RedisReply> put =
      redis_.Eval(kPutIfExists, {kAccountsKey, kVersionKey}, {name, a.SerializeAsString()});
  if (!put.ok()) return put.status();
  if (put->integer == 0) return absl::NotFoundError(absl::StrCat("no account '", name, "'"));
  if (unlock) {
    absl::StatusOr<core::RedisReply> d = redis_.Command({"DEL", LockKey(name), FailKey(name)});
    if (!d.ok()) return d.status();
  }
  a.clear_password();
  return a;
}

absl::StatusOr<bool> OttStore::DeleteAccount(const std::string& name) {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"HDEL", kAccountsKey, name});
  if (!r.ok()) return r.status();
  if (r->integer == 0) return false;
  absl::StatusOr<core::RedisReply> d = redis_.Command({"DEL", LockKey(name), FailKey(name)});
  if (!d.ok()) return d.status();
  if (absl::StatusOr<core::RedisReply> l = redis_.Command({"HDEL", kLastLoginKey, name}); !l.ok()) {
    // The account is gone already; only its last login's time stays, read by nobody until an
    // account of that name is made again.
    core::log::Warn("ott: a deleted account's last login stays",
                    {{"account", name}, {"error", std::string(l.status().message())}});
  }
  if (absl::Status s = Bump(); !s.ok()) return s;
  return true;
}

absl::StatusOr<std::vector<pb::Account>> OttStore::LoadAccounts() {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"HGETALL", kAccountsKey});
  if (!r.ok()) return r.status();
  std::vector<pb::Account> out;
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    pb::Account a;
    if (!a.ParseFromString(r->elements[i + 1].str)) {
      return absl::DataLossError(
          absl::StrCat("the record of account '", r->elements[i].str, "' is damaged"));
    }
    out.push_back(std::move(a));
  }
  std::sort(out.begin(), out.end(),
            [](const pb::Account& a, const pb::Account& b) { return a.name() < b.name(); });
  return out;
}

absl::StatusOr<std::vector<pb::Account>> OttStore::ListAccounts() {
  absl::StatusOr<std::vector<pb::Account>> accounts = LoadAccounts();
  if (!accounts.ok()) return accounts.status();
  std::vector<std::vector<std::string>> cmds;
  for (const pb::Account& a : *accounts) {
    cmds.push_back({"TTL", LockKey(a.name())});
    cmds.push_back({"HGET", kLastLoginKey, a.name()});
  }
  absl::StatusOr<std::vector<core::RedisReply>> replies = redis_.Pipeline(cmds);
  if (!replies.ok()) return replies.status();
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  for (size_t i = 0; i < accounts->size(); ++i) {
    pb::Account& a = (*accounts)[i];
    a.clear_password();
    const core::RedisReply& ttl = (*replies)[2 * i];
    if (ttl.integer > 0) a.set_locked_until_unix(now + ttl.integer);
    int64_t last = 0;
    if (absl::SimpleAtoi((*replies)[2 * i + 1].str, &last)) a.set_last_login_unix(last);
  }
  return accounts;
}

absl::StatusOr<LoginResult> OttStore::Login(const std::string& name, const std::string& password,
                                            const LoginPolicy& policy) {
  pb::Account a;
  bool known = false;
  if (ValidateAccountName(name).ok()) {
    absl::StatusOr<core::RedisReply> r = redis_.Command({"HGET", kAccountsKey, name});
    if (!r.ok()) return r.status();
    known = !r->is_nil() && a.ParseFromString(r->str);
  }
  if (!known) {
    // Only its time is wanted: an unknown name costs what a known one does.
    (void)core::VerifyPassword(password, DummyHash());
    return LoginResult::kBadCredentials;
  }
  absl::StatusOr<core::RedisReply> locked = redis_.Command({"EXISTS", LockKey(name)});
  if (!locked.ok()) return locked.status();
  if (locked->integer != 0) return LoginResult::kLocked;
  if (!core::VerifyPassword(password, a.password())) {
    const long long seconds = std::max<long long>(1, absl::ToInt64Seconds(policy.lockout));
    absl::StatusOr<core::RedisReply> f =
        redis_.Eval(kFailure, {FailKey(name), LockKey(name)},
                    {absl::StrCat(std::max(1, policy.failures)), absl::StrCat(seconds)});
    if (!f.ok()) return f.status();
    return f->integer == 1 ? LoginResult::kLocked : LoginResult::kBadCredentials;
  }
  if (!a.enabled()) return LoginResult::kDisabled;
  absl::StatusOr<std::vector<core::RedisReply>> ok = redis_.Pipeline(
      {{"DEL", FailKey(name)},
       {"HSET", kLastLoginKey, name, absl::StrCat(absl::ToUnixSeconds(clock_.Now()))}});
  if (!ok.ok()) return ok.status();
  return LoginResult::kOk;
}

absl::StatusOr<std::string> OttStore::CreateSession(const std::string& name, absl::Duration ttl) {
  const std::string cookie = core::RandomHex(rng_, 32);
  absl::StatusOr<core::RedisReply> r =
      redis_.Command({"SET", SessionKey(cookie), name, "EX",
                      absl::StrCat(std::max<int64_t>(1, absl::ToInt64Seconds(ttl)))});
  if (!r.ok()) return r.status();
  return cookie;
}

absl::StatusOr<std::optional<std::string>> OttStore::SessionAccount(const std::string& cookie) {
  if (cookie.size() != 64) return std::nullopt;
  for (char c : cookie) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  absl::StatusOr<core::RedisReply> r = redis_.Command({"GET", SessionKey(cookie)});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::nullopt;
  return r->str;
}

absl::Status OttStore::DeleteSession(const std::string& cookie) {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"DEL", SessionKey(cookie)});
  return r.status();
}

absl::StatusOr<long long> OttStore::Version() {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"GET", kVersionKey});
  if (!r.ok()) return r.status();
  long long v = 0;
  if (!r->is_nil() && !absl::SimpleAtoi(r->str, &v)) {
    return absl::DataLossError("rwg:ott:version is not a number");
  }
  return v;
}

}  // namespace rwg::ott
