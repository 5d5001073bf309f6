// provisioning: the HTTPS download server phones fetch their configuration from (R-PROV).
#include <sys/resource.h>

#include "services/core/log.h"
#include "services/core/service_main.h"
#include "services/core/tls_identity.h"
#include "services/provisioning/config.h"
#include "services/provisioning/fetch_recorder.h"
#include "services/provisioning/server.h"
#include "services/provisioning/state.h"
#include "services/provisioning/store_service.h"

namespace {

using namespace rwg;

absl::Status Run(core::ServiceMain& m, const provisioning::Config& c) {
  // Every connection is a descriptor: take what the hard limit allows.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  const provisioning::ServerOptions o = c.Server();
  absl::StatusOr<std::string> api_token = core::ReadTokenFile("api-token-file", c.api_token_file);
  if (!api_token.ok()) return api_token.status();
  absl::StatusOr<core::AtRestKey> key =
      core::LoadAtRestKey(m.common().secret_key_file, core::Random::System());
  if (!key.ok()) return key.status();
  absl::StatusOr<core::RedisOptions> ro = core::RedisOptionsFrom(m.common(), &m.host().registry());
  if (!ro.ok()) return ro.status();
  core::RedisClient redis(*ro);
  // Phones' fetches of their <MAC>.cfg, written by the state's thread.
  provisioning::FetchRecorder fetches(redis, core::SystemClock::Get(), m.host().registry());
  provisioning::SharedState state(redis, *key->box, core::SystemClock::Get(), c.instance,
                                  provisioning::SharedState::kMaxBans, &fetches);
  // Without the hash every request would be a miss: wait for Redis rather than serve 404s.
  absl::Status ready = state.Start(absl::Seconds(1));
  if (!ready.ok()) {
    core::log::Warn("hash key not read yet; retrying every second",
                    {{"error", std::string(ready.message())}});
  }
  if (o.xml_insecure_skip_verify) {
    core::log::Warn(
        "the iPBX's XML port is not verified (--xml-insecure-skip-verify): anyone on the path "
        "can impersonate the iPBX to phones",
        {});
  }
  provisioning::ProvisioningServer https(o, state, core::SystemClock::Get(), m.host().registry());
  // Exit code 2, as a bad option: the certificate, the key or the store is unusable.
  if (absl::Status s = https.Start(); !s.ok()) return absl::InvalidArgumentError(s.message());
  provisioning::StoreServiceImpl store(o.store_dir, *api_token, core::Random::System(),
                                       c.max_file_bytes());
  if (absl::Status s = m.Start({&store}); !s.ok()) return s;
  core::log::Info("provisioning ready", {{"listen", o.listen},
                                         {"port", std::to_string(https.port())},
                                         {"store", o.store_dir},
                                         {"threads", std::to_string(o.threads)}});
  m.host().WatchHealth([&state]() { return state.last_status().ok(); });
  m.host().WaitForTermination();
  https.Stop();
  state.Stop();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  core::ServiceMain m("provisioning", "rwg provisioning: phones' configuration over HTTPS",
                      "127.0.0.1:50054", "127.0.0.1:9464");
  provisioning::Config config;
  m.common().RegisterRedis(m.options());
  m.common().RegisterSecretKey(m.options(), "key that opens the hash key kept by control");
  config.Register(m.options());
  return m.Main(
      argc, argv, [&] { return config.Validate(); }, [&] { return Run(m, config); });
}
