// Banned sources dropped before anything reads their packets: a classic BPF socket filter on
// the set-side listening sockets makes the kernel discard the connection attempts (SYNs) of
// banned IPv4 addresses, so a banned source never gets a connection, let alone a parser.
// IPv6 sources and addresses beyond kMaxAddresses stay with the check after parsing.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rwg::sip_edge {

class SourceFilter {
 public:
  static constexpr size_t kMaxAddresses = 2000;  // 2 instructions each, BPF allows 4096

  // This process's listening TCP sockets bound to one of `ports`.
  static std::vector<int> FindListeners(const std::vector<int>& ports);

  explicit SourceFilter(std::vector<int> fds) : fds_(std::move(fds)) {}

  // Replaces the filter on every socket; an empty list removes it. Returns how many addresses
  // the kernel now drops (IPv4 only, at most kMaxAddresses).
  absl::StatusOr<size_t> Set(const std::vector<std::string>& ips);

  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
  std::vector<uint32_t> applied_;
};

}  // namespace rwg::sip_edge
