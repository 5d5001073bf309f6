// The media relay's control plane (R-MEDIA): sessions allocated from the port pool, spread
// over the packet workers, kept in Redis (addresses, keys sealed with the secret key, SRTP
// rollover counters) so that a restarted instance restores them and media continues. The
// instance advertises itself and its load in Redis once a second for the SIP edge to choose.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "rwg/relay/v1/relay.pb.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/random.h"
#include "services/core/redis.h"
#include "services/media_relay/port_pool.h"
#include "services/media_relay/session.h"
#include "services/media_relay/worker.h"

namespace rwg::media_relay {

namespace relaypb = ::rwg::relay::v1;

inline constexpr int kHousekeepingNice = 10;

struct RelayOptions {
  std::string instance = "media-relay-0";
  std::string bind_address = "0.0.0.0";
  std::string media_address;  // advertised in legs; empty: bind_address
  std::string grpc_address;   // advertised for the SIP edge; empty: not yet (SetGrpcAddress)
  int port_min = 20000;
  int port_max = 31000;
  int workers = 1;
  IoMode io = IoMode::kUring;  // how workers wait for packets
  // Scheduling of the packet workers (a real-time policy or a nice value below 0 needs
  // CAP_SYS_NICE). Housekeeping (idle checks, metrics, persisting, heartbeat) always runs at
  // nice kHousekeepingNice, so that it yields the core to packets.
  core::ThreadScheduling worker_scheduling;
  int max_sessions = 0;  // 0: as many as the pool and the descriptor limit allow
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration orphan_timeout = absl::Hours(1);  // idle this long: deleted by the relay
};

// A session record as the relay keeps it in Redis and Relay::Restore reads it back, parsed
// without ports, sockets, SRTP contexts or the secret key: the keys are still sealed, the SRTP
// state of each leg's streams (at most kTrackedSsrcs each way, the used slots first) is not yet
// applied. DataLoss for a damaged record (not a JSON object, a leg missing, an unknown suite, a
// field of the wrong type, a number out of range, an SRTCP count above the restore limit),
// never an exception.
struct LegRecord {
  int port = 0;
  SrtpSuite suite = SrtpSuite::kNone;
  std::optional<std::string> sealed_local_key, sealed_remote_key;
  Address sdp_rtp, sdp_rtcp, latched_rtp, latched_rtcp;
  std::array<SsrcState, kTrackedSsrcs> in, out;
};
struct SessionRecord {
  std::string call_id;
  absl::Time created;
  std::array<LegRecord, 2> legs;  // set, icp
};
absl::StatusOr<SessionRecord> SessionRecordFromJson(std::string_view json);

struct RelayMetrics;

class Relay {
 public:
  Relay(RelayOptions options, core::RedisClient& redis, const core::SecretBox& box,
        core::Clock& clock, core::Random& rng, prometheus::Registry& registry);
  ~Relay();

  // Starts the workers, restores this instance's sessions from Redis, starts housekeeping.
  absl::Status Start();
  void Stop();

  // How the workers wait for packets (epoll after a fallback from io_uring).
  IoMode io() const { return workers_.empty() ? options_.io : workers_[0]->io(); }

  absl::StatusOr<relaypb::Session> Allocate(const relaypb::AllocateRequest& req);
  absl::StatusOr<relaypb::Session> Update(const relaypb::UpdateRequest& req);
  absl::StatusOr<relaypb::Session> Delete(const std::string& id);
  absl::StatusOr<relaypb::Session> Get(const std::string& id);
  relaypb::ListResponse List();
  uint32_t Drain();

  size_t restored() const { return restored_; }
  // The API address advertised in Redis (known once the gRPC server listens).
  void SetGrpcAddress(const std::string& address);

 private:
  struct Slot;
  absl::Status ApplyLeg(Leg& leg, const relaypb::LegRequest& req, bool initial);
  struct LegChange {
    Leg leg;
    bool inbound = false, outbound = false, address = false;
  };
  absl::Status ApplyUpdate(const Leg& cur, const relaypb::LegUpdate& u, LegChange* next);
  relaypb::Session Snapshot(Session& s);  // on the session's worker
  // The same where the session may be read: on its worker, or before it is attached.
  relaypb::Session SnapshotHere(Session& s);
  // A session's state as kept in Redis, copied where the session may be read: on its worker,
  // or before it is attached to one. Written out (JSON, sealed keys) off the packet path.
  struct LegState {
    int port = 0;
    SrtpSuite suite = SrtpSuite::kNone;
    std::string local_key, remote_key;
    Address sdp_rtp, sdp_rtcp, latched_rtp, latched_rtcp;
    std::array<SsrcState, kTrackedSsrcs> in, out;
  };
  using SessionState = std::array<LegState, 2>;
  static SessionState CopyState(Session& s);
  absl::Status WriteState(const Session& s, const SessionState& state);
  // The Redis commands that save a session's state.
  std::vector<std::vector<std::string>> StateCommands(const Session& s,
                                                      const SessionState& state) const;
  // Saves sessions whose state changed: CopyState on their workers (one hand-over each), then
  // one pipelined round trip. On failure they stay dirty, for the next round.
  absl::Status PersistDirty(const std::vector<Session*>& dirty);
  absl::Status Restore();
  // Ends a session already out of the table (without mu_ held): detaches it, frees its
  // ports, forgets its state, logs; `final`, if given, gets its last snapshot.
  void Finish(std::unique_ptr<Session> s, const char* why, relaypb::Session* final)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Housekeeping();
  void Heartbeat();
  // A Redis write that failed and is not tried again: counted and logged.
  void RedisWriteFailed(const char* what, const std::string& session, const absl::Status& status);
  void CollectMetrics() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CollectMetricsFor(Session& s);
  Worker& LeastLoaded();

  RelayOptions options_;
  core::RedisClient& redis_;
  const core::SecretBox& box_;
  core::Clock& clock_;
  core::Random& rng_;
  std::unique_ptr<RelayMetrics> metrics_;
  PortPool pool_;
  // The session limit was derived from RLIMIT_NOFILE, not given: its refusal says so.
  bool limit_from_descriptors_ = false;
  std::vector<std::unique_ptr<Worker>> workers_;
  absl::Mutex mu_;  // sessions_ and everything that allocates or frees ports
  std::map<std::string, std::unique_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  size_t allocating_ ABSL_GUARDED_BY(mu_) = 0;  // sessions being set up, not yet in sessions_
  std::atomic<bool> draining_{false};
  std::atomic<bool> heartbeat_failing_{false};  // the last heartbeat's write failed
  size_t restored_ = 0;
  std::thread housekeeper_;
  absl::Mutex hk_mu_;
  bool hk_stop_ ABSL_GUARDED_BY(hk_mu_) = false;
  // The API address advertised in Redis (options_.grpc_address, then SetGrpcAddress).
  std::string grpc_address_ ABSL_GUARDED_BY(hk_mu_);
};

}  // namespace rwg::media_relay
