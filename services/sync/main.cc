// sync: the API the iPBX links to with a three-legged OAuth 1.0a token and keeps its SIP
// devices in step through (R-SYNC, docs/sync-api.md).
#include <thread>

#include "services/core/log.h"
#include "services/core/service_main.h"
#include "services/core/tls_identity.h"
#include "services/sync/api.h"
#include "services/sync/callbacks.h"
#include "services/sync/config.h"
#include "services/sync/http_server.h"

namespace {

using namespace rwg;

absl::Status Run(core::ServiceMain& m, const sync::Config& c) {
  absl::StatusOr<core::AtRestKey> key =
      core::LoadAtRestKey(m.common().secret_key_file, core::Random::System());
  if (!key.ok()) return key.status();
  absl::StatusOr<core::RedisOptions> ro = core::RedisOptionsFrom(m.common(), &m.host().registry());
  if (!ro.ok()) return ro.status();
  core::RedisClient redis(*ro);
  // Every request needs Redis: wait for it rather than answer 503s from the start.
  if (absl::Status s = core::WaitForDependency("waiting for Redis", [&] { return redis.Ping(); });
      !s.ok()) {
    return absl::IsCancelled(s) ? absl::OkStatus() : core::StartError("cannot start", s);
  }
  // Exit code 2, as a bad option: the CA file is unusable.
  absl::StatusOr<std::unique_ptr<sync::CallbackPoster>> poster =
      sync::NewHttpsPoster(c.Callbacks());
  if (!poster.ok()) return poster.status();
  const sync::HttpServerOptions o = c.Server();
  sync::SyncApi api(c.Api(), redis, *key->box, core::SystemClock::Get(), core::Random::System(),
                    m.host().registry());
  sync::HttpServer https(o, api, m.host().registry());
  // Exit code 2, as a bad option: the certificate or the key is unusable.
  if (absl::Status s = https.Start(); !s.ok()) {
    return absl::IsInvalidArgument(s) ? s : core::StartError("cannot start", s);
  }
  api.Start();
  sync::CallbackDeliverer callbacks({}, redis, *key->box, core::SystemClock::Get(),
                                    core::Random::System(), **poster, m.host().registry());
  callbacks.Start();
  if (absl::Status s = m.Start({}); !s.ok()) {
    callbacks.Stop();
    api.Stop();
    https.Stop();
    return s;
  }
  core::log::Info("sync ready", {{"listen", o.listen}, {"port", std::to_string(https.port())}});
  api.RefreshTokenExpiry();
  m.host().WatchHealth([&redis, &api]() {
    static int tick = 0;
    if (++tick % 60 == 0) api.RefreshTokenExpiry();
    return redis.Ping().ok();
  });
  m.host().WaitForTermination();
  callbacks.Stop();
  api.Stop();  // answers the long polls before their connections go
  https.Stop();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  core::ServiceMain m("sync", "rwg sync: the iPBX's OAuth 1.0a API for SIP devices",
                      "127.0.0.1:50055", "127.0.0.1:9465");
  sync::Config config;
  m.common().RegisterRedis(m.options());
  m.common().RegisterSecretKey(m.options(), "key that opens device passwords and the sync secrets");
  config.Register(m.options());
  return m.Main(
      argc, argv, [&] { return config.Validate(); }, [&] { return Run(m, config); });
}
