// control: the rwg admin API (rwg.admin.v1) with Redis as the system of record.
#include <prometheus/gauge.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/control/admin_service.h"
#include "services/control/private_file.h"
#include "services/core/log.h"
#include "services/core/options.h"
#include "services/core/redis.h"
#include "services/core/server.h"

namespace {

using namespace rwg;

struct Flags {
  core::ServerFlags server;
  std::string redis_address = "127.0.0.1:6379";
  std::string redis_password_file;
  std::string secret_key_file;
  std::string admin_user = "admin";
  std::string admin_password_file;
  std::string initial_admin_password_out;
  int token_ttl_seconds = 3600;
  control::LoginLimits login;
  int login_window_seconds = 300;
  int login_lockout_seconds = 300;
  int login_table_size = 10000;
  std::string public_name;
};

std::string ReadSecret(const std::string& path, const char* what) {
  if (path.empty()) return "";
  absl::StatusOr<std::string> s = core::ReadFile(path);
  if (!s.ok()) {
    core::log::Error("cannot read file", {{"option", what}, {"path", path}});
    std::exit(2);
  }
  return std::string(absl::StripTrailingAsciiWhitespace(*s));
}

int Main(int argc, char** argv) {
  core::BlockTerminationSignals();
  Flags f;
  f.server.grpc_listen = "127.0.0.1:50051";
  f.server.metrics_listen = "127.0.0.1:9461";
  core::Options opts("control", "rwg control: the admin API");
  f.server.Register(opts);
  opts.Add("redis-address", f.redis_address, "Redis host:port or unix:/path");
  opts.Add("redis-password-file", f.redis_password_file, "file holding the Redis password");
  opts.Add("secret-key-file", f.secret_key_file,
           "file with the 256-bit key (64 hex digits) that encrypts secrets at rest")
      ->required();
  opts.Add("admin-user", f.admin_user, "name of the first admin account");
  opts.Add("admin-password-file", f.admin_password_file,
           "file with the first admin's password; generated when absent");
  opts.Add("initial-admin-password-out", f.initial_admin_password_out,
           "write a generated first admin password to this file instead of stderr");
  opts.Add("token-ttl-seconds", f.token_ttl_seconds, "lifetime of an admin session token")
      ->check(CLI::Range(60, 86400));
  opts.Add("login-max-concurrent", f.login.max_concurrent,
           "password checks (32 MiB of scrypt each) at once; more are refused at once")
      ->check(CLI::Range(1, 64));
  opts.Add("login-source-failures", f.login.source_failures,
           "failed logins from one address (IPv6: one /64) that lock it out")
      ->check(CLI::Range(1, 1000000));
  opts.Add("login-user-failures", f.login.user_failures,
           "failed logins for one username, from any address, that lock it out")
      ->check(CLI::Range(1, 1000000));
  opts.Add("login-failure-window-seconds", f.login_window_seconds,
           "failures count within this sliding window")
      ->check(CLI::Range(1, 86400));
  opts.Add("login-lockout-seconds", f.login_lockout_seconds,
           "how long a locked-out address or username is refused")
      ->check(CLI::Range(1, 86400));
  opts.Add("login-table-size", f.login_table_size,
           "addresses and usernames tracked each; the least recently failed make room")
      ->check(CLI::Range(1, 10000000));
  opts.Add("public-name", f.public_name, "public host name written into the initial configuration");
  int exit_code = 0;
  absl::Status parsed = opts.Parse(argc, argv, &exit_code);
  if (!parsed.ok()) {
    if (exit_code != 0) std::cerr << "control: " << parsed.message() << "\n";
    return exit_code;
  }
  core::log::Init("control", f.server.log_level);

  absl::StatusOr<std::string> key = core::SecretBox::LoadKeyFile(f.secret_key_file);
  if (!key.ok()) {
    core::log::Error("secret key unusable", {{"error", std::string(key.status().message())}});
    return 2;
  }
  absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
      core::SecretBox::Create(*key, core::Random::System());
  if (!box.ok()) {
    core::log::Error("secret key unusable", {{"error", std::string(box.status().message())}});
    return 2;
  }

  core::RedisOptions ro;
  ro.address = f.redis_address;
  ro.password = ReadSecret(f.redis_password_file, "redis-password-file");
  core::RedisClient redis(ro);
  control::RedisControlStore store(redis);
  core::ServiceHost host("control", f.server);
  control::LoginMetrics login_metrics(host.registry());
  f.login.window = absl::Seconds(f.login_window_seconds);
  f.login.lockout = absl::Seconds(f.login_lockout_seconds);
  f.login.max_entries = static_cast<size_t>(f.login_table_size);
  control::Authenticator auth(store, store, core::SystemClock::Get(), core::Random::System(),
                              absl::Seconds(f.token_ttl_seconds), f.login,
                              [&](control::LoginEvent e) { login_metrics.Count(e); });
  control::AdminServiceImpl service(store, redis, auth, **box, core::SystemClock::Get(),
                                    core::Random::System(), host.registry());

  auto& redis_up = prometheus::BuildGauge()
                       .Name("rwg_control_redis_up")
                       .Help("1 when Redis answers")
                       .Register(host.registry())
                       .Add({});
  auto& tracked = prometheus::BuildGauge()
                      .Name("rwg_control_login_tracked")
                      .Help("Addresses and usernames with recent failed logins, by table")
                      .Register(host.registry());
  auto& tracked_sources = tracked.Add({{"table", "source"}});
  auto& tracked_users = tracked.Add({{"table", "user"}});
  auto& devices = prometheus::BuildGauge()
                      .Name("rwg_control_devices")
                      .Help("SIP devices declared")
                      .Register(host.registry())
                      .Add({});

  // First start: initial configuration and admin. Redis may come up after us; keep trying.
  const std::string admin_password = ReadSecret(f.admin_password_file, "admin-password-file");
  bool bootstrapped = false;
  auto bootstrap = [&]() {
    absl::Status s = service.EnsureConfig(f.public_name);
    std::string generated;
    if (s.ok()) s = auth.Bootstrap(f.admin_user, admin_password, &generated);
    if (!s.ok()) {
      core::log::Warn("initial setup waits for Redis", {{"error", std::string(s.message())}});
      return false;
    }
    if (!generated.empty()) {
      if (!f.initial_admin_password_out.empty()) {
        // Mode 0600 from the start, whatever the umask (private_file.h).
        absl::Status written =
            control::WritePrivateFile(f.initial_admin_password_out, generated + "\n");
        if (written.ok()) {
          core::log::Info("first admin created; password written to file",
                          {{"user", f.admin_user}, {"path", f.initial_admin_password_out}});
        } else {
          // The account exists now and its password is shown nowhere else (not in the log,
          // which may be collected): say how to start over.
          core::log::Error(
              "first admin created but its password could not be written; remove the account "
              "(redis-cli HDEL rwg:admins <user>) and start again",
              {{"user", f.admin_user}, {"error", std::string(written.message())}});
        }
      } else {
        std::cerr << "\n*** rwg control: first admin account '" << f.admin_user
                  << "' created with password: " << generated
                  << "\n*** (shown once; change it with rwgctl passwd)\n\n";
      }
    }
    return true;
  };

  absl::Status started = host.Start({&service});
  if (!started.ok()) {
    core::log::Error("cannot start", {{"error", std::string(started.message())}});
    return 1;
  }

  host.SetServing(false);  // until Redis answers and the first start is set up
  std::atomic<bool> stop{false};
  std::thread watcher([&]() {
    while (!stop.load()) {
      if (!bootstrapped) bootstrapped = bootstrap();
      absl::StatusOr<int64_t> n = store.CountDevices();
      const bool up = n.ok();
      host.SetServing(up && bootstrapped);
      redis_up.Set(up ? 1 : 0);
      tracked_sources.Set(static_cast<double>(auth.guard().sources_tracked()));
      tracked_users.Set(static_cast<double>(auth.guard().users_tracked()));
      if (up) devices.Set(static_cast<double>(*n));
      for (int i = 0; i < 20 && !stop.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });

  host.WaitForTermination();
  stop = true;
  watcher.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
