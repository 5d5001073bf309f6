// The instance directory of the SIP edge: each instance advertises itself in Redis (its
// ICP-side address, when it last did) once a second, and learns the others' from there, to
// relay a request to the instance holding a phone and to know an instance that stopped
// advertising itself as dead (its calls are then ended by a survivor, housekeeping.h). The
// requests relayed between instances carry a signed mark (ForwardMarks) so that an instance
// takes from another what it would refuse from anyone but the iPBX.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/clock.h"
#include "services/core/keys.h"
#include "services/core/redis.h"

namespace rwg::sip_edge {

// The Redis hash of the advertisements: instance name -> {"icp": host:port, "seen": unix s}.
// An instance whose advertisement is older is dead.
inline constexpr absl::Duration kInstanceAliveFor = absl::Seconds(15);

struct InstanceAdvert {
  std::string icp;   // where it takes requests from the iPBX and the other instances
  int64_t seen = 0;  // unix seconds of its last advertisement
};

// This instance's advertisement, as stored.
std::string InstanceAdvertJson(const std::string& icp_address, absl::Time now);
// The advertisements of an HGETALL of core::kEdgeInstancesKey (name, value, name, value...); a
// damaged one is left out (that instance is not known).
std::map<std::string, InstanceAdvert> ParseInstanceAdverts(
    const std::vector<core::RedisReply>& hgetall);
// Whether an instance last seen at `seen` is alive at `now`.
bool InstanceAlive(int64_t seen, absl::Time now);

class InstanceDirectory {
 public:
  virtual ~InstanceDirectory() = default;
  // Writes this instance's advertisement (its ICP-side address, now).
  virtual absl::Status Advertise() = 0;
  // Reads every instance's advertisement again; on failure the last ones read stay.
  virtual absl::Status Refresh() = 0;
  // Where `instance` takes requests from the iPBX as of the last Refresh ("" when unknown).
  virtual std::string Address(const std::string& instance) const = 0;
  // Whether `instance` advertised itself within kInstanceAliveFor of `now`, as of the last
  // Refresh (an unknown instance is not).
  virtual bool Alive(const std::string& instance, absl::Time now) const = 0;
};

// The directory in Redis, for `instance` advertising `icp_address`.
std::unique_ptr<InstanceDirectory> NewInstanceDirectory(std::string instance,
                                                        std::string icp_address,
                                                        core::RedisClient& redis,
                                                        core::Clock& clock);

// The mark an instance puts on a request it relays to another (X-Rwg-Forwarded:
// "<instance>;ts=<unix seconds>;sig=<hex>"): its name, when, and an HMAC (the instances'
// shared key) over those and what identifies the request (Call-ID, CSeq, method, From tag:
// RequestIdentity), so that it cannot be made up, moved to another request or kept for later
// (kForwardWindow, and each mark is taken once).
class ForwardMarks {
 public:
  static constexpr char kHeader[] = "X-Rwg-Forwarded";
  // How old (or how far ahead, for clocks apart) a mark may be, and how many marks are
  // remembered to refuse their replays.
  static constexpr absl::Duration kWindow = absl::Seconds(30);
  static constexpr size_t kSeenMax = 65536;

  // `key`: shared by all instances; empty: no mark is accepted.
  ForwardMarks(std::string instance, std::string key, core::Clock& clock);

  // What identifies a request for its mark.
  static std::string RequestIdentity(absl::string_view call_id, uint32_t cseq,
                                     absl::string_view method, absl::string_view from_tag);

  // The header line ("X-Rwg-Forwarded: ...") for the request of `identity`, marked now.
  std::string Mark(absl::string_view identity) const;
  // True when `value` (of an X-Rwg-Forwarded header) is another instance's valid, fresh mark
  // for the request of `identity`, not taken before.
  bool Accept(absl::string_view value, absl::string_view identity);

 private:
  std::string Signature(absl::string_view instance, absl::string_view when,
                        absl::string_view identity) const;

  const std::string instance_;
  const std::string key_;
  core::Clock& clock_;
  absl::Mutex mu_;
  // Marks taken in the last kWindow, and in which order.
  absl::flat_hash_set<std::string> seen_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<absl::Time, std::string>> seen_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::sip_edge
