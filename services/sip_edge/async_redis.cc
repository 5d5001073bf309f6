#include "services/sip_edge/async_redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/core/log.h"
#include "services/core/redis_sentinel.h"
#include "services/core/redis_tls.h"
#include "services/sip_edge/guard.h"

namespace rwg::sip_edge {

struct AsyncRedis::Request {
  AsyncRedis* self;
  Callback done;
  // For EVALSHA: what to send as EVAL if Redis answers NOSCRIPT.
  std::vector<std::string> eval_args;
};

AsyncRedis::AsyncRedis(su_root_t* root, core::RedisOptions options, core::Clock& clock)
    : root_(root), options_(std::move(options)), clock_(clock) {}

AsyncRedis::~AsyncRedis() {
  closing_ = true;
  if (ctx_ != nullptr) {
    redisAsyncContext* c = ctx_;
    ctx_ = nullptr;
    redisAsyncFree(c);  // pending callbacks get "unavailable"
  }
}

bool AsyncRedis::Connect() {
  address_ = options_.address;
  if (options_.locator != nullptr) {
    const core::MasterLocator::Master m = options_.locator->Current();
    if (m.address.empty()) {
      last_error_ = absl::StrCat("no master known (", options_.locator->Describe(), ")");
      return false;
    }
    address_ = m.address;
    generation_ = m.generation;
  }
  std::string dial = address_;
  if (options_.tls != nullptr && !absl::StartsWith(address_, "unix:")) {
    absl::StatusOr<std::string> local = options_.tls->LocalAddress(address_);
    if (!local.ok()) {
      last_error_ = std::string(local.status().message());
      return false;
    }
    dial = *std::move(local);
  }
  absl::string_view addr = dial;
  redisAsyncContext* c = nullptr;
  if (absl::ConsumePrefix(&addr, "unix:")) {
    c = redisAsyncConnectUnix(std::string(addr).c_str());
  } else {
    size_t colon = addr.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(addr.substr(colon + 1), &port)) {
      last_error_ = "address is not host:port or unix:/path";
      return false;
    }
    std::string host(addr.substr(0, colon));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    c = redisAsyncConnect(host.c_str(), port);
  }
  if (c == nullptr) {
    last_error_ = "out of memory";
    return false;
  }
  if (c->err) {
    last_error_ = c->errstr;
    redisAsyncFree(c);
    return false;
  }
  core::BoundRedisReplies(c->c.reader);
  auto* conn = new Conn{this};
  conn->fd = c->c.fd;
  c->data = this;
  c->ev.data = conn;
  c->ev.addRead = &AsyncRedis::AddRead;
  c->ev.delRead = &AsyncRedis::DelRead;
  c->ev.addWrite = &AsyncRedis::AddWrite;
  c->ev.delWrite = &AsyncRedis::DelWrite;
  c->ev.cleanup = &AsyncRedis::Cleanup;
  redisAsyncSetConnectCallback(c, &AsyncRedis::OnConnect);
  redisAsyncSetDisconnectCallback(c, &AsyncRedis::OnDisconnect);
  su_wait_t wait[1] = {};
  if (su_wait_create(wait, conn->fd, SU_WAIT_IN) == 0) {
    conn->mask = SU_WAIT_IN;
    conn->index = su_root_register(root_, wait, &AsyncRedis::OnEvent,
                                   reinterpret_cast<su_wakeup_arg_t*>(conn), 0);
    if (conn->index <= 0) su_wait_destroy(wait);
  }
  if (conn->index <= 0) {
    last_error_ = "cannot watch the Redis socket";
    redisAsyncFree(c);  // its cleanup hook deletes conn
    return false;
  }
  ctx_ = c;
  if (!options_.password.empty()) {
    // Queued first: Redis handles it before any command below.
    const char* argv[] = {"AUTH", options_.password.c_str()};
    size_t lens[] = {4, options_.password.size()};
    redisAsyncCommandArgv(c, nullptr, nullptr, 2, argv, lens);
  }
  return true;
}

void AsyncRedis::Command(const std::vector<std::string>& args, Callback done) {
  Send(new Request{this, std::move(done), {}}, args);
}

void AsyncRedis::Eval(const std::string& script, const std::vector<std::string>& keys,
                      const std::vector<std::string>& args, Callback done) {
  std::vector<std::string> cmd;
  cmd.reserve(3 + keys.size() + args.size());
  cmd.push_back("EVALSHA");
  cmd.push_back(core::ScriptSha(script));
  cmd.push_back(std::to_string(keys.size()));
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
  auto* r = new Request{this, std::move(done), cmd};
  r->eval_args[0] = "EVAL";
  r->eval_args[1] = script;
  Send(r, cmd);
}

void AsyncRedis::Send(Request* r, const std::vector<std::string>& args) {
  // Sentinel named another master: nothing more is written to the previous one.
  if (ctx_ != nullptr && options_.locator != nullptr &&
      options_.locator->Current().generation != generation_) {
    Drop("the Redis master changed");
  }
  if (ctx_ == nullptr && (closing_ || !Connect())) {
    Callback done = std::move(r->done);
    delete r;
    done(absl::UnavailableError(
        absl::StrCat("redis at ", address_, " is unavailable: ", last_error_)));
    return;
  }
  core::RedisArgv a(args);
  if (redisAsyncCommandArgv(ctx_, &AsyncRedis::OnReply, r, a.argc(), a.argv.data(),
                            a.lens.data()) != REDIS_OK) {
    Callback done = std::move(r->done);
    delete r;
    done(absl::UnavailableError(
        absl::StrCat("redis at ", address_, " is unavailable: connection closing")));
    return;
  }
  sent_at_.push_back(clock_.Now());
}

void AsyncRedis::OnReply(redisAsyncContext* c, void* reply, void* privdata) {
  Guard("redis reply", [&] { HandleReply(c, reply, privdata); });
}

void AsyncRedis::HandleReply(redisAsyncContext* c, void* reply, void* privdata) {
  auto* r = static_cast<Request*>(privdata);
  AsyncRedis* self = r->self;
  if (!self->sent_at_.empty()) self->sent_at_.pop_front();
  auto* rep = static_cast<redisReply*>(reply);
  if (rep == nullptr) {
    Callback done = std::move(r->done);
    delete r;
    std::string why = c->errstr != nullptr && c->err ? c->errstr : self->last_error_;
    if (why.empty()) why = "connection lost";
    done(absl::UnavailableError(
        absl::StrCat("redis at ", self->address_, " is unavailable: ", why)));
    return;
  }
  if (rep->type == REDIS_REPLY_ERROR) {
    std::string msg(rep->str, rep->len);
    if (!r->eval_args.empty() && absl::StartsWith(msg, "NOSCRIPT")) {
      std::vector<std::string> eval = std::move(r->eval_args);
      r->eval_args.clear();
      self->Send(r, eval);
      return;
    }
    Callback done = std::move(r->done);
    delete r;
    // A master demoted by a failover: the locator looks for the new one now.
    if (absl::StartsWith(msg, "READONLY") && self->options_.locator != nullptr) {
      self->options_.locator->Suspect(self->generation_);
    }
    done(core::ErrorReplyStatus(self->address_, msg));
    return;
  }
  core::RedisReply out = core::ConvertReply(rep);
  Callback done = std::move(r->done);
  delete r;
  done(std::move(out));
}

void AsyncRedis::OnConnect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<AsyncRedis*>(c->data);
  if (status != REDIS_OK) {
    self->last_error_ = self->TlsError();
    if (self->last_error_.empty()) self->last_error_ = c->errstr ? c->errstr : "connect failed";
    if (self->options_.locator != nullptr) self->options_.locator->Suspect(self->generation_);
    core::log::Warn("redis connection failed",
                    {{"address", self->address_}, {"error", self->last_error_}});
    // hiredis frees the context next, without a disconnect callback for a connection that
    // never was: forget it now.
    if (self->ctx_ == c) {
      self->ctx_ = nullptr;
      self->sent_at_.clear();
    }
  }
}

void AsyncRedis::OnDisconnect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<AsyncRedis*>(c->data);
  if (status != REDIS_OK) {
    self->last_error_ = self->TlsError();
    if (self->last_error_.empty() && c->errstr != nullptr) self->last_error_ = c->errstr;
  }
  if (status != REDIS_OK && self->options_.locator != nullptr) {
    self->options_.locator->Suspect(self->generation_);
  }
  if (self->ctx_ == c) {
    self->ctx_ = nullptr;  // hiredis frees the context after this call
    self->sent_at_.clear();
  }
}

std::string AsyncRedis::TlsError() const {
  if (options_.tls == nullptr || absl::StartsWith(address_, "unix:")) return "";
  return options_.tls->LastError(address_);
}

void AsyncRedis::Drop(const std::string& why) {
  if (ctx_ == nullptr) return;
  last_error_ = why;
  core::log::Warn("dropping the redis connection", {{"address", address_}, {"reason", why}});
  redisAsyncContext* c = ctx_;
  ctx_ = nullptr;
  redisAsyncFree(c);  // every pending callback gets "unavailable"
  sent_at_.clear();
}

void AsyncRedis::CheckTimeouts() {
  // Sentinel named another master: commands go there from now on.
  if (ctx_ != nullptr && options_.locator != nullptr &&
      options_.locator->Current().generation != generation_) {
    Drop("the Redis master changed");
    return;
  }
  if (ctx_ != nullptr && !sent_at_.empty() &&
      clock_.Now() - sent_at_.front() > options_.command_timeout) {
    Drop(absl::StrCat("no answer within ", absl::FormatDuration(options_.command_timeout)));
  }
}

int AsyncRedis::OnEvent(su_root_magic_t*, su_wait_t* w, su_wakeup_arg_t* arg) {
  auto* conn = reinterpret_cast<Conn*>(arg);
  AsyncRedis* self = conn->self;
  const int events = su_wait_events(w, conn->fd);
  // One call per wake-up: either may end the connection (and free `conn`); the loop wakes
  // again for what is left.
  if (self->ctx_ == nullptr || self->ctx_->ev.data != conn) return 0;
  if (events & (SU_WAIT_IN | SU_WAIT_HUP | SU_WAIT_ERR)) {
    redisAsyncHandleRead(self->ctx_);
  } else if (events & SU_WAIT_OUT) {
    redisAsyncHandleWrite(self->ctx_);
  }
  return 0;
}

void AsyncRedis::SetMask(Conn* c, int mask) {
  if (mask == c->mask) return;
  c->mask = mask;
  if (c->index > 0) su_root_eventmask(c->self->root_, c->index, c->fd, mask);
}
void AsyncRedis::AddRead(void* p) {
  auto* c = static_cast<Conn*>(p);
  SetMask(c, c->mask | SU_WAIT_IN);
}
void AsyncRedis::DelRead(void* p) {
  auto* c = static_cast<Conn*>(p);
  SetMask(c, c->mask & ~SU_WAIT_IN);
}
void AsyncRedis::AddWrite(void* p) {
  auto* c = static_cast<Conn*>(p);
  SetMask(c, c->mask | SU_WAIT_OUT);
}
void AsyncRedis::DelWrite(void* p) {
  auto* c = static_cast<Conn*>(p);
  SetMask(c, c->mask & ~SU_WAIT_OUT);
}
void AsyncRedis::Cleanup(void* p) {
  auto* c = static_cast<Conn*>(p);
  if (c->index > 0) su_root_deregister(c->self->root_, c->index);
  delete c;
}

}  // namespace rwg::sip_edge
