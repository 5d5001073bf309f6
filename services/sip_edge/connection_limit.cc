#include "services/sip_edge/connection_limit.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/sip_edge/guard.h"
#include "services/sip_edge/protection.h"

namespace rwg::sip_edge {
namespace {

using AcceptFn = int (*)(int, sockaddr*, socklen_t*);

struct Accepted {
  std::string source;
  ino_t inode = 0;
};

struct State {
  AcceptFn accept = nullptr;
  absl::Mutex mu;
  std::unordered_set<int> listeners ABSL_GUARDED_BY(mu);
  size_t limit ABSL_GUARDED_BY(mu) = 0;
  prometheus::Counter* refused ABSL_GUARDED_BY(mu) = nullptr;
  // Every connection accepted on the listeners that may still be open, by descriptor (one
  // entry per descriptor number: the map is as large as the process's descriptors at most),
  // and the descriptors by source.
  std::unordered_map<int, Accepted> by_fd ABSL_GUARDED_BY(mu);
  std::unordered_map<std::string, std::vector<int>> by_source ABSL_GUARDED_BY(mu);

  State() {
    accept = reinterpret_cast<AcceptFn>(dlsym(RTLD_NEXT, "accept"));
    if (accept == nullptr) std::abort();  // libc has accept
  }

  static ino_t InodeOf(int fd) {
    struct stat st {};
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
  }

  // A connection the peer closed (CLOSE_WAIT while sofia-sip lets it go) no longer counts.
  static bool Established(int fd) {
    tcp_info info{};
    socklen_t len = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
    return info.tcpi_state == TCP_ESTABLISHED;
  }

  void Forget(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = by_fd.find(fd);
    if (it == by_fd.end()) return;
    auto s = by_source.find(it->second.source);
    if (s != by_source.end()) {
      std::erase(s->second, fd);
      if (s->second.empty()) by_source.erase(s);
    }
    by_fd.erase(it);
  }

  // The connections of `source` still open (those closed since are forgotten).
  size_t Open(const std::string& source) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto s = by_source.find(source);
    if (s == by_source.end()) return 0;
    std::vector<int> gone;
    for (int fd : s->second) {
      const ino_t ino = InodeOf(fd);
      if (ino == 0 || ino != by_fd[fd].inode || !Established(fd)) gone.push_back(fd);
    }
    for (int fd : gone) Forget(fd);
    s = by_source.find(source);
    return s == by_source.end() ? 0 : s->second.size();
  }
};

State& S() {
  static State* state = new State();
  return *state;
}

std::string SourceOf(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof(buf));
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof(buf));
  } else {
    return "";
  }
  return SourceKey(buf);
}

}  // namespace

void SetConnectionLimit(const std::vector<int>& listeners, size_t limit,
                        prometheus::Counter* refused) {
  State& s = S();
  absl::MutexLock lock(&s.mu);
  s.listeners = std::unordered_set<int>(listeners.begin(), listeners.end());
  s.limit = limit;
  s.refused = refused;
  if (limit == 0) {
    s.by_fd.clear();
    s.by_source.clear();
  }
}

size_t CountedConnections(const char* ip) {
  State& s = S();
  absl::MutexLock lock(&s.mu);
  return s.Open(SourceKey(ip));
}

}  // namespace rwg::sip_edge

extern "C" int accept(int listener, sockaddr* addr, socklen_t* addrlen) {
  auto& s = rwg::sip_edge::S();
  {
    absl::MutexLock lock(&s.mu);
    if (s.limit == 0 || s.listeners.count(listener) == 0) {
      return s.accept(listener, addr, addrlen);  // not a set-side listener (or no limit)
    }
  }
  sockaddr_storage own{};
  socklen_t own_len = sizeof(own);
  if (addr == nullptr || addrlen == nullptr) {
    addr = reinterpret_cast<sockaddr*>(&own);
    addrlen = &own_len;
  }
  const socklen_t capacity = *addrlen;
  const int fd = s.accept(listener, addr, addrlen);
  if (fd < 0) return fd;
  // Nothing thrown here (an allocation) unwinds into sofia-sip: the connection is then
  // accepted uncounted.
  return rwg::sip_edge::Guard("accept", fd, [&]() -> int {
    std::string source;
    if (capacity >= sizeof(sockaddr_in6)) source = rwg::sip_edge::SourceOf(addr);
    if (source.empty()) {  // the caller's buffer could not hold the address
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
        source = rwg::sip_edge::SourceOf(reinterpret_cast<sockaddr*>(&peer));
      }
    }
    if (source.empty()) return fd;  // not an IP connection: nothing to count it by
    const int saved_errno = errno;
    absl::MutexLock lock(&s.mu);
    if (s.Open(source) >= s.limit) {
      close(fd);
      if (s.refused != nullptr) s.refused->Increment();
      // sofia-sip reports an accept error unless errno is 0; the next pending connection (if
      // any) is accepted at the next wake-up.
      errno = 0;
      return -1;
    }
    s.Forget(fd);  // the descriptor's former connection (of any source) is gone
    s.by_fd[fd] = {source, rwg::sip_edge::State::InodeOf(fd)};
    s.by_source[source].push_back(fd);
    errno = saved_errno;
    return fd;
  });
}

namespace rwg::sip_edge {

bool ConnectionLimitActive() {
  return dlsym(RTLD_DEFAULT, "accept") == reinterpret_cast<void*>(&::accept);
}

}  // namespace rwg::sip_edge
