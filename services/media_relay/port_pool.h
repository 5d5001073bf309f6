// The UDP ports of one media-relay instance (R-MEDIA): a configured range, split into pairs
// (even port RTP, next odd port RTCP). Only allocated pairs have open sockets.
#pragma once

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace rwg::media_relay {

// Two bound, non-blocking UDP sockets.
struct PortPair {
  int port = 0;  // RTP; RTCP is port + 1
  int rtp_fd = -1;
  int rtcp_fd = -1;
};

class PortPool {
 public:
  // [min, max] inclusive; min rounded up to even.
  PortPool(std::string bind_address, int min, int max);

  // The next free pair, bound on the bind address. RESOURCE_EXHAUSTED when none is left
  // (pairs the system will not let rwg bind are skipped).
  absl::StatusOr<PortPair> Acquire();
  // A given pair (restoring a session after a restart).
  absl::StatusOr<PortPair> AcquireExactly(int port);
  // Closes the sockets and gives the pair back.
  void Release(PortPair& pair);

  size_t total_pairs() const { return total_; }
  size_t used_pairs() const;

 private:
  absl::StatusOr<PortPair> Bind(int port);

  const std::string bind_address_;
  const int min_;
  const int max_;
  const size_t total_;
  mutable absl::Mutex mu_;
  std::set<int> used_ ABSL_GUARDED_BY(mu_);
  int next_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rwg::media_relay
