// ott: remote workers reach the iPBX's web applications (User Portal, Web Client, Web Admin)
// through rwg by their usual FQDN (R-OTT, docs/ott.md).
#include <unistd.h>

#include "services/control/auth.h"
#include "services/control/store.h"
#include "services/core/log.h"
#include "services/core/random.h"
#include "services/core/service_main.h"
#include "services/ott/config.h"
#include "services/ott/proxy.h"
#include "services/ott/service.h"
#include "services/ott/state.h"
#include "services/ott/store.h"

namespace {

using namespace rwg;

absl::Status Run(core::ServiceMain& m, const ott::Config& c) {
  absl::StatusOr<core::RedisOptions> ro = core::RedisOptionsFrom(m.common(), &m.host().registry());
  if (!ro.ok()) return ro.status();
  core::RedisClient redis(*ro);
  if (absl::Status s = core::WaitForDependency("waiting for Redis", [&] { return redis.Ping(); });
      !s.ok()) {
    return absl::IsCancelled(s) ? absl::OkStatus() : core::StartError("cannot start", s);
  }
  control::RedisControlStore control(redis);
  control::Authenticator auth(control, control, core::SystemClock::Get(), core::Random::System(),
                              absl::Hours(1));
  ott::OttStore store(redis, core::SystemClock::Get(), core::Random::System());
  ott::CertStore certs(c.cert_dir, &ott::ConfigureServerTls, m.host().registry());
  char host[256] = {};
  // Fails only on a too-long name, which it cuts: the name is a label, the pid tells apart.
  (void)gethostname(host, sizeof(host) - 1);
  ott::OttState state(store, redis, certs, core::SystemClock::Get(),
                      absl::StrCat(host, ":", getpid()), c.State(), m.host().registry());
  if (absl::Status s = state.Start(); !s.ok()) return core::StartError("cannot start", s);
  ott::Proxy proxy(c.Proxy(), state, store, core::SystemClock::Get(), m.host().registry());
  if (absl::Status s = proxy.Start(); !s.ok()) return s;
  ott::OttServiceImpl service(store, certs, auth, m.host().registry());
  if (absl::Status s = m.Start({&service}); !s.ok()) {
    proxy.Stop();
    return s;
  }
  core::log::Info(
      "ott ready",
      {{"https", absl::StrCat(c.listen.substr(0, c.listen.rfind(':')), ":", proxy.port())}});
  m.host().WatchHealth([&state]() { return state.last_status().ok(); });
  // New connections stop at once; requests in flight finish (the gRPC drain runs meanwhile).
  m.host().WaitForTermination([&proxy] { proxy.Stop(); });
  proxy.Stop();
  state.Stop();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  core::ServiceMain m("ott",
                      "rwg ott: the iPBX's web applications for remote workers by their FQDN",
                      "127.0.0.1:50057", "127.0.0.1:9467");
  ott::Config config;
  m.common().RegisterRedis(m.options());
  config.Register(m.options());
  return m.Main(
      argc, argv, [&] { return config.Validate(); }, [&] { return Run(m, config); });
}
