#include "services/media_relay/port_pool.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace rwg::media_relay {
namespace {

int OpenUdp(const std::string& address, int port, std::string* error) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr) == 1) {
    family = AF_INET6;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    *error = absl::StrCat("bind address '", address, "' is not an IP address");
    return -1;
  }
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = strerror(errno);
    // Out of descriptors or memory: no other port would do better.
    return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM ? -2 : -1;
  }
  int size = 1 << 20;  // room for bursts
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    *error = strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

PortPool::PortPool(std::string bind_address, int min, int max)
    : bind_address_(std::move(bind_address)),
      min_(min % 2 == 0 ? min : min + 1),
      max_(max),
      total_(max_ >= min_ + 1 ? static_cast<size_t>((max_ - min_ + 1) / 2) : 0),
      next_(min_) {}

absl::StatusOr<PortPair> PortPool::Bind(int port) {
  std::string error;
  PortPair p;
  p.port = port;
  p.rtp_fd = OpenUdp(bind_address_, port, &error);
  if (p.rtp_fd == -2) return absl::ResourceExhaustedError(absl::StrCat("port ", port, ": ", error));
  if (p.rtp_fd < 0) return absl::UnavailableError(absl::StrCat("port ", port, ": ", error));
  p.rtcp_fd = OpenUdp(bind_address_, port + 1, &error);
  if (p.rtcp_fd < 0) {
    close(p.rtp_fd);
    const std::string why = absl::StrCat("port ", port + 1, ": ", error);
    return p.rtcp_fd == -2 ? absl::ResourceExhaustedError(why) : absl::UnavailableError(why);
  }
  return p;
}

absl::StatusOr<PortPair> PortPool::Acquire() {
  absl::MutexLock lock(&mu_);
  for (size_t tried = 0; tried < total_; ++tried) {
    const int port = next_;
    next_ = next_ + 2 > max_ - 1 ? min_ : next_ + 2;
    if (used_.count(port)) continue;
    absl::StatusOr<PortPair> p = Bind(port);
    if (!p.ok()) {
      // Out of descriptors: every other pair would fail the same way (and trying them all,
      // under the relay's lock, would hold every other request behind this one).
      if (absl::IsInvalidArgument(p.status()) || absl::IsResourceExhausted(p.status())) {
        next_ = port;  // this pair was not tried: the next allocation starts with it
        return p.status();
      }
      continue;  // taken by something else: try the next pair
    }
    used_.insert(port);
    return p;
  }
  return absl::ResourceExhaustedError(absl::StrCat("no free port pair in ", min_, "-", max_));
}

absl::StatusOr<PortPair> PortPool::AcquireExactly(int port) {
  absl::MutexLock lock(&mu_);
  if (port < min_ || port + 1 > max_ || port % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("port ", port, " is not an RTP port of the pool ", min_, "-", max_));
  }
  if (used_.count(port)) return absl::AlreadyExistsError(absl::StrCat("port ", port, " in use"));
  absl::StatusOr<PortPair> p = Bind(port);
  if (p.ok()) used_.insert(port);
  return p;
}

void PortPool::Release(PortPair& pair) {
  if (pair.rtp_fd >= 0) close(pair.rtp_fd);
  if (pair.rtcp_fd >= 0) close(pair.rtcp_fd);
  pair.rtp_fd = pair.rtcp_fd = -1;
  absl::MutexLock lock(&mu_);
  used_.erase(pair.port);
}

size_t PortPool::used_pairs() const {
  absl::MutexLock lock(&mu_);
  return used_.size();
}

}  // namespace rwg::media_relay
