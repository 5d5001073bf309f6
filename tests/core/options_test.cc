#include "services/core/options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

namespace rwg::core {
namespace {

using ::testing::HasSubstr;

struct Parsed {
  std::string redis = "default";
  int ttl = 1;
  absl::Status status;
};

Parsed ParseWith(std::vector<std::string> args) {
  Parsed p;
  Options o("svc", "test");
  o.Add("redis-address", p.redis, "");
  o.Add("token-ttl-seconds", p.ttl, "");
  args.insert(args.begin(), "svc");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int code = 0;
  p.status = o.Parse(static_cast<int>(argv.size()), argv.data(), &code);
  return p;
}

TEST(OptionsTest, FlagBeatsEnvBeatsFileBeatsDefault) {
  std::string path = ::testing::TempDir() + "/svc.yaml";
  std::ofstream(path) << "redis-address: from-file:1\ntoken-ttl-seconds: 77\n";
  unsetenv("RWG_REDIS_ADDRESS");
  Parsed p = ParseWith({"--config", path});
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.redis, "from-file:1");
  EXPECT_EQ(p.ttl, 77);

  setenv("RWG_REDIS_ADDRESS", "from-env:2", 1);
  p = ParseWith({"--config", path});
  EXPECT_EQ(p.redis, "from-env:2");
  p = ParseWith({"--config", path, "--redis-address", "from-flag:3"});
  EXPECT_EQ(p.redis, "from-flag:3");
  unsetenv("RWG_REDIS_ADDRESS");
  EXPECT_EQ(ParseWith({}).redis, "default");
}

TEST(OptionsTest, UnknownYamlKeyIsAnError) {
  std::string path = ::testing::TempDir() + "/bad.yaml";
  std::ofstream(path) << "redis-adress: typo:1\n";
  Parsed p = ParseWith({"--config", path});
  EXPECT_EQ(p.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status.message(), HasSubstr("redis-adress"));
}

TEST(OptionsTest, BadValueNamesTheOption) {
  Parsed p = ParseWith({"--token-ttl-seconds", "soon"});
  EXPECT_EQ(p.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status.message(), HasSubstr("token-ttl-seconds"));
}

TEST(OptionsTest, EnvNameMapping) {
  EXPECT_EQ(Options::EnvName("redis-address"), "RWG_REDIS_ADDRESS");
}

}  // namespace
}  // namespace rwg::core
