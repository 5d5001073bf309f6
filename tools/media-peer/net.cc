#include "tools/media-peer/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rwg::media_peer {
namespace {

std::string ErrnoText(int err) { return strerror(err); }

}  // namespace

absl::StatusOr<SocketAddress> SocketAddress::FromNumeric(absl::string_view host, uint16_t port) {
  SocketAddress a;
  const std::string h(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len_ = sizeof(sockaddr_in);
    return a;
  }
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len_ = sizeof(sockaddr_in6);
    return a;
  }
  return absl::InvalidArgumentError(absl::StrCat("'", host, "' is not an IPv4 or IPv6 address"));
}

absl::StatusOr<SocketAddress> SocketAddress::Resolve(absl::string_view host, uint16_t port) {
  if (auto numeric = FromNumeric(host, port); numeric.ok()) return numeric;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const std::string h(host);
  if (int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res); rc != 0 || res == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  SocketAddress a = FromSockaddr(res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  a.SetPort(port);
  return a;
}

SocketAddress SocketAddress::FromSockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress a;
  if (len > sizeof(a.storage_)) len = sizeof(a.storage_);
  std::memcpy(&a.storage_, sa, len);
  a.len_ = len;
  return a;
}

std::string SocketAddress::Host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf,
              sizeof(buf));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf,
              sizeof(buf));
  }
  return buf;
}

uint16_t SocketAddress::Port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

void SocketAddress::SetPort(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

bool SocketAddress::IsUnspecified() const {
  if (family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (family() == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
  }
  return true;
}

std::string SocketAddress::ToString() const {
  if (family() == AF_INET6) return absl::StrCat("[", Host(), "]:", Port());
  return absl::StrCat(Host(), ":", Port());
}

bool SocketAddress::operator==(const SocketAddress& other) const {
  if (family() != other.family()) return false;
  if (family() == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&storage_);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&other.storage_);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (family() == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&storage_);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&other.storage_);
    return a->sin6_port == b->sin6_port &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(in6_addr)) == 0;
  }
  return false;
}

absl::StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(absl::string_view host_port) {
  absl::string_view host;
  absl::string_view port;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == absl::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("'", host_port, "' is not host:port ([v6 address]:port for IPv6)"));
    }
    host = host_port.substr(1, close - 1);
    port = host_port.substr(close + 2);
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == absl::string_view::npos ||
        host_port.find(':') != colon) {  // a bare IPv6 address needs brackets
      return absl::InvalidArgumentError(
          absl::StrCat("'", host_port, "' is not host:port ([v6 address]:port for IPv6)"));
    }
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
  }
  uint32_t p = 0;
  if (host.empty() || !absl::SimpleAtoi(port, &p) || p == 0 || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", host_port, "' is not host:port with a port in 1..65535"));
  }
  return std::make_pair(std::string(host), static_cast<uint16_t>(p));
}

UdpSocket::~UdpSocket() {
  if (fd_ >= 0) close(fd_);
}

UdpSocket::UdpSocket(UdpSocket&& other) noexcept : fd_(other.fd_), local_(other.local_) {
  other.fd_ = -1;
}

UdpSocket& UdpSocket::operator=(UdpSocket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    local_ = other.local_;
    other.fd_ = -1;
  }
  return *this;
}

absl::StatusOr<UdpSocket> UdpSocket::Bind(absl::string_view host, uint16_t port) {
  absl::StatusOr<SocketAddress> addr = SocketAddress::FromNumeric(host, port);
  if (!addr.ok()) return addr.status();
  UdpSocket s;
  s.fd_ = socket(addr->family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd_ < 0) {
    const int err = errno;
    if (err == EMFILE || err == ENFILE) {
      return absl::ResourceExhaustedError(absl::StrCat("socket: ", ErrnoText(err)));
    }
    return absl::InternalError(absl::StrCat("socket: ", ErrnoText(err)));
  }
  if (bind(s.fd_, addr->sa(), addr->len()) != 0) {
    const int err = errno;
    return absl::UnavailableError(absl::StrCat("bind ", addr->ToString(), ": ", ErrnoText(err)));
  }
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (getsockname(s.fd_, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    return absl::InternalError(absl::StrCat("getsockname: ", ErrnoText(errno)));
  }
  s.local_ = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&local), len);
  return s;
}

absl::Status UdpSocket::EnableRxTimestamps() {
  int on = 1;
  if (setsockopt(fd_, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0) {
    return absl::InternalError(absl::StrCat("SO_TIMESTAMPNS: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<RtpSocketPair> BindRtpPair(absl::string_view host) {
  constexpr int kTries = 32;
  for (int attempt = 0; attempt < kTries; ++attempt) {
    absl::StatusOr<UdpSocket> rtp = UdpSocket::Bind(host, 0);
    if (!rtp.ok()) return rtp.status();
    const uint16_t port = rtp->local().Port();
    if (port == 65535) continue;
    absl::StatusOr<UdpSocket> rtcp = UdpSocket::Bind(host, port + 1);
    if (rtcp.ok()) return RtpSocketPair{std::move(*rtp), std::move(*rtcp)};
    if (absl::IsResourceExhausted(rtcp.status())) return rtcp.status();
  }
  absl::StatusOr<UdpSocket> rtp = UdpSocket::Bind(host, 0);
  if (!rtp.ok()) return rtp.status();
  absl::StatusOr<UdpSocket> rtcp = UdpSocket::Bind(host, 0);
  if (!rtcp.ok()) return rtcp.status();
  return RtpSocketPair{std::move(*rtp), std::move(*rtcp)};
}

absl::Status EnsureFileLimit(uint64_t needed) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit: ", ErrnoText(errno)));
  }
  if (lim.rlim_cur >= needed) return absl::OkStatus();
  const rlim_t want =
      lim.rlim_max == RLIM_INFINITY ? needed : std::min<rlim_t>(needed, lim.rlim_max);
  lim.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return absl::InternalError(absl::StrCat("setrlimit RLIMIT_NOFILE: ", ErrnoText(errno)));
  }
  if (want < needed) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "need ", needed, " file descriptors, the hard limit allows ", want, " (ulimit -Hn)"));
  }
  return absl::OkStatus();
}

}  // namespace rwg::media_peer
