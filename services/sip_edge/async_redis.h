// Redis without blocking the SIP thread: a hiredis asynchronous connection driven by the
// sofia-sip event loop (su_root) that runs the edge. Commands are written as they come and
// their replies handled when the socket is readable, so many registrations can wait on Redis
// at once and a busy edge batches commands and replies naturally.
#pragma once

#include <sofia-sip/su_wait.h>

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/redis.h"

struct redisAsyncContext;
struct redisReply;

namespace rwg::sip_edge {

class AsyncRedis : public core::AsyncRedisCommands {
 public:
  // Runs on `root`'s thread only. Connects on first use and again after a failure.
  AsyncRedis(su_root_t* root, core::RedisOptions options, core::Clock& clock);
  ~AsyncRedis() override;
  AsyncRedis(const AsyncRedis&) = delete;
  AsyncRedis& operator=(const AsyncRedis&) = delete;

  // `done` is called exactly once, on the loop's thread: with the reply, with Unavailable when
  // Redis cannot be reached (at once when there is no connection) or did not answer within
  // the command timeout, or with Internal for an error reply.
  void Command(const std::vector<std::string>& args, Callback done) override;
  // EVALSHA of `script` (EVAL when Redis does not know the script yet).
  void Eval(const std::string& script, const std::vector<std::string>& keys,
            const std::vector<std::string>& args, Callback done) override;

  // Called periodically: drops the connection when the oldest command has waited longer than
  // the command timeout (its callbacks then get Unavailable).
  void CheckTimeouts();

  size_t pending() const { return sent_at_.size(); }

 private:
  struct Request;
  // One connection's watch on the event loop; hiredis' cleanup hook ends it.
  struct Conn {
    AsyncRedis* self;
    int index = 0;  // su_root registration
    int fd = -1;
    int mask = 0;
  };
  bool Connect();
  void Send(Request* r, const std::vector<std::string>& args);
  void Drop(const std::string& why);
  static void OnReply(redisAsyncContext* c, void* reply, void* privdata);
  static void HandleReply(redisAsyncContext* c, void* reply, void* privdata);
  static void OnConnect(const redisAsyncContext* c, int status);
  static void OnDisconnect(const redisAsyncContext* c, int status);
  // Why the TLS tunnel's last connection to address_ failed, when Redis is reached through one.
  std::string TlsError() const;
  static int OnEvent(su_root_magic_t*, su_wait_t* w, su_wakeup_arg_t* arg);
  static void AddRead(void* p);
  static void DelRead(void* p);
  static void AddWrite(void* p);
  static void DelWrite(void* p);
  static void Cleanup(void* p);
  static void SetMask(Conn* c, int mask);

  su_root_t* root_;
  core::RedisOptions options_;
  core::Clock& clock_;
  redisAsyncContext* ctx_ = nullptr;
  std::string address_;      // of the connection (the master of generation_ with Sentinel)
  uint64_t generation_ = 0;  // the master's, with Sentinel
  bool closing_ = false;
  std::deque<absl::Time> sent_at_;  // Redis answers in order: the front is the oldest
  std::string last_error_;
};

}  // namespace rwg::sip_edge
