// Injected randomness: a CSPRNG interface so that generated secrets are testable.
#pragma once

#include <cstddef>
#include <string>

namespace rwg::core {

class Random {
 public:
  virtual ~Random() = default;
  // Fills `n` bytes of cryptographically strong randomness.
  virtual std::string Bytes(size_t n) = 0;
  static Random& System();  // OpenSSL RAND_bytes
};

// `n` random bytes as 2n lower-case hex digits.
std::string RandomHex(Random& rng, size_t n);
// A password of `length` characters from an unambiguous alphanumeric alphabet.
std::string RandomPassword(Random& rng, size_t length);

}  // namespace rwg::core
