// control: the rwg admin API (rwg.admin.v1) with Redis as the system of record.
#include <prometheus/gauge.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "services/control/admin_service.h"
#include "services/control/config.h"
#include "services/control/private_file.h"
#include "services/core/log.h"
#include "services/core/service_main.h"

namespace {

using namespace rwg;

// Errors reading a file an option names end start-up, logged (as always for control).
absl::StatusOr<std::string> ReadSecret(const char* option, const std::string& path) {
  absl::StatusOr<std::string> s = core::ReadSecretFile(option, path);
  if (!s.ok()) return core::LoggedConfigError("cannot read file", s.status());
  return s;
}

// First start: the initial configuration and admin. False while Redis does not answer.
bool Bootstrap(const control::Config& c, control::AdminServiceImpl& service,
               control::Authenticator& auth, const std::string& admin_password) {
  absl::Status s = service.EnsureConfig(c.public_name);
  std::string generated;
  if (s.ok()) s = auth.Bootstrap(c.admin_user, admin_password, &generated);
  if (!s.ok()) {
    core::log::Warn("initial setup waits for Redis", {{"error", std::string(s.message())}});
    return false;
  }
  if (generated.empty()) return true;
  if (c.initial_admin_password_out.empty()) {
    std::cerr << "\n*** rwg control: first admin account '" << c.admin_user
              << "' created with password: " << generated
              << "\n*** (shown once; change it with rwgctl passwd)\n\n";
    return true;
  }
  // Mode 0600 from the start, whatever the umask (private_file.h).
  absl::Status written = control::WritePrivateFile(c.initial_admin_password_out, generated + "\n");
  if (written.ok()) {
    core::log::Info("first admin created; password written to file",
                    {{"user", c.admin_user}, {"path", c.initial_admin_password_out}});
  } else {
    // The account exists now and its password is shown nowhere else (not in the log, which
    // may be collected): say how to start over.
    core::log::Error(
        "first admin created but its password could not be written; remove the account "
        "(redis-cli HDEL rwg:admins <user>) and start again",
        {{"user", c.admin_user}, {"error", std::string(written.message())}});
  }
  return true;
}

absl::Status Run(core::ServiceMain& m, const control::Config& c) {
  absl::StatusOr<core::AtRestKey> key =
      core::LoadAtRestKey(m.common().secret_key_file, core::Random::System());
  if (!key.ok()) return core::LoggedConfigError("secret key unusable", key.status());
  absl::StatusOr<core::RedisOptions> ro = core::RedisOptionsFrom(m.common(), &m.host().registry());
  if (!ro.ok()) return ro.status();
  core::RedisClient redis(*ro);
  control::RedisControlStore store(redis);
  core::ServiceHost& host = m.host();
  control::LoginMetrics login_metrics(host.registry());
  control::Authenticator auth(store, store, core::SystemClock::Get(), core::Random::System(),
                              absl::Seconds(c.token_ttl_seconds), c.login(),
                              [&](control::LoginEvent e) { login_metrics.Count(e); });
  control::AdminServiceImpl service(store, redis, auth, *key->box, core::SystemClock::Get(),
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

  absl::StatusOr<std::string> admin_password =
      ReadSecret("admin-password-file", c.admin_password_file);
  if (!admin_password.ok()) return admin_password.status();
  if (absl::Status s = m.Start({&service}); !s.ok()) return s;

  // Redis may come up after us: serve once it answers and the first start is set up.
  host.SetServing(false);
  std::atomic<bool> stop{false};
  std::thread watcher([&]() {
    bool bootstrapped = false;
    while (!stop.load()) {
      if (!bootstrapped) bootstrapped = Bootstrap(c, service, auth, *admin_password);
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
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  core::ServiceMain m("control", "rwg control: the admin API", "127.0.0.1:50051", "127.0.0.1:9461");
  control::Config config;
  m.common().RegisterRedis(m.options());
  m.common().RegisterSecretKey(
      m.options(), "file with the 256-bit key (64 hex digits) that encrypts secrets at rest");
  config.Register(m.options());
  return m.Main(
      argc, argv, [&] { return config.Validate(); }, [&] { return Run(m, config); });
}
