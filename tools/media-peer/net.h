// UDP sockets and addresses for rwg-media-peer: numeric IPv4/IPv6 addresses (as in SDP and in
// the relay API), kernel-chosen ports, and RTP/RTCP port pairs.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::media_peer {

class SocketAddress {
 public:
  SocketAddress() = default;
  // A numeric IPv4 or IPv6 address (no name lookup). INVALID_ARGUMENT naming `host` otherwise.
  static absl::StatusOr<SocketAddress> FromNumeric(absl::string_view host, uint16_t port);
  // Resolves a host name or numeric address (first UDP result).
  static absl::StatusOr<SocketAddress> Resolve(absl::string_view host, uint16_t port);
  static SocketAddress FromSockaddr(const sockaddr* sa, socklen_t len);

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t len() const { return len_; }
  int family() const { return storage_.ss_family; }
  bool valid() const { return len_ != 0; }
  // The address without the port, e.g. "127.0.0.1" or "::1".
  std::string Host() const;
  uint16_t Port() const;
  void SetPort(uint16_t port);
  // 0.0.0.0 or ::.
  bool IsUnspecified() const;
  // "127.0.0.1:4000" or "[::1]:4000".
  std::string ToString() const;
  bool operator==(const SocketAddress& other) const;

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

// "host:port" or "[v6]:port" split into its parts; INVALID_ARGUMENT when malformed.
absl::StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(absl::string_view host_port);

// A bound, non-blocking UDP socket that owns its descriptor.
class UdpSocket {
 public:
  UdpSocket() = default;
  ~UdpSocket();
  UdpSocket(UdpSocket&& other) noexcept;
  UdpSocket& operator=(UdpSocket&& other) noexcept;
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // Binds to `host` (numeric) and `port` (0: the kernel picks one).
  static absl::StatusOr<UdpSocket> Bind(absl::string_view host, uint16_t port);

  int fd() const { return fd_; }
  const SocketAddress& local() const { return local_; }
  // Asks the kernel for a receive timestamp on each datagram (SO_TIMESTAMPNS).
  absl::Status EnableRxTimestamps();

 private:
  int fd_ = -1;
  SocketAddress local_;
};

// An RTP socket and its RTCP socket. The RTCP socket is on the next port when that port was
// free in a few tries, as endpoints usually have it; otherwise on any port.
struct RtpSocketPair {
  UdpSocket rtp;
  UdpSocket rtcp;
  bool rtcp_adjacent() const { return rtcp.local().Port() == rtp.local().Port() + 1; }
};
absl::StatusOr<RtpSocketPair> BindRtpPair(absl::string_view host);

// Raises the open-file limit to at least `needed` descriptors (up to the hard limit).
// RESOURCE_EXHAUSTED saying how many are allowed when that is not enough.
absl::Status EnsureFileLimit(uint64_t needed);

}  // namespace rwg::media_peer
