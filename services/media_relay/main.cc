// media-relay: the SRTP<->RTP media relay (R-MEDIA).
#include <iostream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/core/options.h"
#include "services/core/server.h"
#include "services/core/thread.h"
#include "services/media_relay/relay.h"
#include "services/media_relay/relay_service.h"
#include "services/media_relay/session.h"
#include "services/media_relay/srtp.h"

namespace {

using namespace rwg;

int Fail(const std::string& what) {
  std::cerr << "media-relay: " << what << "\n";
  return 2;
}

int Main(int argc, char** argv) {
  core::BlockTerminationSignals();
  core::ServerFlags server;
  server.grpc_listen = "127.0.0.1:50053";
  server.metrics_listen = "127.0.0.1:9463";
  media_relay::RelayOptions relay;
  relay.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string redis_address = "127.0.0.1:6379";
  std::string redis_password_file, secret_key_file, api_token_file;
  int idle_seconds = 60, orphan_seconds = 3600;
  core::Options opts("media-relay", "rwg media-relay: SRTP<->RTP media relay");
  server.Register(opts);
  opts.Add("redis-address", redis_address, "Redis host:port or unix:/path");
  opts.Add("redis-password-file", redis_password_file, "file holding the Redis password");
  opts.Add("secret-key-file", secret_key_file, "key that seals SRTP keys kept in Redis")
      ->required();
  opts.Add("api-token-file", api_token_file,
           "file holding the token callers present as 'authorization: Bearer <token>'")
      ->required();
  opts.Add("instance", relay.instance, "name of this instance (unique per Redis)");
  opts.Add("bind-address", relay.bind_address, "address the media ports are opened on");
  opts.Add("media-address", relay.media_address,
           "address given to the ends as the relay's (default: bind-address)");
  std::string advertise_grpc;
  opts.Add("advertise-grpc", advertise_grpc,
           "host:port the SIP edge reaches this instance's API at (default: grpc-listen)");
  opts.Add("port-min", relay.port_min, "lowest UDP port of this instance's pool");
  opts.Add("port-max", relay.port_max, "highest UDP port of this instance's pool");
  std::string srtp_engine = "openssl";
  opts.Add("srtp-engine", srtp_engine,
           "SRTP implementation: openssl (rwg's, on OpenSSL) or libsrtp (Debian's libsrtp2 on "
           "NSS, whose cost per packet grows with the number of sessions)");
  std::string pool_part = "1/1";
  opts.Add("pool-part", pool_part,
           "i/n: this instance uses the i-th of n equal parts of port-min..port-max, so that "
           "instances sharing an address get disjoint ports (e.g. a StatefulSet ordinal + 1)");
  opts.Add("workers", relay.workers, "packet worker threads (default: one per core)");
  std::string io = "uring";
  opts.Add("io", io,
           "how workers wait for packets: uring (io_uring, batches across sockets; falls back to "
           "epoll where the kernel refuses it) or epoll");
  std::string worker_scheduling = "other";
  opts.Add("worker-scheduling", worker_scheduling,
           "scheduling policy of the packet workers: other (time sharing, --worker-priority is "
           "a nice value -20..19), fifo or rr (real time, --worker-priority 1..99: packets go "
           "ahead of every normal thread on the core). fifo/rr and nice values below 0 need "
           "CAP_SYS_NICE; without it the workers keep the process's scheduling and the log "
           "says so");
  opts.Add("worker-priority", relay.worker_scheduling.priority,
           "nice value (other) or real-time priority (fifo, rr) of the packet workers");
  opts.Add("max-sessions", relay.max_sessions, "session limit (0: what the pool allows)");
  opts.Add("idle-timeout-seconds", idle_seconds, "no packet this long: the session is idle");
  opts.Add("orphan-timeout-seconds", orphan_seconds,
           "idle this long: the relay deletes the session itself");
  int exit_code = 0;
  absl::Status parsed = opts.Parse(argc, argv, &exit_code);
  if (!parsed.ok()) {
    if (exit_code != 0) std::cerr << "media-relay: " << parsed.message() << "\n";
    return exit_code;
  }
  core::log::Init("media-relay", server.log_level);
  relay.idle_timeout = absl::Seconds(idle_seconds);
  relay.orphan_timeout = absl::Seconds(orphan_seconds);
  media_relay::Address probe;
  if (!media_relay::Address::Parse(relay.bind_address, 1, &probe)) {
    return Fail(absl::StrCat("bind-address: '", relay.bind_address, "' is not an IP address"));
  }
  if (relay.port_min < 1024 || relay.port_max > 65535 || relay.port_max < relay.port_min + 1) {
    return Fail(absl::StrCat("port-min/port-max: ", relay.port_min, "-", relay.port_max,
                             " is not a range of at least 2 ports within 1024-65535"));
  }
  if (relay.workers < 1 || relay.workers > 256) return Fail("workers: between 1 and 256");
  absl::StatusOr<core::ThreadScheduling::Policy> policy =
      core::ParseSchedulingPolicy(worker_scheduling);
  if (!policy.ok()) return Fail(absl::StrCat("worker-scheduling: ", policy.status().message()));
  relay.worker_scheduling.policy = *policy;
  if (absl::Status s = relay.worker_scheduling.Validate(); !s.ok()) {
    return Fail(absl::StrCat("worker-priority: ", s.message()));
  }
  absl::StatusOr<media_relay::IoMode> io_mode = media_relay::ParseIoMode(io);
  if (!io_mode.ok()) return Fail(absl::StrCat("io: ", io_mode.status().message()));
  relay.io = *io_mode;
  absl::StatusOr<media_relay::SrtpEngine> engine = media_relay::ParseSrtpEngine(srtp_engine);
  if (!engine.ok()) return Fail(absl::StrCat("srtp-engine: ", engine.status().message()));
  media_relay::SetSrtpEngine(*engine);
  {
    int part = 0, parts = 0;
    std::vector<std::string> p = absl::StrSplit(pool_part, '/');
    if (p.size() != 2 || !absl::SimpleAtoi(p[0], &part) || !absl::SimpleAtoi(p[1], &parts) ||
        parts < 1 || part < 1 || part > parts) {
      return Fail(absl::StrCat("pool-part: '", pool_part, "' is not i/n with 1 <= i <= n"));
    }
    const int pairs = (relay.port_max - relay.port_min + 1) / 2;
    const int per = pairs / parts;
    if (per < 2) return Fail("pool-part: fewer than 2 port pairs per part");
    const int min = relay.port_min + (relay.port_min % 2) + (part - 1) * per * 2;
    relay.port_min = min;
    relay.port_max = min + per * 2 - 1;
  }

  absl::StatusOr<std::string> key = core::SecretBox::LoadKeyFile(secret_key_file);
  if (!key.ok()) return Fail(std::string(key.status().message()));
  absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
      core::SecretBox::Create(*key, core::Random::System());
  if (!box.ok()) return Fail(std::string(box.status().message()));
  absl::StatusOr<std::string> token = core::ReadFile(api_token_file);
  if (!token.ok()) return Fail(absl::StrCat("api-token-file: ", token.status().message()));
  std::string api_token(absl::StripAsciiWhitespace(*token));
  if (api_token.size() < 16) return Fail("api-token-file: the token needs 16 characters or more");

  core::RedisOptions ro;
  ro.address = redis_address;
  // One connection per request thread stays open (the gRPC server keeps up to 16 of them).
  ro.max_idle_connections = 20;
  if (!redis_password_file.empty()) {
    absl::StatusOr<std::string> pw = core::ReadFile(redis_password_file);
    if (!pw.ok()) return Fail(absl::StrCat("redis-password-file: ", pw.status().message()));
    ro.password = std::string(absl::StripTrailingAsciiWhitespace(*pw));
  }
  core::RedisClient redis(ro);

  core::ServiceHost host("media-relay", server);
  media_relay::Relay relay_impl(relay, redis, **box, core::SystemClock::Get(),
                                core::Random::System(), host.registry());
  // Restoring needs Redis: wait for it rather than start without this instance's sessions.
  absl::Status started = relay_impl.Start();
  for (int i = 0; !started.ok() && absl::IsUnavailable(started); ++i) {
    if (i % 10 == 0) {
      core::log::Warn("waiting for Redis to restore sessions",
                      {{"error", std::string(started.message())}});
    }
    relay_impl.Stop();
    if (core::TerminationRequested(absl::Seconds(1))) return 0;
    started = relay_impl.Start();
  }
  if (!started.ok()) {
    core::log::Error("cannot start", {{"error", std::string(started.message())}});
    return 1;
  }
  core::log::Info("media relay ready",
                  {{"instance", relay.instance},
                   {"ports", absl::StrCat(relay.port_min, "-", relay.port_max)},
                   {"workers", std::to_string(relay.workers)},
                   {"worker_scheduling", relay.worker_scheduling.ToString()},
                   {"srtp_engine", srtp_engine},
                   {"io", media_relay::IoModeName(relay_impl.io())},
                   {"restored", std::to_string(relay_impl.restored())}});
  media_relay::RelayServiceImpl service(relay_impl, api_token);
  started = host.Start({&service});
  if (!started.ok()) {
    core::log::Error("cannot start", {{"error", std::string(started.message())}});
    return 1;
  }
  // Advertised only now that the API listens (and, on port 0, its port is known): the SIP
  // edge picks instances from the record and would get no answer before.
  std::string advertised = advertise_grpc;
  if (advertised.empty()) {
    advertised = server.grpc_listen;
    if (absl::EndsWith(advertised, ":0")) {
      advertised = absl::StrCat(advertised.substr(0, advertised.size() - 1), host.grpc_port());
    }
  }
  relay_impl.SetGrpcAddress(advertised);
  host.WatchHealth([&redis] { return redis.Ping().ok(); });
  host.WaitForTermination();
  relay_impl.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
