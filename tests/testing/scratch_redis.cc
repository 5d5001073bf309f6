#include "tests/testing/scratch_redis.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace rwg::testing {

absl::StatusOr<std::unique_ptr<ScratchRedis>> ScratchRedis::Start() {
  std::unique_ptr<ScratchRedis> r(new ScratchRedis());
  const char* tmp = getenv("TMPDIR");
  std::string templ =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/rwg-redis-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("mkdtemp ", templ, " failed"));
  }
  r->dir_ = templ;
  const std::string socket = r->dir_ + "/redis.sock";
  r->address_ = "unix:" + socket;
  const char* argv[] = {
      "redis-server", "--port", "0",     "--unixsocket",  socket.c_str(), "--save",  "",
      "--appendonly", "no",     "--dir", r->dir_.c_str(), "--loglevel",   "warning", nullptr};
  // Its start-up banner and warnings go to its own log, not the test's output.
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  const std::string log = r->dir_ + "/redis.log";
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  const int spawned =
      posix_spawnp(&r->pid_, "redis-server", &files, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&files);
  if (spawned != 0) {
    r->pid_ = -1;
    return absl::FailedPreconditionError("redis-server is not installed (tools/rwg deps)");
  }
  r->client_ = std::make_unique<core::RedisClient>(r->options());
  for (int i = 0; i < 200; ++i) {
    if (r->client_->Ping().ok()) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return absl::FailedPreconditionError("redis-server did not answer within 5 s");
}

core::RedisOptions ScratchRedis::options() const {
  core::RedisOptions o;
  o.address = address_;
  o.connect_timeout = absl::Seconds(1);
  o.command_timeout = absl::Seconds(2);
  return o;
}

absl::StatusOr<std::vector<std::string>> ScratchRedis::Keys() {
  absl::StatusOr<core::RedisReply> r = client_->Command({"KEYS", "*"});
  if (!r.ok()) return r.status();
  std::vector<std::string> keys;
  for (const core::RedisReply& e : r->elements) keys.push_back(e.str);
  std::sort(keys.begin(), keys.end());
  return keys;
}

void ScratchRedis::Kill() {
  if (pid_ <= 0) return;
  // A pooled connection written after this gets EPIPE: the services ignore SIGPIPE
  // (core/server.cc), and so does a test process that kills its Redis.
  signal(SIGPIPE, SIG_IGN);
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

ScratchRedis::~ScratchRedis() {
  client_.reset();
  Kill();
  std::error_code ignored;  // a directory that cannot be removed is left in TMPDIR
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace rwg::testing
