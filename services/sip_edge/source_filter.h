// Banned sources dropped before anything reads their packets: a classic BPF socket filter on
// the set-side listening sockets makes the kernel discard the connection attempts (SYNs) of
// banned IPv4 and IPv6 addresses, so a banned source never gets a connection, let alone a
// parser. Connections a source already had when its ban began are shut down. Addresses beyond
// kMaxAddresses / kMaxAddresses6 stay with the check after parsing.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rwg::sip_edge {

// Makes `fd` (a listening TCP socket, whose accepted connections inherit it) find dead peers:
// keep-alive probes after `idle_seconds` of silence, every 10 s, 3 of them; and the same
// bound (idle + 30 s) on data left unacknowledged (TCP_USER_TIMEOUT).
absl::Status SetDeadPeerDetection(int fd, int idle_seconds);

class SourceFilter {
 public:
  // BPF allows 4096 instructions: 2 per IPv4 address, 9 per IPv6 address.
  static constexpr size_t kMaxAddresses = 1500;
  static constexpr size_t kMaxAddresses6 = 100;

  // This process's listening TCP sockets bound to one of `ports`.
  static std::vector<int> FindListeners(const std::vector<int>& ports);
  // This process's UDP sockets bound to one of `ports` (a filter on them drops the banned
  // sources' datagrams before they are read).
  static std::vector<int> FindDatagramSockets(const std::vector<int>& ports);

  explicit SourceFilter(std::vector<int> fds) : fds_(std::move(fds)) {}

  // Replaces the filter on every socket; an empty list removes it. Established connections
  // from addresses new to the list (accepted by these listeners) are shut down. Returns how
  // many addresses the kernel now drops.
  absl::StatusOr<size_t> Set(const std::vector<std::string>& ips);

  // Shuts down this process's TCP connections accepted on `ports` from any of `sources`
  // (addresses or IPv6 /64s), in one pass over its sockets; returns how many.
  static size_t ShutdownConnections(const std::vector<int>& ports,
                                    const std::vector<std::string>& sources);

  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
  std::vector<uint32_t> applied_;
  std::vector<std::array<uint32_t, 5>> applied6_;  // four words, then 1 for a /64
};

}  // namespace rwg::sip_edge
