#include "services/sip_edge/source_filter.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

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

bool IsListeningTcp(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  int type = 0, listening = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof(listening);
  return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening == 1;
}

}  // namespace

std::vector<int> SourceFilter::FindListeners(const std::vector<int>& ports) {
  std::vector<int> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    int fd = 0;
    if (!absl::SimpleAtoi(e->d_name, &fd) || fd == dirfd(dir)) continue;
    if (!IsListeningTcp(fd)) continue;
    if (std::find(ports.begin(), ports.end(), LocalPort(fd)) != ports.end()) out.push_back(fd);
  }
  closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<size_t> SourceFilter::Set(const std::vector<std::string>& ips) {
  std::vector<uint32_t> v4;
  for (const std::string& ip : ips) {
    in_addr a{};
    if (inet_pton(AF_INET, ip.c_str(), &a) == 1) v4.push_back(ntohl(a.s_addr));
  }
  std::sort(v4.begin(), v4.end());
  v4.erase(std::unique(v4.begin(), v4.end()), v4.end());
  if (v4.size() > kMaxAddresses) v4.resize(kMaxAddresses);
  if (v4 == applied_) return v4.size();

  if (v4.empty()) {
    int unused = 0;  // the kernel wants an int-sized argument even here
    for (int fd : fds_) {
      if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused)) != 0 &&
          errno != ENOENT) {
        return absl::InternalError(absl::StrCat("removing the source filter: ", strerror(errno)));
      }
    }
    applied_.clear();
    return size_t{0};
  }
  // Not IPv4: accept. IPv4: drop when the source equals a banned address, else accept.
  constexpr uint32_t kAccept = 0xffffffffu;
  std::vector<sock_filter> prog;
  prog.reserve(5 + 2 * v4.size());
  prog.push_back(BPF_STMT(BPF_LD | BPF_B | BPF_ABS, static_cast<uint32_t>(SKF_NET_OFF)));
  prog.push_back(BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0));
  prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x40, 1, 0));
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, kAccept));
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_NET_OFF + 12)));
  for (uint32_t a : v4) {
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, a, 0, 1));
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
  return applied_.size();
}

}  // namespace rwg::sip_edge
