// media-relay: the SRTP<->RTP media relay (R-MEDIA).
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/log.h"
#include "services/core/service_main.h"
#include "services/media_relay/config.h"
#include "services/media_relay/relay.h"
#include "services/media_relay/relay_service.h"
#include "services/media_relay/srtp.h"
#include "services/media_relay/worker.h"

namespace {

using namespace rwg;

absl::Status Run(core::ServiceMain& m, const media_relay::Config& c) {
  absl::StatusOr<media_relay::RelayOptions> relay = c.Relay();
  if (!relay.ok()) return relay.status();
  media_relay::SetSrtpEngine(*c.Engine());
  absl::StatusOr<core::AtRestKey> key =
      core::LoadAtRestKey(m.common().secret_key_file, core::Random::System());
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> api_token = core::ReadTokenFile("api-token-file", c.api_token_file);
  if (!api_token.ok()) return api_token.status();
  absl::StatusOr<core::RedisOptions> ro = core::RedisOptionsFrom(m.common(), &m.host().registry());
  if (!ro.ok()) return ro.status();
  // One connection per request thread stays open (the gRPC server keeps up to 16 of them).
  ro->max_idle_connections = 20;
  core::RedisClient redis(*ro);

  media_relay::Relay relay_impl(*relay, redis, *key->box, core::SystemClock::Get(),
                                core::Random::System(), m.host().registry());
  // Restoring needs Redis: wait for it rather than start without this instance's sessions.
  // First until it answers (the workers are not started for each try), then for the start
  // itself, which stops what it began when Redis goes away half-way.
  core::WaitOptions wait;
  wait.retryable = [](const absl::Status& s) { return absl::IsUnavailable(s); };
  absl::Status reachable = core::WaitForDependency(
      "waiting for Redis to restore sessions", [&] { return redis.Ping(); }, wait);
  if (absl::IsCancelled(reachable)) return reachable;
  if (!reachable.ok()) return core::StartError("cannot reach Redis", reachable);
  absl::Status started = core::WaitForDependency(
      "waiting for Redis to restore sessions",
      [&] {
        absl::Status s = relay_impl.Start();
        if (absl::IsUnavailable(s)) relay_impl.Stop();
        return s;
      },
      wait);
  if (absl::IsCancelled(started)) return started;
  if (!started.ok()) return core::StartError("cannot start", started);
  core::log::Info("media relay ready",
                  {{"instance", relay->instance},
                   {"ports", absl::StrCat(relay->port_min, "-", relay->port_max)},
                   {"workers", std::to_string(relay->workers)},
                   {"worker_scheduling", relay->worker_scheduling.ToString()},
                   {"srtp_engine", c.srtp_engine},
                   {"io", media_relay::IoModeName(relay_impl.io())},
                   {"restored", std::to_string(relay_impl.restored())}});
  media_relay::RelayServiceImpl service(relay_impl, *api_token);
  if (absl::Status s = m.Start({&service}); !s.ok()) return s;
  // Advertised only now that the API listens (and, on port 0, its port is known): the SIP
  // edge picks instances from the record and would get no answer before.
  std::string advertised = c.advertise_grpc;
  if (advertised.empty()) {
    advertised = m.common().server.grpc_listen;
    if (absl::EndsWith(advertised, ":0")) {
      advertised = absl::StrCat(advertised.substr(0, advertised.size() - 1), m.host().grpc_port());
    }
  }
  relay_impl.SetGrpcAddress(advertised);
  m.host().WatchHealth([&redis] { return redis.Ping().ok(); });
  m.host().WaitForTermination();
  relay_impl.Stop();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  core::ServiceMain m("media-relay", "rwg media-relay: SRTP<->RTP media relay", "127.0.0.1:50053",
                      "127.0.0.1:9463");
  media_relay::Config config;
  m.common().RegisterRedis(m.options());
  m.common().RegisterSecretKey(m.options(), "key that seals SRTP keys kept in Redis");
  config.Register(m.options());
  return m.Main(
      argc, argv, [&] { return config.Validate(); }, [&] { return Run(m, config); });
}
