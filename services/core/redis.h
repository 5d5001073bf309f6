// A small synchronous Redis client on hiredis with a connection pool. Every failure to reach
// Redis is absl::UnavailableError naming the address, so callers can map it straight to gRPC
// UNAVAILABLE; an error reply from Redis is absl::InternalError with Redis' message.
#pragma once

#include <prometheus/counter.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct redisContext;
struct redisReader;
struct redisReply;

namespace rwg::core {

struct RedisReply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus };
  Type type = Type::kNil;
  std::string str;
  long long integer = 0;
  std::vector<RedisReply> elements;

  bool is_nil() const { return type == Type::kNil; }
};

// The most array elements, nested ones included, that one reply from Redis may announce. A
// multi-bulk header makes hiredis allocate its element table before any element arrives, so
// a garbled or hostile reply of a few bytes ("*2147483647") would otherwise reserve 16 GiB.
// 8 Mi elements (tables of at most 64 MiB) hold the largest reply rwg reads, the sync API's
// whole device list (the device table's and the device revisions' HGETALL in one reply: four
// elements per device), for two million devices.
inline constexpr int kMaxRedisReplyElements = 8 << 20;
// Makes `reader` (a context's, or one of its own) refuse a reply that announces more than
// `max_elements` array elements in all: the reader fails (hiredis reports it as "Out of
// memory"), the command is Unavailable and the connection is dropped. Readers replaced by
// redisReconnect would lose the bound: rwg makes a new context instead.
void BoundRedisReplies(redisReader* reader, int max_elements = kMaxRedisReplyElements);

// A hiredis reply as a RedisReply (for clients built on hiredis' other APIs).
RedisReply ConvertReply(const redisReply* r);
// A Redis error reply as a status: Unavailable for a server that is loading, busy or cut from
// its replica, Internal otherwise.
absl::Status ErrorReplyStatus(const std::string& address, const std::string& message);

// A command's arguments as hiredis' *Argv functions take them (pointers into `args`, which
// must outlive it).
struct RedisArgv {
  explicit RedisArgv(const std::vector<std::string>& args);
  int argc() const { return static_cast<int>(argv.size()); }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
};

// The SHA-1 (hex) that EVALSHA names `script` by.
std::string ScriptSha(const std::string& script);

class MasterLocator;
class RedisTlsTunnel;

struct RedisOptions {
  std::string address = "127.0.0.1:6379";  // host:port or unix:/path
  std::string password;                    // AUTH on connect when set; never logged
  // With Sentinel: where the master is now (address is then unused). A command whose master
  // failed under it is sent once more to the new master (waiting for it up to failover_wait)
  // when it cannot have been applied: no connection, refused by a demoted master (READONLY,
  // NOREPLICAS), or a read whose reply was lost. A write whose reply was lost is not repeated.
  std::shared_ptr<MasterLocator> locator;
  // Redis over TLS (services/core/redis_tls.h): every connection to a host:port goes through
  // it. Unix socket addresses never do.
  std::shared_ptr<RedisTlsTunnel> tls;
  // Long enough for the sentinels to agree the master is down and promote a replica
  // (down-after-milliseconds plus about a second).
  absl::Duration failover_wait = absl::Seconds(5);
  prometheus::Counter* retries = nullptr;  // commands sent again after a failover
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration command_timeout = absl::Seconds(5);
  size_t max_idle_connections = 8;
};

// Redis without blocking the caller: each command's reply comes to a callback. sip-edge's
// implementation runs on its SIP thread's event loop (services/sip_edge/async_redis.h); the
// stores below take it to offer a non-blocking form of what they do on a RedisClient.
class AsyncRedisCommands {
 public:
  using Callback = std::function<void(absl::StatusOr<RedisReply>)>;
  virtual ~AsyncRedisCommands() = default;
  // `done` is called exactly once with the reply, Unavailable when Redis cannot be reached in
  // time (possibly before the call returns: no connection), or Internal for an error reply.
  virtual void Command(const std::vector<std::string>& args, Callback done) = 0;
  // The script with the given keys and arguments (EVALSHA, EVAL when Redis lacks it).
  virtual void Eval(const std::string& script, const std::vector<std::string>& keys,
                    const std::vector<std::string>& args, Callback done) = 0;
};

class RedisClient {
 public:
  explicit RedisClient(RedisOptions options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& args);
  // Sends the commands together and reads their replies (one round trip). The first error
  // reply, or a failure to reach Redis, is the result; the replies otherwise, in order.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(
      const std::vector<std::vector<std::string>>& commands);
  // Runs the script with the given keys and arguments (EVALSHA, EVAL when Redis lacks it).
  absl::StatusOr<RedisReply> Eval(const std::string& script, const std::vector<std::string>& keys,
                                  const std::vector<std::string>& args);
  absl::Status Ping();
  // Listens on pub/sub channels on a connection of its own: `on_message` gets each message's
  // channel and payload, until `stop` returns true (checked at least every `poll`) or the
  // connection fails (Unavailable; the caller subscribes again).
  absl::Status Subscribe(
      const std::vector<std::string>& channels, const std::function<bool()>& stop,
      const std::function<void(const std::string& channel, const std::string& payload)>& on_message,
      absl::Duration poll = absl::Seconds(1));
  const std::string& address() const { return options_.address; }
  const RedisOptions& options() const { return options_; }

 private:
  // A connection to the master of the moment; `generation` (may be null) gets its generation
  // (0 without Sentinel).
  absl::StatusOr<redisContext*> Acquire(uint64_t* generation);
  void Release(redisContext* ctx, bool healthy);
  // How a command failed: whether it can have been applied.
  enum class Failure { kNone, kNotSent, kRefused, kReplyLost, kOther };
  static bool SafeToSendAgain(Failure how, bool read_only);
  absl::StatusOr<RedisReply> CommandOnce(const std::vector<std::string>& args, uint64_t* generation,
                                         Failure* how);
  absl::StatusOr<std::vector<RedisReply>> PipelineOnce(
      const std::vector<std::vector<std::string>>& commands, uint64_t* generation, Failure* how);
  // Whether `failed` (on a connection of `generation`) is worth sending again: Sentinel is in
  // use, Redis was unavailable, and a new master became known within failover_wait.
  bool FollowFailover(const absl::Status& failed, uint64_t generation);
  void RetryCounted();
  // The address in use, for messages.
  std::string Where() const;

  RedisOptions options_;
  absl::Mutex mu_;
  std::vector<redisContext*> idle_ ABSL_GUARDED_BY(mu_);
  uint64_t idle_generation_ ABSL_GUARDED_BY(mu_) = 0;  // of every idle connection
  std::unordered_map<redisContext*, uint64_t> generation_of_ ABSL_GUARDED_BY(mu_);  // in use
  std::unordered_map<std::string, std::string> script_sha_
      ABSL_GUARDED_BY(mu_);  // script -> SHA-1 hex
};

}  // namespace rwg::core
