// The edge's client of the media relays (R-MEDIA): picks the least-loaded instance from the
// instances' heartbeats in Redis (`rwg:relay:instances`) and allocates, updates and deletes
// relay sessions over gRPC (rwg.relay.v1) without blocking the SIP thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/core/clock.h"

namespace rwg::sip_edge {

class AsyncRedis;
class LoopQueue;

// What SDP says about one side's remote end.
struct RelayRemote {
  std::string suite;  // AES_CM_128_HMAC_SHA1_80/_32, or "RTP" for plain RTP
  std::string key;    // the remote end's 30-byte key; empty: plain, or not known yet
  std::string address;
  int port = 0;
  int rtcp_port = 0;  // 0: port + 1
};

// What the relay says about one of its legs: where that side sends, and the key to offer.
struct RelayLocal {
  std::string address;
  int port = 0;
  std::string suite;
  std::string key;
};

struct RelaySession {
  std::string id;
  std::string instance;
  std::string grpc;  // the instance's API address
  RelayLocal set;
  RelayLocal icp;
};

class MediaRelays {
 public:
  using Done = std::function<void(absl::StatusOr<RelaySession>)>;
  virtual ~MediaRelays() = default;
  // `done` runs later, on the SIP thread. Unavailable: no instance can take the session.
  virtual void Allocate(const std::string& call_id, const RelayRemote& set, const RelayRemote& icp,
                        Done done) = 0;
  // Null: that leg stays as it is.
  virtual void Update(const RelaySession& s, const RelayRemote* set, const RelayRemote* icp,
                      bool new_set_key, bool new_icp_key, Done done) = 0;
  // A session its instance cannot be asked to delete now (it is restarting: UNAVAILABLE; no
  // answer in time; too busy: RESOURCE_EXHAUSTED) is asked again by Sweep, until `delete_retry_for`
  // has passed: a restarted instance restores its sessions from Redis, and would otherwise keep
  // this one until it is an orphan.
  virtual void Delete(const RelaySession& s) = 0;
  // Once a second, on the SIP thread: the deletions due again.
  virtual void Sweep() {}
};

struct MediaRelaysOptions {
  std::string token;       // the relays' API bearer token
  std::string ca_file;     // the relays' API CA (PEM); empty: the system's trusted CAs
  bool plaintext = false;  // no TLS (development only)
  absl::Duration timeout = absl::Seconds(2);
  absl::Duration stale_after = absl::Seconds(15);  // heartbeat older: instance ignored
  // How long the instances read from Redis serve new sessions before they are read again
  // (the sessions placed meanwhile are counted on the instances picked).
  absl::Duration refresh = absl::Seconds(1);
  // How long a deletion is tried again (every 2 s, doubling up to 30 s) when the instance
  // cannot be reached.
  absl::Duration delete_retry_for = absl::Minutes(5);
};

struct RelayInstance {
  std::string name;
  std::string grpc;
};
// An instance as its heartbeat describes it.
struct RelayCandidate {
  RelayInstance instance;
  int64_t sessions = 0;
  int64_t ports_free = 0;
};
// The instances new sessions may go to, from HGETALL rwg:relay:instances (field, value
// pairs): fresh, open, with ports left.
std::vector<RelayCandidate> UsableRelays(
    const std::vector<std::pair<std::string, std::string>>& rows, absl::Time now,
    absl::Duration stale_after);
// The least loaded of them (fewest sessions, then most ports free); nullptr when none.
RelayCandidate* LeastLoaded(std::vector<RelayCandidate>& candidates);
// The instance a new session should go to; empty when none is usable.
std::optional<RelayInstance> PickRelay(const std::vector<std::pair<std::string, std::string>>& rows,
                                       absl::Time now, absl::Duration stale_after);

std::unique_ptr<MediaRelays> NewMediaRelays(MediaRelaysOptions options, AsyncRedis& redis,
                                            LoopQueue& loop, core::Clock& clock);

}  // namespace rwg::sip_edge
