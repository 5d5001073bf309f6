#include "services/core/random.h"

#include <openssl/rand.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "services/core/clock.h"

namespace rwg::core {
namespace {

class OpenSslRandom final : public Random {
 public:
  std::string Bytes(size_t n) override {
    std::string out(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
      // A CSPRNG that cannot produce bytes leaves nothing safe to do.
      std::abort();
    }
    return out;
  }
};

}  // namespace

Clock& SystemClock::Get() {
  static SystemClock clock;
  return clock;
}

Random& Random::System() {
  static OpenSslRandom rng;
  return rng;
}

std::string RandomHex(Random& rng, size_t n) { return absl::BytesToHexString(rng.Bytes(n)); }

std::string RandomPassword(Random& rng, size_t length) {
  // No 0/O, 1/l/I: passwords are sometimes read aloud or typed on a phone keypad.
  static constexpr char kAlphabet[] = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
  constexpr size_t kSize = sizeof(kAlphabet) - 1;
  std::string out;
  out.reserve(length);
  while (out.size() < length) {
    for (unsigned char b : rng.Bytes(length)) {
      // Rejection sampling keeps every character equally likely.
      if (b >= 256 - (256 % kSize)) continue;
      out.push_back(kAlphabet[b % kSize]);
      if (out.size() == length) break;
    }
  }
  return out;
}

}  // namespace rwg::core
