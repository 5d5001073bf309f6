#include "services/core/service_main.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace rwg::core {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// SIGTERM/SIGINT stay blocked in every thread of this test, as in a service: the tests below
// send them to the process and take them with sigwait/sigtimedwait.
[[maybe_unused]] const bool kSignalsBlocked = (BlockTerminationSignals(), true);

std::string TempFile(const std::string& name, const std::string& contents) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::trunc) << contents;
  return path;
}

// Runs `main`'s option parsing for "svc" with `args`.
struct Parsed {
  std::optional<int> exit_code;
  CommonConfig common;
  std::string own = "default";
};

Parsed ParseWith(std::vector<std::string> args) {
  ServiceMain m("svc", "test", "127.0.0.1:1", "127.0.0.1:2");
  std::string own = "default";
  m.common().RegisterRedis(m.options());
  m.common().RegisterSecretKey(m.options(), "key");
  m.options().Add("own-option", own, "");
  args.insert(args.begin(), "svc");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  Parsed p;
  p.exit_code = m.Parse(static_cast<int>(argv.size()), argv.data());
  p.common = m.common();
  p.own = own;
  return p;
}

TEST(ServiceMainTest, CommonOptionsHaveTheSameNamesAsFlagsAndEnvironment) {
  unsetenv("RWG_REDIS_ADDRESS");
  Parsed p = ParseWith({"--secret-key-file", "k", "--redis-address", "r:1", "--redis-password-file",
                        "pw", "--grpc-listen", "g:3", "--own-option", "x"});
  ASSERT_FALSE(p.exit_code.has_value());
  EXPECT_EQ(p.common.secret_key_file, "k");
  EXPECT_EQ(p.common.redis_address, "r:1");
  EXPECT_EQ(p.common.redis_password_file, "pw");
  EXPECT_EQ(p.common.server.grpc_listen, "g:3");
  EXPECT_EQ(p.common.server.metrics_listen, "127.0.0.1:2");  // the service's default
  EXPECT_EQ(p.own, "x");

  setenv("RWG_REDIS_ADDRESS", "env:6379", 1);
  setenv("RWG_SECRET_KEY_FILE", "env.key", 1);
  p = ParseWith({});
  unsetenv("RWG_REDIS_ADDRESS");
  unsetenv("RWG_SECRET_KEY_FILE");
  ASSERT_FALSE(p.exit_code.has_value());
  EXPECT_EQ(p.common.redis_address, "env:6379");
  EXPECT_EQ(p.common.secret_key_file, "env.key");
}

TEST(ServiceMainTest, YamlFileUsesTheSameNames) {
  std::string path = TempFile("svc.yaml", "redis-address: file:1\nsecret-key-file: f.key\n");
  Parsed p = ParseWith({"--config", path});
  ASSERT_FALSE(p.exit_code.has_value());
  EXPECT_EQ(p.common.redis_address, "file:1");
  EXPECT_EQ(p.common.secret_key_file, "f.key");
}

TEST(ServiceMainTest, BadOptionEndsWithCodeTwoAndHelpWithZero) {
  EXPECT_EQ(ParseWith({}).exit_code, kExitBadConfig);  // secret-key-file is required
  EXPECT_EQ(ParseWith({"--secret-key-file", "k", "--no-such-option"}).exit_code, kExitBadConfig);
  EXPECT_EQ(ParseWith({"--secret-key-file", "k", "--log-level", "loud"}).exit_code, kExitBadConfig);
  testing::internal::CaptureStdout();
  EXPECT_EQ(ParseWith({"--help"}).exit_code, kExitOk);
  EXPECT_THAT(testing::internal::GetCapturedStdout(), HasSubstr("--redis-password-file"));
}

TEST(CommonConfigTest, ValidateNamesTheOption) {
  CommonConfig c;
  // A service without an at-rest key (ott) does not need the file.
  EXPECT_TRUE(c.Validate().ok());
  Options o("svc", "a service");
  c.RegisterSecretKey(o, "key");
  absl::Status s = c.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), StartsWith("secret-key-file: "));
  c.secret_key_file = "k";
  EXPECT_TRUE(c.Validate().ok());
}

TEST(ExitCodeTest, OneConventionForEveryService) {
  EXPECT_EQ(ExitCodeFor("svc", absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor("svc", absl::CancelledError("terminated while waiting")), kExitOk);
  testing::internal::CaptureStderr();
  EXPECT_EQ(ExitCodeFor("svc", OptionError("workers", "between 1 and 256")), kExitBadConfig);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "svc: workers: between 1 and 256\n");
  EXPECT_EQ(ExitCodeFor("svc", absl::UnavailableError("cannot listen")), kExitCannotStart);
  // A start failure is never taken for a bad option, whatever its code.
  absl::Status start = StartError("cannot start SIP", absl::InvalidArgumentError("bad cert"));
  EXPECT_EQ(ExitCodeFor("svc", start), kExitCannotStart);
  EXPECT_EQ(ExitCodeFor("svc", StartError("cannot start", absl::CancelledError("x"))),
            kExitCannotStart);
  EXPECT_EQ(
      ExitCodeFor("svc", LoggedConfigError("secret key unusable", absl::NotFoundError("gone"))),
      kExitBadConfig);
}

TEST(SecretFileTest, TrailingWhitespaceIsNotPartOfTheSecret) {
  EXPECT_EQ(*ReadSecretFile("redis-password-file", TempFile("pw", " s3cret \n\n")), " s3cret");
  EXPECT_EQ(*ReadSecretFile("redis-password-file", ""), "");
}

TEST(SecretFileTest, UnreadableFileNamesTheOptionAndThePath) {
  absl::StatusOr<std::string> s = ReadSecretFile("redis-password-file", "/nonexistent/pw");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.status().message(), "redis-password-file: cannot read /nonexistent/pw");
}

TEST(TokenFileTest, TokenIsStrippedAndLongEnough) {
  EXPECT_EQ(*ReadTokenFile("api-token-file", TempFile("tok", "\n0123456789abcdef\n")),
            "0123456789abcdef");
  absl::StatusOr<std::string> s = ReadTokenFile("api-token-file", TempFile("short", "abc\n"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.status().message(), "api-token-file: the token needs 16 characters or more");
  s = ReadTokenFile("api-token-file", "/nonexistent/tok");
  EXPECT_THAT(std::string(s.status().message()), StartsWith("api-token-file: cannot read"));
}

TEST(AtRestKeyTest, LoadsHexKeyAndRefusesOthers) {
  const std::string hex(64, 'a');
  absl::StatusOr<AtRestKey> key = LoadAtRestKey(TempFile("k.hex", hex + "\n"), Random::System());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->raw, std::string(32, '\xaa'));
  ASSERT_NE(key->box, nullptr);
  key = LoadAtRestKey(TempFile("k.short", "too short"), Random::System());
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("must hold 64 hex digits"));
  key = LoadAtRestKey("/nonexistent/key", Random::System());
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("/nonexistent/key"));
}

TEST(RedisOptionsTest, AddressAndPasswordFromTheCommonOptions) {
  CommonConfig c;
  c.redis_address = "unix:/run/redis.sock";
  c.redis_password_file = TempFile("redis-pw", "pw\n");
  absl::StatusOr<RedisOptions> ro = RedisOptionsFrom(c);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_EQ(ro->address, "unix:/run/redis.sock");
  EXPECT_EQ(ro->password, "pw");
  c.redis_password_file = "/nonexistent/pw";
  EXPECT_THAT(std::string(RedisOptionsFrom(c).status().message()),
              StartsWith("redis-password-file: "));
}

TEST(TlsMaterialTest, ErrorsNameTheOptionOfTheMissingFile) {
  const std::string cert = TempFile("c.pem", "CERT");
  const std::string key = TempFile("k.pem", "KEY");
  absl::StatusOr<TlsMaterial> tls = LoadTlsMaterial("tls-cert-file", cert, "tls-key-file", key);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->cert_pem, "CERT");
  EXPECT_EQ(tls->key_pem, "KEY");
  tls = LoadTlsMaterial("tls-cert-file", cert, "tls-key-file", "/nonexistent/k.pem");
  EXPECT_EQ(tls.status().message(), "tls-key-file: cannot read /nonexistent/k.pem");
  tls = LoadTlsMaterial("sip-tls-cert-file", "", "sip-tls-key-file", key);
  EXPECT_THAT(std::string(tls.status().message()), StartsWith("sip-tls-cert-file: "));
}

TEST(WaitForDependencyTest, RetriesUntilTheDependencyAnswers) {
  int attempts = 0;
  std::vector<absl::Duration> waits;
  WaitOptions o;
  o.interval = absl::Milliseconds(250);
  o.terminated = [&](absl::Duration d) {
    waits.push_back(d);
    return false;
  };
  absl::Status s = WaitForDependency(
      "waiting for test",
      [&] { return ++attempts < 4 ? absl::UnavailableError("down") : absl::OkStatus(); }, o);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(attempts, 4);
  EXPECT_EQ(waits, std::vector<absl::Duration>(3, absl::Milliseconds(250)));
}

TEST(WaitForDependencyTest, ErrorThatIsNotRetryableEndsTheWait) {
  int attempts = 0;
  WaitOptions o;
  o.retryable = [](const absl::Status& s) { return absl::IsUnavailable(s); };
  o.terminated = [](absl::Duration) { return false; };
  absl::Status s = WaitForDependency(
      "waiting for test",
      [&] {
        return ++attempts < 2 ? absl::UnavailableError("down") : absl::DataLossError("broken");
      },
      o);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(attempts, 2);
}

TEST(WaitForDependencyTest, TerminationEndsTheWaitWithCancelled) {
  WaitOptions o;
  o.terminated = [](absl::Duration) { return true; };
  absl::Status s = WaitForDependency(
      "waiting for test", [] { return absl::UnavailableError("down"); }, o);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(ExitCodeFor("svc", s), kExitOk);
}

TEST(SignalTest, TerminationRequestedTakesAPendingSignal) {
  EXPECT_FALSE(TerminationRequested(absl::Milliseconds(1)));
  ASSERT_EQ(kill(getpid(), SIGINT), 0);
  EXPECT_TRUE(TerminationRequested(absl::Seconds(10)));
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  WaitOptions o;  // the real signal wait
  o.interval = absl::Seconds(10);
  absl::Status s = WaitForDependency(
      "waiting for test", [] { return absl::UnavailableError("down"); }, o);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
}

TEST(SignalTest, SigtermDrainsAndRunEndsWithExitCodeZero) {
  ServiceMain m("svc", "test", "127.0.0.1:0", "127.0.0.1:0");
  m.common().RegisterSecretKey(m.options(), "key");
  std::string port_file = ::testing::TempDir() + "/svc.ports";
  std::vector<std::string> args = {"svc",     "--secret-key-file", "k", "--port-file",
                                   port_file, "--drain-seconds",   "1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  bool started = false, drained = false;
  const int code = m.Main(
      static_cast<int>(argv.size()), argv.data(), [] { return absl::OkStatus(); },
      [&] {
        if (absl::Status s = m.Start({}); !s.ok()) return s;
        started = true;
        std::thread([] { kill(getpid(), SIGTERM); }).detach();
        m.host().WaitForTermination();
        drained = true;
        return absl::OkStatus();
      });
  EXPECT_EQ(code, kExitOk);
  EXPECT_TRUE(started);
  EXPECT_TRUE(drained);
  struct stat st {};
  EXPECT_EQ(stat(port_file.c_str(), &st), 0) << "port file written once listening";
}

TEST(SignalTest, ValidationErrorEndsBeforeRunWithCodeTwo) {
  ServiceMain m("svc", "test", "127.0.0.1:0", "127.0.0.1:0");
  m.common().RegisterSecretKey(m.options(), "key");
  std::vector<std::string> args = {"svc", "--secret-key-file", "k"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  bool ran = false;
  testing::internal::CaptureStderr();
  const int code = m.Main(
      static_cast<int>(argv.size()), argv.data(),
      [] { return OptionError("workers", "between 1 and 256"); },
      [&] {
        ran = true;
        return absl::OkStatus();
      });
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "svc: workers: between 1 and 256\n");
  EXPECT_EQ(code, kExitBadConfig);
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace rwg::core
