#include "services/core/redis_sentinel.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/time.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "services/core/log.h"
#include "services/core/redis.h"
#include "services/core/redis_tls.h"

namespace rwg::core {

namespace {

// A reply's text ("" for anything else).
std::string Text(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return "";
  return std::string(r->str, r->len);
}

redisReply* Call(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
}

}  // namespace

absl::StatusOr<redisContext*> ConnectRedis(const std::string& address, const std::string& password,
                                           absl::Duration connect_timeout,
                                           absl::Duration command_timeout, RedisTlsTunnel* tls) {
  const timeval tv = absl::ToTimeval(connect_timeout);
  redisContext* c = nullptr;
  std::string dial = address;
  if (tls != nullptr && !absl::StartsWith(address, "unix:")) {
    absl::StatusOr<std::string> local = tls->LocalAddress(address);
    if (!local.ok()) return local.status();
    dial = *std::move(local);
  } else {
    tls = nullptr;
  }
  absl::string_view addr = dial;
  if (absl::ConsumePrefix(&addr, "unix:")) {
    c = redisConnectUnixWithTimeout(std::string(addr).c_str(), tv);
  } else {
    const size_t colon = addr.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(addr.substr(colon + 1), &port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis address '", address, "' is not host:port or unix:/path"));
    }
    std::string host(addr.substr(0, colon));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    c = redisConnectWithTimeout(host.c_str(), port, tv);
  }
  if (c == nullptr) return absl::UnavailableError("redis: out of memory");
  if (c->err) {
    std::string why = c->errstr;
    redisFree(c);
    return absl::UnavailableError(absl::StrCat("redis at ", address, " is unavailable: ", why));
  }
  BoundRedisReplies(c->reader);
  const timeval ctv = absl::ToTimeval(command_timeout);
  redisSetTimeout(c, ctv);
  if (!password.empty() || tls != nullptr) {
    // Through TLS the first answer is also the proof that the handshake went through. An error
    // answer to PING (NOAUTH: a password is required) is the next command's to report.
    redisReply* r = password.empty() ? Call(c, {"PING"}) : Call(c, {"AUTH", password});
    const bool answered = r != nullptr;
    const bool ok = answered && (password.empty() || r->type != REDIS_REPLY_ERROR);
    if (r) freeReplyObject(r);
    if (!answered) {
      std::string why = tls != nullptr ? tls->LastError(address) : std::string();
      if (why.empty()) why = c->errstr[0] != '\0' ? c->errstr : "no answer";
      redisFree(c);
      return absl::UnavailableError(absl::StrCat("redis at ", address, " is unavailable: ", why));
    }
    if (!ok) {
      redisFree(c);
      return absl::UnavailableError(absl::StrCat("redis at ", address, " refused the password"));
    }
  }
  return c;
}

MasterLocator::MasterLocator(SentinelOptions options, prometheus::Registry* registry)
    : options_(std::move(options)) {
  if (registry != nullptr) {
    changes_ = &prometheus::BuildCounter()
                    .Name("rwg_redis_master_changes_total")
                    .Help(
                        "Times the Redis master named by the sentinels changed (failovers "
                        "followed)")
                    .Register(*registry)
                    .Add({});
  }
}

std::shared_ptr<MasterLocator> MasterLocator::Start(SentinelOptions options,
                                                    prometheus::Registry* registry) {
  std::shared_ptr<MasterLocator> l(new MasterLocator(std::move(options), registry));
  l->thread_ = std::thread([p = l.get()] { p->Run(); });
  return l;
}

MasterLocator::~MasterLocator() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (subscribed_ != nullptr) redisFree(subscribed_);
}

std::string MasterLocator::Describe() const {
  return absl::StrCat("master '", options_.master_name, "' of sentinels ",
                      absl::StrJoin(options_.sentinels, ","));
}

MasterLocator::Master MasterLocator::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

MasterLocator::Master MasterLocator::WaitForMaster(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto known = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !current_.address.empty(); };
  mu_.AwaitWithTimeout(absl::Condition(&known), timeout);
  return current_;
}

void MasterLocator::Suspect(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  if (generation == current_.generation) suspected_ = true;
}

MasterLocator::Master MasterLocator::WaitForChange(uint64_t generation,
                                                   absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return current_.generation != generation && !current_.address.empty();
  };
  mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
  return current_;
}

std::string MasterLocator::Ask(std::string* why) {
  const size_t n = options_.sentinels.size();
  std::vector<std::string> errors;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (first_sentinel_ + k) % n;
    const std::string& sentinel = options_.sentinels[i];
    absl::StatusOr<redisContext*> c =
        ConnectRedis(sentinel, options_.sentinel_password, options_.connect_timeout,
                     options_.connect_timeout, options_.tls.get());
    if (!c.ok()) {
      errors.push_back(std::string(c.status().message()));
      continue;
    }
    redisReply* r = Call(*c, {"SENTINEL", "get-master-addr-by-name", options_.master_name});
    std::string candidate;
    if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
      const std::string host = Text(r->element[0]);
      const std::string port = Text(r->element[1]);
      if (!host.empty() && !port.empty()) {
        candidate = host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                                        : absl::StrCat(host, ":", port);
      }
    }
    if (candidate.empty()) {
      errors.push_back(absl::StrCat("sentinel ", sentinel, " does not know master '",
                                    options_.master_name, "'",
                                    r == nullptr ? absl::StrCat(": ", (*c)->errstr) : ""));
    }
    if (r != nullptr) freeReplyObject(r);
    redisFree(*c);
    if (candidate.empty()) continue;
    // A sentinel may still name a master that is gone or demoted: the server says what it is.
    absl::StatusOr<redisContext*> m =
        ConnectRedis(candidate, options_.redis_password, options_.connect_timeout,
                     options_.connect_timeout, options_.tls.get());
    if (!m.ok()) {
      errors.push_back(
          absl::StrCat("sentinel ", sentinel, " names ", candidate, ": ", m.status().message()));
      continue;
    }
    redisReply* role = Call(*m, {"ROLE"});
    const bool master = role != nullptr && role->type == REDIS_REPLY_ARRAY && role->elements > 0 &&
                        Text(role->element[0]) == "master";
    if (role != nullptr) freeReplyObject(role);
    redisFree(*m);
    if (!master) {
      errors.push_back(
          absl::StrCat("sentinel ", sentinel, " names ", candidate, ", which is not a master"));
      continue;
    }
    first_sentinel_ = i;
    return candidate;
  }
  *why = absl::StrJoin(errors, "; ");
  return "";
}

void MasterLocator::Run() {
  for (;;) {
    try {
      if (Step()) return;
    } catch (const std::exception& e) {
      log::Error("Redis master lookup failed", {{"error", e.what()}});
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(1))) return;
    }
  }
}

bool MasterLocator::Step() {
  {
    std::string why;
    const std::string found = Ask(&why);
    {
      absl::MutexLock lock(&mu_);
      if (!found.empty()) {
        suspected_ = false;
        if (found != current_.address) {
          const std::string previous = current_.address;
          current_ = Master{found, current_.generation + 1};
          if (changes_ != nullptr && !previous.empty()) changes_->Increment();
          if (previous.empty()) {
            log::Info("Redis master found", {{"master", found}, {"name", options_.master_name}});
          } else {
            log::Warn("Redis master changed; following it",
                      {{"from", previous}, {"to", found}, {"name", options_.master_name}});
          }
        }
        if (!last_error_.empty()) {
          log::Info("Redis sentinels answer again", {{"master", found}});
          last_error_.clear();
        }
      } else if (last_error_.empty()) {
        last_error_ = why;
        log::Warn("no Redis master known from the sentinels; asking again",
                  {{"name", options_.master_name}, {"error", why}});
      }
    }
    // Until the next question: a poll period (100 ms while a client suspects the master or none
    // is known), cut short by a client's suspicion, by stop, or by a sentinel announcing a
    // switch (+switch-master on the subscribed connection): a switchover is then followed in
    // milliseconds, not at the next poll.
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      wait = suspected_ || current_.address.empty() ? absl::Milliseconds(100) : options_.poll;
    }
    return WaitForNews(wait);
  }
}

void MasterLocator::SubscribeToSwitches() {
  if (options_.sentinels.empty()) return;
  const std::string& sentinel = options_.sentinels[first_sentinel_ % options_.sentinels.size()];
  absl::StatusOr<redisContext*> c =
      ConnectRedis(sentinel, options_.sentinel_password, options_.connect_timeout,
                   options_.connect_timeout, options_.tls.get());
  if (!c.ok()) return;
  redisReply* r = Call(*c, {"SUBSCRIBE", "+switch-master"});
  const bool ok = r != nullptr && r->type == REDIS_REPLY_ARRAY;
  if (r != nullptr) freeReplyObject(r);
  if (!ok) {
    redisFree(*c);
    return;
  }
  subscribed_ = *c;
}

bool MasterLocator::WaitForNews(absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  if (subscribed_ == nullptr) SubscribeToSwitches();
  bool was_suspected = false;
  {
    absl::MutexLock lock(&mu_);
    was_suspected = suspected_;
  }
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return true;
      if (suspected_ && !was_suspected) return false;  // a client just lost the master
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    const absl::Duration slice = std::min(left, absl::Milliseconds(50));
    if (subscribed_ == nullptr) {
      absl::MutexLock lock(&mu_);
      auto wake = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || (suspected_ && !was_suspected);
      };
      mu_.AwaitWithTimeout(absl::Condition(&wake), slice);
      continue;
    }
    pollfd p{subscribed_->fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(slice)) + 1);
    if (n <= 0) continue;
    if (redisBufferRead(subscribed_) != REDIS_OK) {  // the sentinel went: another next time
      redisFree(subscribed_);
      subscribed_ = nullptr;
      continue;
    }
    bool news = false;
    void* reply = nullptr;
    while (redisGetReplyFromReader(subscribed_, &reply) == REDIS_OK && reply != nullptr) {
      const auto* m = static_cast<const redisReply*>(reply);
      // ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]
      if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
          absl::StartsWith(Text(m->element[2]), options_.master_name + " ")) {
        news = true;
      }
      freeReplyObject(reply);
      reply = nullptr;
    }
    if (news) return false;
  }
}

}  // namespace rwg::core
