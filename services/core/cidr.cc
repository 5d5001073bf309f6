#include "services/core/cidr.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rwg::core {
namespace {

// The address `text` as 4 (IPv4, also for an IPv4-mapped IPv6 address) or 16 bytes.
bool ParseAddress(const std::string& text, bool* v6, std::array<uint8_t, 16>* out) {
  out->fill(0);
  if (text.find('\0') != std::string::npos) return false;  // inet_pton would stop there
  if (inet_pton(AF_INET, text.c_str(), out->data()) == 1) {
    *v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), out->data()) != 1) return false;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(out->data(), kMapped, sizeof(kMapped)) == 0) {
    std::memmove(out->data(), out->data() + 12, 4);
    std::memset(out->data() + 4, 0, 12);
    *v6 = false;
    return true;
  }
  *v6 = true;
  return true;
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int prefix) {
  const int whole = prefix / 8;
  if (std::memcmp(a.data(), b.data(), static_cast<size_t>(whole)) != 0) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[static_cast<size_t>(whole)] & mask) == (b[static_cast<size_t>(whole)] & mask);
}

}  // namespace

absl::StatusOr<Cidr> ParseCidr(absl::string_view text) {
  const size_t slash = text.find('/');
  const std::string address(text.substr(0, slash));
  Cidr c;
  if (!ParseAddress(address, &c.v6, &c.address)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", address, "' is not an IPv4 or IPv6 address"));
  }
  const int bits = c.v6 ? 128 : 32;
  c.prefix = bits;
  if (slash != absl::string_view::npos) {
    const absl::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || !absl::SimpleAtoi(p, &c.prefix) || c.prefix < 0 ||
        c.prefix > bits || p.find_first_not_of("0123456789") != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("'/", p, "' is not a prefix length between 0 and ", bits));
    }
  }
  std::array<uint8_t, 16> host = c.address;
  // Only the network part may be set.
  for (int bit = c.prefix; bit < bits; ++bit) {
    host[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  if (host != c.address) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' has address bits set beyond its /",
                                                   c.prefix, " (the range starts at ",
                                                   Cidr{c.v6, host, c.prefix}.ToString(), ")"));
  }
  return c;
}

std::string Cidr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, address.data(), buf, sizeof(buf));
  return absl::StrCat(buf, "/", prefix);
}

bool CidrContains(const Cidr& range, absl::string_view ip) {
  bool v6 = false;
  std::array<uint8_t, 16> a{};
  if (!ParseAddress(std::string(ip), &v6, &a) || v6 != range.v6) return false;
  return PrefixMatches(a, range.address, range.prefix);
}

}  // namespace rwg::core
