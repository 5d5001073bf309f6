#include "services/core/redis.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/time.h>

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "services/core/log.h"
#include "services/core/redis_sentinel.h"

namespace rwg::core {

namespace {

// hiredis' own functions, copied from a reader before the first bounded one is made.
const redisReplyObjectFunctions& HiredisFunctions() {
  static const redisReplyObjectFunctions functions = [] {
    redisReader* r = redisReaderCreate();
    redisReplyObjectFunctions f = *r->fn;
    redisReaderFree(r);
    return f;
  }();
  return functions;
}

// The reader's budget: privdata of every task (hiredis copies the reader's privdata into each).
struct ReplyBound {
  int max_elements;
};

// An array counts against the reply's budget: the root array's own size, and for a nested one
// the running total kept in the root reply's `integer` field (unused for an array).
void* CreateBoundedArray(const redisReadTask* task, int elements) {
  const auto* bound = static_cast<const ReplyBound*>(task->privdata);
  if (bound != nullptr && elements > 0) {
    const redisReadTask* root = task;
    while (root->parent != nullptr) root = root->parent;
    auto* root_reply = task == root ? nullptr : static_cast<redisReply*>(root->obj);
    const long long used = root_reply == nullptr
                               ? 0
                               : static_cast<long long>(root_reply->elements) + root_reply->integer;
    if (used + elements > bound->max_elements) {
      log::Warn("redis reply refused: it announces more array elements than rwg takes in one reply",
                {{"elements", std::to_string(used + elements)},
                 {"limit", std::to_string(bound->max_elements)}});
      return nullptr;  // the reader fails the reply; the connection is dropped
    }
    if (root_reply != nullptr) root_reply->integer += elements;
  }
  return HiredisFunctions().createArray(task, elements);
}

// An idle connection expects nothing from Redis: anything to read (an end of stream, an
// error) means Redis closed it, and a command sent on it would fail after the send, when
// whether Redis applied it can no longer be known.
bool IdleConnectionAlive(const redisContext* c) {
  pollfd p{c->fd, POLLIN | POLLRDHUP, 0};
  return c->err == 0 && ::poll(&p, 1, 0) == 0;
}

}  // namespace

void BoundRedisReplies(redisReader* reader, int max_elements) {
  if (reader == nullptr) return;
  static redisReplyObjectFunctions bounded = [] {
    redisReplyObjectFunctions f = HiredisFunctions();
    f.createArray = &CreateBoundedArray;
    return f;
  }();
  // One bound per distinct limit, alive for the process (readers keep a pointer to it).
  static absl::Mutex mu;
  static auto* bounds = new std::map<int, ReplyBound>();
  ReplyBound* bound = nullptr;
  {
    absl::MutexLock lock(&mu);
    bound = &bounds->try_emplace(max_elements, ReplyBound{max_elements}).first->second;
  }
  reader->fn = &bounded;
  reader->privdata = bound;
}

RedisReply ConvertReply(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(ConvertReply(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::kNil;
  }
  return out;
}

absl::Status ErrorReplyStatus(const std::string& address, const std::string& msg) {
  // A server that is loading its data set or lost its replica is unavailable, not broken.
  // READONLY: a master demoted to a replica by a failover; NOREPLICAS: a master that lost its
  // replicas (min-replicas-to-write), as an old master cut off by a failover does.
  if (absl::StartsWith(msg, "LOADING") || absl::StartsWith(msg, "MASTERDOWN") ||
      absl::StartsWith(msg, "BUSY") || absl::StartsWith(msg, "MISCONF") ||
      absl::StartsWith(msg, "READONLY") || absl::StartsWith(msg, "NOREPLICAS")) {
    return absl::UnavailableError(absl::StrCat("redis at ", address, " is unavailable: ", msg));
  }
  return absl::InternalError(absl::StrCat("redis error: ", msg));
}

std::string ScriptSha(const std::string& script) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(script.data()), script.size(), md);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), sizeof(md)));
}

RedisClient::RedisClient(RedisOptions options) : options_(std::move(options)) {}

RedisClient::~RedisClient() {
  for (redisContext* c : idle_) redisFree(c);
}

namespace {

// Commands that change nothing: sent again after their reply was lost, they cannot be applied
// twice.
bool ReadOnly(const std::vector<std::string>& args) {
  static const auto* kReads = new absl::flat_hash_set<std::string>{"GET",
                                                                   "MGET",
                                                                   "HGET",
                                                                   "HMGET",
                                                                   "HGETALL",
                                                                   "HEXISTS",
                                                                   "HLEN",
                                                                   "HKEYS",
                                                                   "HVALS",
                                                                   "HSCAN",
                                                                   "EXISTS",
                                                                   "TTL",
                                                                   "PTTL",
                                                                   "TYPE",
                                                                   "SCAN",
                                                                   "SMEMBERS",
                                                                   "SISMEMBER",
                                                                   "SCARD",
                                                                   "SSCAN",
                                                                   "ZRANGE",
                                                                   "ZRANGEBYSCORE",
                                                                   "ZREVRANGE",
                                                                   "ZREVRANGEBYSCORE",
                                                                   "ZSCORE",
                                                                   "ZCARD",
                                                                   "ZCOUNT",
                                                                   "ZSCAN",
                                                                   "LRANGE",
                                                                   "LLEN",
                                                                   "LINDEX",
                                                                   "STRLEN",
                                                                   "PING",
                                                                   "KEYS",
                                                                   "XRANGE",
                                                                   "XREVRANGE",
                                                                   "XLEN",
                                                                   "GETRANGE",
                                                                   "DBSIZE",
                                                                   "ROLE"};
  return !args.empty() && kReads->contains(absl::AsciiStrToUpper(args[0]));
}

}  // namespace

bool RedisClient::SafeToSendAgain(Failure how, bool read_only) {
  switch (how) {
    case Failure::kNotSent:  // no connection to the master: nothing was sent
    case Failure::kRefused:  // READONLY/NOREPLICAS: a demoted master applied nothing
      return true;
    case Failure::kReplyLost:  // it may have been applied: only a read is sent again
      return read_only;
    case Failure::kNone:
    case Failure::kOther:
      return false;
  }
  return false;
}

absl::StatusOr<RedisReply> RedisClient::Command(const std::vector<std::string>& args) {
  uint64_t generation = 0;
  Failure how = Failure::kNone;
  absl::StatusOr<RedisReply> r = CommandOnce(args, &generation, &how);
  // The master failed under the command, or was demoted: once more on the new one, when the
  // command cannot have been applied (or changes nothing).
  if (!r.ok() && SafeToSendAgain(how, ReadOnly(args)) && FollowFailover(r.status(), generation)) {
    RetryCounted();
    r = CommandOnce(args, &generation, &how);
  }
  return r;
}

absl::StatusOr<std::vector<RedisReply>> RedisClient::Pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  uint64_t generation = 0;
  Failure how = Failure::kNone;
  absl::StatusOr<std::vector<RedisReply>> r = PipelineOnce(commands, &generation, &how);
  // A demoted master may have applied the first writes of a pipeline before refusing the
  // next: a pipeline is sent again only when nothing was sent or it only reads.
  const bool reads = std::all_of(commands.begin(), commands.end(), ReadOnly);
  if (!r.ok() && (how == Failure::kNotSent || reads) && FollowFailover(r.status(), generation)) {
    RetryCounted();
    r = PipelineOnce(commands, &generation, &how);
  }
  return r;
}

void RedisClient::RetryCounted() {
  if (options_.retries != nullptr) options_.retries->Increment();
}

absl::StatusOr<redisContext*> RedisClient::Acquire(uint64_t* generation) {
  std::string address = options_.address;
  uint64_t gen = 0;
  if (options_.locator != nullptr) {
    MasterLocator::Master m = options_.locator->Current();
    if (m.address.empty()) m = options_.locator->WaitForMaster(options_.connect_timeout);
    if (m.address.empty()) {
      return absl::UnavailableError(
          absl::StrCat("redis: no master known (", options_.locator->Describe(), ")"));
    }
    address = m.address;
    gen = m.generation;
  }
  if (generation != nullptr) *generation = gen;
  for (;;) {
    redisContext* c = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (gen != idle_generation_) {
        // The master changed: connections to the previous one are not used again.
        for (redisContext* old : idle_) redisFree(old);
        idle_.clear();
        idle_generation_ = gen;
      }
      if (idle_.empty()) break;
      c = idle_.back();
      idle_.pop_back();
    }
    if (!IdleConnectionAlive(c)) {
      redisFree(c);  // closed by Redis (restarted, timeout, killed): a new one instead
      continue;
    }
    if (generation != nullptr) {
      absl::MutexLock lock(&mu_);
      generation_of_[c] = gen;  // not Subscribe's (never released)
    }
    return c;
  }
  absl::StatusOr<redisContext*> c =
      ConnectRedis(address, options_.password, options_.connect_timeout, options_.command_timeout,
                   options_.tls.get());
  if (c.ok() && generation != nullptr) {
    absl::MutexLock lock(&mu_);
    generation_of_[*c] = gen;
  }
  return c;
}

std::string RedisClient::Where() const {
  if (options_.locator == nullptr) return options_.address;
  const MasterLocator::Master m = options_.locator->Current();
  return m.address.empty() ? options_.locator->Describe() : m.address;
}

bool RedisClient::FollowFailover(const absl::Status& failed, uint64_t generation) {
  if (options_.locator == nullptr || !absl::IsUnavailable(failed)) return false;
  options_.locator->Suspect(generation);
  const MasterLocator::Master m =
      options_.locator->WaitForChange(generation, options_.failover_wait);
  return m.generation != generation && !m.address.empty();
}

absl::Status RedisClient::Subscribe(
    const std::vector<std::string>& channels, const std::function<bool()>& stop,
    const std::function<void(const std::string&, const std::string&)>& on_message,
    absl::Duration poll_every) {
  const uint64_t generation =
      options_.locator == nullptr ? 0 : options_.locator->Current().generation;
  absl::StatusOr<redisContext*> acquired = Acquire(nullptr);
  if (!acquired.ok()) return acquired.status();
  redisContext* c = *acquired;
  auto fail = [&](const std::string& why) {
    redisFree(c);  // a subscribed connection never goes back to the pool
    return absl::UnavailableError(absl::StrCat("redis at ", Where(), ": ", why));
  };
  for (const std::string& channel : channels) {
    auto* r =
        static_cast<redisReply*>(redisCommand(c, "SUBSCRIBE %b", channel.data(), channel.size()));
    if (r == nullptr) return fail(c->errstr);
    freeReplyObject(r);
  }
  const int timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(poll_every));
  while (!stop()) {
    // A master that went away without closing the connection sends nothing more: the caller
    // subscribes again, on the new master.
    if (options_.locator != nullptr && options_.locator->Current().generation != generation) {
      return fail("the Redis master changed");
    }
    void* reply = nullptr;
    // Replies already read come first; otherwise wait (at most `poll_every`) for more.
    if (redisGetReplyFromReader(c, &reply) != REDIS_OK) return fail(c->errstr);
    if (reply == nullptr) {
      pollfd p{c->fd, POLLIN, 0};
      const int n = ::poll(&p, 1, timeout_ms);
      if (n < 0 && errno != EINTR) return fail("poll failed");
      if (n <= 0) continue;
      if (redisBufferRead(c) != REDIS_OK) return fail(c->errstr);
      continue;
    }
    auto* m = static_cast<redisReply*>(reply);
    if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 && m->element[0]->str != nullptr &&
        absl::string_view(m->element[0]->str, m->element[0]->len) == "message" &&
        m->element[2]->type == REDIS_REPLY_STRING) {
      const std::string channel(m->element[1]->str ? m->element[1]->str : "",
                                m->element[1]->str ? m->element[1]->len : 0);
      const std::string payload(m->element[2]->str, m->element[2]->len);
      freeReplyObject(m);
      on_message(channel, payload);
    } else {
      freeReplyObject(m);
    }
  }
  redisFree(c);
  return absl::OkStatus();
}

void RedisClient::Release(redisContext* ctx, bool healthy) {
  {
    absl::MutexLock lock(&mu_);
    auto it = generation_of_.find(ctx);
    const uint64_t gen = it == generation_of_.end() ? 0 : it->second;
    if (it != generation_of_.end()) generation_of_.erase(it);
    if (healthy && gen == idle_generation_ && idle_.size() < options_.max_idle_connections) {
      idle_.push_back(ctx);
      return;
    }
  }
  redisFree(ctx);
}

RedisArgv::RedisArgv(const std::vector<std::string>& args) {
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
}

absl::StatusOr<RedisReply> RedisClient::CommandOnce(const std::vector<std::string>& args,
                                                    uint64_t* generation, Failure* how) {
  *how = Failure::kNotSent;
  absl::StatusOr<redisContext*> ctx = Acquire(generation);
  if (!ctx.ok()) return ctx.status();
  RedisArgv a(args);
  auto* r =
      static_cast<redisReply*>(redisCommandArgv(*ctx, a.argc(), a.argv.data(), a.lens.data()));
  if (r == nullptr) {
    *how = Failure::kReplyLost;
    std::string why = (*ctx)->errstr;
    Release(*ctx, false);
    return absl::UnavailableError(absl::StrCat("redis at ", Where(), " is unavailable: ", why));
  }
  if (r->type == REDIS_REPLY_ERROR) {
    std::string msg(r->str, r->len);
    *how = absl::StartsWith(msg, "READONLY") || absl::StartsWith(msg, "NOREPLICAS")
               ? Failure::kRefused
               : Failure::kOther;
    freeReplyObject(r);
    Release(*ctx, true);
    return ErrorReplyStatus(Where(), msg);
  }
  *how = Failure::kNone;
  RedisReply out = ConvertReply(r);
  freeReplyObject(r);
  Release(*ctx, true);
  return out;
}

absl::StatusOr<std::vector<RedisReply>> RedisClient::PipelineOnce(
    const std::vector<std::vector<std::string>>& commands, uint64_t* generation, Failure* how) {
  *how = Failure::kNotSent;
  absl::StatusOr<redisContext*> ctx = Acquire(generation);
  if (!ctx.ok()) return ctx.status();
  *how = Failure::kReplyLost;
  auto unavailable = [&] {
    std::string why = (*ctx)->errstr;
    Release(*ctx, false);
    return absl::UnavailableError(absl::StrCat("redis at ", Where(), " is unavailable: ", why));
  };
  for (const std::vector<std::string>& args : commands) {
    RedisArgv a(args);
    if (redisAppendCommandArgv(*ctx, a.argc(), a.argv.data(), a.lens.data()) != REDIS_OK) {
      return unavailable();
    }
  }
  std::vector<RedisReply> out;
  out.reserve(commands.size());
  absl::Status first_error;
  // Every reply is read, errors included, so the connection stays in step for its next user.
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(*ctx, &raw) != REDIS_OK || raw == nullptr) return unavailable();
    auto* r = static_cast<redisReply*>(raw);
    if (r->type == REDIS_REPLY_ERROR && first_error.ok()) {
      first_error = ErrorReplyStatus(Where(), std::string(r->str, r->len));
    }
    out.push_back(ConvertReply(r));
    freeReplyObject(r);
  }
  Release(*ctx, true);
  *how = first_error.ok() ? Failure::kNone : Failure::kOther;
  if (!first_error.ok()) return first_error;
  return out;
}

absl::StatusOr<RedisReply> RedisClient::Eval(const std::string& script,
                                             const std::vector<std::string>& keys,
                                             const std::vector<std::string>& args) {
  // EVALSHA saves sending (and Redis hashing) the script on every call; EVAL loads it when
  // Redis does not know it (first use, or after a restart or SCRIPT FLUSH).
  std::string sha;
  {
    absl::MutexLock lock(&mu_);
    auto it = script_sha_.find(script);
    if (it == script_sha_.end()) it = script_sha_.emplace(script, ScriptSha(script)).first;
    sha = it->second;
  }
  std::vector<std::string> cmd;
  cmd.reserve(3 + keys.size() + args.size());
  cmd.push_back("EVALSHA");
  cmd.push_back(sha);
  cmd.push_back(std::to_string(keys.size()));
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
  absl::StatusOr<RedisReply> r = Command(cmd);
  if (r.ok() || !absl::IsInternal(r.status()) ||
      !absl::StrContains(r.status().message(), "NOSCRIPT")) {
    return r;
  }
  cmd[0] = "EVAL";
  cmd[1] = script;
  return Command(cmd);
}

absl::Status RedisClient::Ping() {
  absl::StatusOr<RedisReply> r = Command({"PING"});
  return r.status();
}

}  // namespace rwg::core
