// tma: deploys the phones' configuration files to download servers and keeps the inventory
// of deployed phones (R-TMA, docs/tma.md).
#include <unistd.h>

#include "services/control/auth.h"
#include "services/control/store.h"
#include "services/core/log.h"
#include "services/core/service_main.h"
#include "services/tma/config.h"
#include "services/tma/runner.h"
#include "services/tma/service.h"
#include "services/tma/store.h"
#include "services/tma/target.h"

namespace {

using namespace rwg;

// Every call fails with the same error: a server of kind local while tma has no store.
class RefusingTarget final : public tma::Target {
 public:
  explicit RefusingTarget(absl::Status why) : why_(std::move(why)) {}
  absl::Status Put(const std::string&, std::string_view) override { return why_; }
  absl::StatusOr<std::string> Get(const std::string&) override { return why_; }
  absl::Status Delete(const std::string&) override { return why_; }
  absl::StatusOr<std::vector<tma::RemoteFile>> List() override { return why_; }

 private:
  absl::Status why_;
};

absl::Status Run(core::ServiceMain& m, const tma::Config& c) {
  absl::StatusOr<core::AtRestKey> key =
      core::LoadAtRestKey(m.common().secret_key_file, core::Random::System());
  if (!key.ok()) return key.status();
  absl::StatusOr<core::RedisOptions> ro = core::RedisOptionsFrom(m.common(), &m.host().registry());
  if (!ro.ok()) return ro.status();
  std::string store_token;
  if (!c.store_address.empty()) {
    absl::StatusOr<std::string> t = core::ReadTokenFile("store-token-file", c.store_token_file);
    if (!t.ok()) return t.status();
    store_token = *t;
  }
  core::RedisClient redis(*ro);
  if (absl::Status s = core::WaitForDependency("waiting for Redis", [&] { return redis.Ping(); });
      !s.ok()) {
    return absl::IsCancelled(s) ? absl::OkStatus() : core::StartError("cannot start", s);
  }
  control::RedisControlStore control(redis);
  control::Authenticator auth(control, control, core::SystemClock::Get(), core::Random::System(),
                              absl::Hours(1));
  tma::TargetFactory targets =
      [&c, store_token](const tma::pb::Server& s) -> std::unique_ptr<tma::Target> {
    if (s.kind() == tma::pb::SERVER_KIND_LOCAL) {
      if (c.store_address.empty()) {
        return std::make_unique<RefusingTarget>(absl::FailedPreconditionError(
            "tma has no provisioning store (--store-address) for a server of kind local"));
      }
      tma::StoreTargetOptions o;
      o.address = c.store_address;
      o.token = store_token;
      o.ca_file = c.store_ca_file;
      return tma::NewStoreTarget(o);
    }
    tma::FtpTargetOptions o;
    o.host = s.address();
    o.port = static_cast<int>(s.port() == 0 ? 21 : s.port());
    o.directory = s.directory().empty() ? "/" : s.directory();
    o.login = s.login();
    o.password = s.password();
    o.tls = s.kind() == tma::pb::SERVER_KIND_FTPS;
    o.ca_file = s.ca_file();
    o.connect_timeout = absl::Seconds(c.ftp_connect_timeout_seconds);
    o.transfer_timeout = absl::Seconds(c.ftp_transfer_timeout_seconds);
    return tma::NewFtpTarget(o);
  };
  tma::TmaStore store(redis, *key->box, core::SystemClock::Get());
  tma::RunnerOptions runner_options;
  char host[256] = {};
  // Fails only on a too-long name, which it cuts: the name is a label, the pid tells apart.
  (void)gethostname(host, sizeof(host) - 1);
  runner_options.owner =
      absl::StrCat(host, ":", getpid(), ":", core::RandomHex(core::Random::System(), 4));
  runner_options.parallel = c.parallel_transfers;
  runner_options.lease = absl::Seconds(c.lease_seconds);
  tma::Runner runner(store, targets, runner_options, m.host().registry());
  tma::ServiceLimits limits;
  limits.max_file_bytes = static_cast<uint64_t>(c.max_file_mib) << 20;
  tma::TmaServiceImpl service(store, runner, targets, control, auth, redis, *key->box,
                              core::SystemClock::Get(), core::Random::System(), m.host().registry(),
                              limits);
  if (absl::Status s = m.Start({&service}); !s.ok()) return s;
  runner.Start();
  core::log::Info("tma ready", {{"owner", runner_options.owner}});
  m.host().WatchHealth([&redis, &service]() {
    static int tick = 0;
    if (++tick % 10 == 1) service.RefreshInventoryGauge();
    return redis.Ping().ok();
  });
  // Watches end at once (the client watches again after the restart); the drain then waits
  // only for calls that finish by themselves.
  m.host().WaitForTermination([&service] { service.Shutdown(); });
  runner.Stop();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  core::ServiceMain m("tma", "rwg tma: deploys the phones' configuration files to download servers",
                      "127.0.0.1:50056", "127.0.0.1:9466");
  tma::Config config;
  m.common().RegisterRedis(m.options());
  m.common().RegisterSecretKey(m.options(),
                               "key that opens the download servers' and the devices' passwords");
  config.Register(m.options());
  return m.Main(
      argc, argv, [&] { return config.Validate(); }, [&] { return Run(m, config); });
}
