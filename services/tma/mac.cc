#include "services/tma/mac.h"

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace rwg::tma {
namespace {

constexpr size_t kDigits = 12;

bool IsSeparator(char c) { return c == ':' || c == '-' || c == '.'; }

// The text as a message may show it: printable ASCII, at most 40 characters.
std::string Shown(absl::string_view text) {
  constexpr size_t kMax = 40;
  if (text.size() > kMax) return absl::StrCat("'", absl::CHexEscape(text.substr(0, kMax)), "...'");
  return absl::StrCat("'", absl::CHexEscape(text), "'");
}

}  // namespace

absl::StatusOr<std::string> NormalizeMac(std::string_view text) {
  const absl::string_view mac =
      absl::StripAsciiWhitespace(absl::string_view(text.data(), text.size()));
  if (mac.empty()) return absl::InvalidArgumentError("the MAC address is empty");

  std::string hex;
  hex.reserve(kDigits);
  char separator = 0;
  std::vector<size_t> group_sizes;  // digits between separators
  size_t group = 0;
  for (size_t i = 0; i < mac.size(); ++i) {
    const char c = mac[i];
    if (IsSeparator(c)) {
      if (separator == 0) {
        separator = c;
      } else if (c != separator) {
        return absl::InvalidArgumentError(
            absl::StrCat("MAC address ", Shown(mac), " mixes the separators '",
                         std::string(1, separator), "' and '", std::string(1, c), "'"));
      }
      group_sizes.push_back(group);
      group = 0;
      continue;
    }
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat("MAC address ", Shown(mac), ": character ",
                                                     i + 1, " (", Shown(mac.substr(i, 1)),
                                                     ") is not a hexadecimal digit"));
    }
    if (hex.size() < kDigits + 1) hex.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
    ++group;
  }
  group_sizes.push_back(group);

  if (hex.size() > kDigits) {
    return absl::InvalidArgumentError(
        absl::StrCat("MAC address ", Shown(mac), " has more than 12 hexadecimal digits"));
  }
  if (hex.size() < kDigits) {
    return absl::InvalidArgumentError(absl::StrCat("MAC address ", Shown(mac), " has ", hex.size(),
                                                   " hexadecimal digits, not 12"));
  }
  if (separator != 0) {
    // Six groups of two ("08:00:a1:b2:c3:d4") or three groups of four ("0800.a1b2.c3d4").
    const size_t want = group_sizes.size() == 6 ? 2 : group_sizes.size() == 3 ? 4 : 0;
    bool placed = want != 0;
    for (size_t g : group_sizes) placed &= g == want;
    if (!placed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MAC address ", Shown(mac),
          ": the separators must split the 12 digits into 6 groups of 2 ", "or 3 groups of 4"));
    }
  }
  if (hex == "000000000000") {
    return absl::InvalidArgumentError("MAC address 000000000000 is not a device's address");
  }
  if (hex == "FFFFFFFFFFFF") {
    return absl::InvalidArgumentError(
        "MAC address FFFFFFFFFFFF is the broadcast address, not a device's");
  }
  // The least significant bit of the first octet marks a group (multicast) address.
  const int first_octet_low =
      absl::ascii_isdigit(static_cast<unsigned char>(hex[1])) ? hex[1] - '0' : hex[1] - 'A' + 10;
  if (first_octet_low & 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("MAC address ", hex, " is a multicast address, not a device's"));
  }
  return hex;
}

}  // namespace rwg::tma
