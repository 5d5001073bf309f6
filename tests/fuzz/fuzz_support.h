// Shared by the libFuzzer harnesses of tests/fuzz: deterministic stand-ins for the injected
// randomness, and a check that aborts with a message (a property broken is a finding, as a
// crash is).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "services/core/random.h"

namespace rwg::fuzz {

// Always the same bytes: runs must be reproducible from their input alone.
class FixedRandom final : public core::Random {
 public:
  std::string Bytes(size_t n) override { return std::string(n, '\x5a'); }
};

[[noreturn]] inline void Fail(const char* harness, const char* what) {
  std::fprintf(stderr, "%s: property broken: %s\n", harness, what);
  std::abort();
}

}  // namespace rwg::fuzz

#define RWG_FUZZ_CHECK(harness, cond)               \
  do {                                              \
    if (!(cond)) ::rwg::fuzz::Fail(harness, #cond); \
  } while (0)
