#include "services/sip_edge/source_filter.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace rwg::sip_edge {
namespace {

int LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return -1;
}

// A socket of this process: its type and whether it listens.
struct OwnSocket {
  int fd;
  int type;  // SOCK_STREAM, SOCK_DGRAM, ...
  bool listening;
};

// Every socket this process has open, found through /proc/self/fd.
std::vector<OwnSocket> OwnSockets() {
  std::vector<OwnSocket> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    int fd = 0;
    if (!absl::SimpleAtoi(e->d_name, &fd) || fd == dirfd(dir)) continue;
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    int type = 0, listening = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) continue;
    len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) listening = 0;
    out.push_back({fd, type, listening == 1});
  }
  closedir(dir);
  std::sort(out.begin(), out.end(),
            [](const OwnSocket& a, const OwnSocket& b) { return a.fd < b.fd; });
  return out;
}

bool OnPort(int fd, const std::vector<int>& ports) {
  return std::find(ports.begin(), ports.end(), LocalPort(fd)) != ports.end();
}

}  // namespace

std::vector<int> SourceFilter::FindDatagramSockets(const std::vector<int>& ports) {
  std::vector<int> out;
  if (ports.empty()) return out;
  for (const OwnSocket& s : OwnSockets()) {
    if (s.type == SOCK_DGRAM && OnPort(s.fd, ports)) out.push_back(s.fd);
  }
  return out;
}

std::vector<int> SourceFilter::FindListeners(const std::vector<int>& ports) {
  std::vector<int> out;
  for (const OwnSocket& s : OwnSockets()) {
    if (s.type == SOCK_STREAM && s.listening && OnPort(s.fd, ports)) out.push_back(s.fd);
  }
  return out;
}

namespace {

// An address in the form the filter compares: IPv4 as one word, IPv6 as four (both in host
// order); an IPv4-mapped IPv6 address counts as IPv4.
struct Parsed {
  bool v4 = false;
  bool v6 = false;
  uint32_t a4 = 0;
  std::array<uint32_t, 4> a6{};
  bool prefix64 = false;  // "x::/64": only the first two words count
};

// The i-th 32-bit word of an IPv6 address, in host order.
uint32_t Word(const in6_addr& a, int i) {
  uint32_t w;
  std::memcpy(&w, &a.s6_addr[static_cast<size_t>(i) * 4], 4);
  return ntohl(w);
}

Parsed FromIn6(const in6_addr& a6, bool prefix64) {
  Parsed out;
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    if (!prefix64) {
      out.v4 = true;
      out.a4 = Word(a6, 3);
    }
    return out;
  }
  out.v6 = true;
  out.prefix64 = prefix64;
  for (int i = 0; i < (prefix64 ? 2 : 4); ++i) out.a6[i] = Word(a6, i);
  return out;
}

// An address ("192.0.2.7", "2001:db8::1") or an IPv6 /64 ("2001:db8:1:2::/64").
Parsed ParseIp(const std::string& text) {
  absl::string_view ip = text;
  const bool prefix64 = absl::ConsumeSuffix(&ip, "/64");
  const std::string host(ip);
  in_addr a{};
  in6_addr a6{};
  if (!prefix64 && inet_pton(AF_INET, host.c_str(), &a) == 1) {
    Parsed out;
    out.v4 = true;
    out.a4 = ntohl(a.s_addr);
    return out;
  }
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) return FromIn6(a6, prefix64);
  return {};
}

Parsed PeerOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  if (ss.ss_family == AF_INET6) {
    return FromIn6(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, false);
  }
  Parsed out;
  if (ss.ss_family == AF_INET) {
    out.v4 = true;
    out.a4 = ntohl(reinterpret_cast<sockaddr_in*>(&ss)->sin_addr.s_addr);
  }
  return out;
}

// Whether the peer `a` is the banned source `b` (an address or a /64).
bool Same(const Parsed& a, const Parsed& b) {
  if (a.v4 && b.v4) return a.a4 == b.a4;
  if (!a.v6 || !b.v6) return false;
  return b.prefix64 ? a.a6[0] == b.a6[0] && a.a6[1] == b.a6[1] : a.a6 == b.a6;
}

// The key the IPv6 list is kept in: the words, then whether only the first two count.
std::array<uint32_t, 5> Key6(const Parsed& p) {
  return {p.a6[0], p.a6[1], p.a6[2], p.a6[3], p.prefix64 ? 1u : 0u};
}

}  // namespace

absl::Status SetDeadPeerDetection(int fd, int idle_seconds) {
  const int on = 1, interval = 10, probes = 3;
  const unsigned int user_timeout_ms =
      static_cast<unsigned int>(idle_seconds + interval * probes) * 1000u;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_seconds, sizeof(idle_seconds)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms)) !=
          0) {
    return absl::InternalError(absl::StrCat("TCP keep-alive: ", strerror(errno)));
  }
  return absl::OkStatus();
}

size_t SourceFilter::ShutdownConnections(const std::vector<int>& ports,
                                         const std::vector<std::string>& sources) {
  std::vector<Parsed> banned;
  for (const std::string& ip : sources) {
    Parsed p = ParseIp(ip);
    if (p.v4 || p.v6) banned.push_back(p);
  }
  if (banned.empty()) return 0;
  size_t n = 0;
  for (const OwnSocket& s : OwnSockets()) {
    if (s.type != SOCK_STREAM || s.listening || !OnPort(s.fd, ports)) continue;
    const Parsed peer = PeerOf(s.fd);
    const bool hit =
        std::any_of(banned.begin(), banned.end(), [&](const Parsed& b) { return Same(peer, b); });
    // The owner of the descriptor sees the end of the stream and closes it.
    if (hit && shutdown(s.fd, SHUT_RDWR) == 0) ++n;
  }
  return n;
}

absl::StatusOr<size_t> SourceFilter::Set(const std::vector<std::string>& ips) {
  std::vector<uint32_t> v4;
  std::vector<std::array<uint32_t, 5>> v6;
  std::vector<std::string> fresh;  // not under the filter yet
  for (const std::string& ip : ips) {
    Parsed p = ParseIp(ip);
    if (p.v4) v4.push_back(p.a4);
    if (p.v6) v6.push_back(Key6(p));
    if ((p.v4 && !std::binary_search(applied_.begin(), applied_.end(), p.a4)) ||
        (p.v6 && !std::binary_search(applied6_.begin(), applied6_.end(), Key6(p)))) {
      fresh.push_back(ip);
    }
  }
  std::sort(v4.begin(), v4.end());
  v4.erase(std::unique(v4.begin(), v4.end()), v4.end());
  if (v4.size() > kMaxAddresses) v4.resize(kMaxAddresses);
  std::sort(v6.begin(), v6.end());
  v6.erase(std::unique(v6.begin(), v6.end()), v6.end());
  if (v6.size() > kMaxAddresses6) v6.resize(kMaxAddresses6);
  if (v4 == applied_ && v6 == applied6_) return v4.size() + v6.size();

  // Connections opened before the ban: the filter only sees new ones.
  if (!fresh.empty()) {
    std::vector<int> ports;
    for (int fd : fds_) ports.push_back(LocalPort(fd));
    ShutdownConnections(ports, fresh);
  }

  if (v4.empty() && v6.empty()) {
    int unused = 0;  // the kernel wants an int-sized argument even here
    for (int fd : fds_) {
      if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused)) != 0 &&
          errno != ENOENT) {
        return absl::InternalError(absl::StrCat("removing the source filter: ", strerror(errno)));
      }
    }
    applied_.clear();
    applied6_.clear();
    return size_t{0};
  }
  // The IP version decides which list the source is compared with; a match drops the packet,
  // anything else is accepted.
  constexpr uint32_t kAccept = 0xffffffffu;
  const auto net = [](uint32_t off) { return static_cast<uint32_t>(SKF_NET_OFF) + off; };
  std::vector<sock_filter> prog;
  prog.reserve(9 + 2 * v4.size() + 9 * v6.size());
  prog.push_back(BPF_STMT(BPF_LD | BPF_B | BPF_ABS, net(0)));
  prog.push_back(BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0));
  prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x40, 0, 1));
  const size_t to_v4 = prog.size();
  prog.push_back(BPF_STMT(BPF_JMP | BPF_JA, 0));  // to the IPv4 list (set below)
  prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x60, 0, 1));
  const size_t to_v6 = prog.size();
  prog.push_back(BPF_STMT(BPF_JMP | BPF_JA, 0));  // to the IPv6 list (set below)
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, kAccept));
  prog[to_v4].k = static_cast<uint32_t>(prog.size() - to_v4 - 1);
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, net(12)));
  for (uint32_t a : v4) {
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, a, 0, 1));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, 0));
  }
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, kAccept));
  prog[to_v6].k = static_cast<uint32_t>(prog.size() - to_v6 - 1);
  for (const auto& a : v6) {
    // Source address at offset 8 of the IPv6 header; a word that differs skips to the next
    // entry. A /64 compares the first two words only.
    const uint32_t words = a[4] ? 2 : 4;
    for (uint32_t i = 0; i < words; ++i) {
      prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, net(8 + 4 * i)));
      prog.push_back(
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, a[i], 0, static_cast<uint8_t>(2 * (words - i) - 1)));
    }
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, 0));
  }
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, kAccept));
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
  for (int fd : fds_) {
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)) != 0) {
      return absl::InternalError(absl::StrCat("installing the source filter: ", strerror(errno)));
    }
  }
  applied_ = std::move(v4);
  applied6_ = std::move(v6);
  return applied_.size() + applied6_.size();
}

}  // namespace rwg::sip_edge
