// A private redis-server for a unit test: started on a Unix socket in a directory of its own
// (no TCP port to collide with another test), no persistence, killed and removed with the
// object. The stores' logic is mostly Lua run by Redis itself, so their unit tests run against
// the real server rather than an imitation of its scripting.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/core/redis.h"

namespace rwg::testing {

class ScratchRedis {
 public:
  // FailedPrecondition when redis-server is not installed or does not answer within 5 s.
  static absl::StatusOr<std::unique_ptr<ScratchRedis>> Start();
  ~ScratchRedis();
  ScratchRedis(const ScratchRedis&) = delete;
  ScratchRedis& operator=(const ScratchRedis&) = delete;

  // "unix:<socket>", for core::RedisOptions::address.
  const std::string& address() const { return address_; }
  core::RedisOptions options() const;
  // A client of its own (the test's; the code under test may have another).
  core::RedisClient& client() { return *client_; }
  // Every key in the database, sorted: what a test checks is left behind.
  absl::StatusOr<std::vector<std::string>> Keys();
  // Stops the server (a test of Redis going away); the directory stays until destruction.
  void Kill();

 private:
  ScratchRedis() = default;

  pid_t pid_ = -1;
  std::string dir_;
  std::string address_;
  std::unique_ptr<core::RedisClient> client_;
};

}  // namespace rwg::testing
