#include "services/media_relay/config.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/core/service_main.h"
#include "services/core/thread.h"
#include "services/media_relay/session.h"
#include "services/media_relay/worker.h"

namespace rwg::media_relay {

using core::OptionError;

Config::Config() {
  relay.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

void Config::Register(core::Options& o) {
  o.Add("api-token-file", api_token_file,
        "file holding the token callers present as 'authorization: Bearer <token>'")
      ->required();
  o.Add("instance", relay.instance, "name of this instance (unique per Redis)");
  o.Add("bind-address", relay.bind_address, "address the media ports are opened on");
  o.Add("media-address", relay.media_address,
        "address given to the ends as the relay's (default: bind-address)");
  o.Add("advertise-grpc", advertise_grpc,
        "host:port the SIP edge reaches this instance's API at (default: grpc-listen)");
  o.Add("port-min", relay.port_min, "lowest UDP port of this instance's pool");
  o.Add("port-max", relay.port_max, "highest UDP port of this instance's pool");
  o.Add("srtp-engine", srtp_engine,
        "SRTP implementation: openssl (rwg's, on OpenSSL) or libsrtp (Debian's libsrtp2 on "
        "NSS, whose cost per packet grows with the number of sessions)");
  o.Add("pool-part", pool_part,
        "i/n: this instance uses the i-th of n equal parts of port-min..port-max, so that "
        "instances sharing an address get disjoint ports (e.g. a StatefulSet ordinal + 1)");
  o.Add("workers", relay.workers, "packet worker threads (default: one per core)");
  o.Add("io", io,
        "how workers wait for packets: uring (io_uring, batches across sockets; falls back to "
        "epoll where the kernel refuses it) or epoll");
  o.Add("worker-scheduling", worker_scheduling,
        "scheduling policy of the packet workers: other (time sharing, --worker-priority is "
        "a nice value -20..19), fifo or rr (real time, --worker-priority 1..99: packets go "
        "ahead of every normal thread on the core). fifo/rr and nice values below 0 need "
        "CAP_SYS_NICE; without it the workers keep the process's scheduling and the log "
        "says so");
  o.Add("worker-priority", relay.worker_scheduling.priority,
        "nice value (other) or real-time priority (fifo, rr) of the packet workers");
  o.Add("max-sessions", relay.max_sessions,
        "session limit (0: what the pool and the descriptor limit allow)");
  o.Add("idle-timeout-seconds", idle_seconds, "no packet this long: the session is idle");
  o.Add("orphan-timeout-seconds", orphan_seconds,
        "idle this long: the relay deletes the session itself");
}

absl::Status Config::Validate() const { return Relay().status(); }

absl::StatusOr<SrtpEngine> Config::Engine() const {
  absl::StatusOr<SrtpEngine> engine = ParseSrtpEngine(srtp_engine);
  if (!engine.ok()) return OptionError("srtp-engine", engine.status().message());
  return engine;
}

absl::StatusOr<RelayOptions> Config::Relay() const {
  RelayOptions r = relay;
  r.idle_timeout = absl::Seconds(idle_seconds);
  r.orphan_timeout = absl::Seconds(orphan_seconds);
  Address probe;
  if (!Address::Parse(r.bind_address, 1, &probe)) {
    return OptionError("bind-address", absl::StrCat("'", r.bind_address, "' is not an IP address"));
  }
  if (r.port_min < 1024 || r.port_max > 65535 || r.port_max < r.port_min + 1) {
    return OptionError("port-min/port-max",
                       absl::StrCat(r.port_min, "-", r.port_max,
                                    " is not a range of at least 2 ports within 1024-65535"));
  }
  if (r.workers < 1 || r.workers > 256) return OptionError("workers", "between 1 and 256");
  absl::StatusOr<core::ThreadScheduling::Policy> policy =
      core::ParseSchedulingPolicy(worker_scheduling);
  if (!policy.ok()) return OptionError("worker-scheduling", policy.status().message());
  r.worker_scheduling.policy = *policy;
  if (absl::Status s = r.worker_scheduling.Validate(); !s.ok()) {
    return OptionError("worker-priority", s.message());
  }
  absl::StatusOr<IoMode> io_mode = ParseIoMode(io);
  if (!io_mode.ok()) return OptionError("io", io_mode.status().message());
  r.io = *io_mode;
  if (absl::StatusOr<SrtpEngine> engine = Engine(); !engine.ok()) return engine.status();
  int part = 0, parts = 0;
  std::vector<std::string> p = absl::StrSplit(pool_part, '/');
  if (p.size() != 2 || !absl::SimpleAtoi(p[0], &part) || !absl::SimpleAtoi(p[1], &parts) ||
      parts < 1 || part < 1 || part > parts) {
    return OptionError("pool-part", absl::StrCat("'", pool_part, "' is not i/n with 1 <= i <= n"));
  }
  const int pairs = (r.port_max - r.port_min + 1) / 2;
  const int per = pairs / parts;
  if (per < 2) return OptionError("pool-part", "fewer than 2 port pairs per part");
  const int min = r.port_min + (r.port_min % 2) + (part - 1) * per * 2;
  r.port_min = min;
  r.port_max = min + per * 2 - 1;
  return r;
}

}  // namespace rwg::media_relay
