#include "services/core/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace rwg::core {

std::string SourceKey(absl::string_view ip) {
  std::string text(ip);
  in6_addr a6{};
  if (::inet_pton(AF_INET6, text.c_str(), &a6) != 1) return text;  // IPv4, or not an address
  char buf[INET6_ADDRSTRLEN] = {};
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    ::inet_ntop(AF_INET, &a6.s6_addr[12], buf, sizeof(buf));
    return buf;
  }
  std::memset(&a6.s6_addr[8], 0, 8);
  ::inet_ntop(AF_INET6, &a6, buf, sizeof(buf));
  return absl::StrCat(buf, "/64");
}

}  // namespace rwg::core
