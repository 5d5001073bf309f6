// rwg-bench-srtp: nanoseconds per SRTP packet (ProtectRtp, UnprotectRtp of a 172-byte PCMU
// packet) for each SRTP engine, as the number of live contexts in the process grows, as on a
// media relay with one context per direction of each leg.
//
// For each engine and each number of contexts N: N outbound contexts, each with its own key and
// SSRC, protect packets round-robin (a context's first packet, which sets up its stream, is
// not measured); the packets are kept, the outbound contexts destroyed, and N inbound contexts
// unprotect them in the same order (again after an unmeasured first packet each). Each
// measurement runs for about a quarter of a second, and at least kMinOps packets.
//
// Usage: rwg-bench-srtp [N,N,...]   (default 1,1000,2000,4000,10000)
// Prints a table, then "RESULT srtp openssl/libsrtp protect speedup at 4000 contexts=<x>"
// when 4000 was measured.
#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "services/media_relay/srtp.h"

namespace rwg::media_relay {
namespace {

using Clock = std::chrono::steady_clock;
using Direction = SrtpContext::Direction;

constexpr size_t kContextCounts[] = {1, 1000, 2000, 4000, 10000};
constexpr size_t kPacketSize = 172;  // 12-byte RTP header, 20 ms of PCMU
constexpr size_t kBufferSize = kPacketSize + kMaxTrailer;
constexpr size_t kMinOps = 1500;
constexpr size_t kMaxOps = 200000;
constexpr std::chrono::milliseconds kTarget(250);

// OpenSSL's allocations, counted when the process could install the counting functions.
std::atomic<uint64_t> g_openssl_allocs{0};
bool g_counting = false;

void* CountingMalloc(size_t n, const char*, int) {
  g_openssl_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n);
}
void* CountingRealloc(void* p, size_t n, const char*, int) {
  g_openssl_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::realloc(p, n);
}
void CountingFree(void* p, const char*, int) { std::free(p); }

SrtpKey KeyFor(size_t i) {
  std::string master(kKeyMaterialSize, '\0');
  for (size_t b = 0; b < master.size(); ++b) {
    master[b] = static_cast<char>((i * 131 + b * 17 + (i >> 8) * 7) & 0xff);
  }
  return SrtpKey{SrtpSuite::kAesCm128HmacSha1_80, master};
}

uint32_t SsrcFor(size_t i) { return 0x10000000u + static_cast<uint32_t>(i); }

// A PCMU packet of context `i` with sequence number `seq`, in `buf`.
void FillRtp(uint8_t* buf, size_t i, uint16_t seq) {
  const uint32_t ssrc = SsrcFor(i);
  const uint32_t ts = 160u * seq;
  buf[0] = 0x80;
  buf[1] = 0x00;
  buf[2] = static_cast<uint8_t>(seq >> 8);
  buf[3] = static_cast<uint8_t>(seq);
  buf[4] = static_cast<uint8_t>(ts >> 24);
  buf[5] = static_cast<uint8_t>(ts >> 16);
  buf[6] = static_cast<uint8_t>(ts >> 8);
  buf[7] = static_cast<uint8_t>(ts);
  buf[8] = static_cast<uint8_t>(ssrc >> 24);
  buf[9] = static_cast<uint8_t>(ssrc >> 16);
  buf[10] = static_cast<uint8_t>(ssrc >> 8);
  buf[11] = static_cast<uint8_t>(ssrc);
  std::memset(buf + 12, 0xff, kPacketSize - 12);
}

std::vector<std::unique_ptr<SrtpContext>> MakeContexts(SrtpEngine engine, size_t n,
                                                       Direction direction) {
  SetSrtpEngine(engine);
  std::vector<std::unique_ptr<SrtpContext>> contexts;
  contexts.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto ctx = SrtpContext::Create(KeyFor(i), direction);
    if (!ctx.ok()) {
      std::fprintf(stderr, "creating context %zu: %s\n", i, ctx.status().ToString().c_str());
      std::exit(1);
    }
    contexts.push_back(std::move(*ctx));
  }
  return contexts;
}

// Protected packets, back to back, each kBufferSize bytes with its length alongside.
struct Arena {
  std::vector<uint8_t> bytes;
  std::vector<size_t> lens;

  uint8_t* at(size_t k) { return bytes.data() + k * kBufferSize; }
};

void Fail(const char* what, size_t ctx, SrtpResult r) {
  std::fprintf(stderr, "%s on context %zu: %s\n", what, ctx,
               std::string(SrtpResultName(r)).c_str());
  std::exit(1);
}

struct Measurement {
  double protect_ns = 0;
  double unprotect_ns = 0;
  size_t ops = 0;
  double allocs_per_packet = -1;  // -1: not counted
  double setup_s = 0;
  double teardown_s = 0;
};

// Newest first: libsrtp's NSS back end takes time proportional to the contexts created after
// the one it frees, which makes freeing oldest first quadratic.
void Destroy(std::vector<std::unique_ptr<SrtpContext>>& contexts) {
  while (!contexts.empty()) contexts.pop_back();
}

Measurement Measure(SrtpEngine engine, size_t n) {
  Measurement m;
  Arena warmup;
  warmup.bytes.resize(std::min(n, kMaxOps) * kBufferSize);
  warmup.lens.resize(std::min(n, kMaxOps));
  Arena sent;
  sent.bytes.resize(kMaxOps * kBufferSize);
  sent.lens.resize(kMaxOps);
  alignas(8) uint8_t buf[kBufferSize];

  auto setup_start = Clock::now();
  auto out = MakeContexts(engine, n, Direction::kOutbound);
  m.setup_s = std::chrono::duration<double>(Clock::now() - setup_start).count();

  // Round-robin over the senders. A context's first packet (sequence number 0) gives it its
  // stream and is not measured; the receivers get it before the measured ones, too.
  uint64_t unmeasured_allocs = 0;
  const uint64_t allocs_before = g_openssl_allocs.load();
  size_t ops = 0;
  Clock::duration elapsed = Clock::duration::zero();
  auto segment_start = Clock::now();
  while (ops < kMaxOps && (ops < kMinOps || elapsed < kTarget)) {
    const size_t i = ops % n;
    if (ops < n) {
      elapsed += Clock::now() - segment_start;
      const uint64_t allocs = g_openssl_allocs.load();
      uint8_t* p = warmup.at(i);
      FillRtp(p, i, 0);
      size_t len = kPacketSize;
      if (SrtpResult r = out[i]->ProtectRtp(p, &len, kBufferSize); r != SrtpResult::kOk) {
        Fail("first protect", i, r);
      }
      warmup.lens[i] = len;
      unmeasured_allocs += g_openssl_allocs.load() - allocs;
      segment_start = Clock::now();
    }
    FillRtp(buf, i, static_cast<uint16_t>(1 + ops / n));
    size_t len = kPacketSize;
    if (SrtpResult r = out[i]->ProtectRtp(buf, &len, sizeof(buf)); r != SrtpResult::kOk) {
      Fail("protect", i, r);
    }
    std::memcpy(sent.at(ops), buf, len);
    sent.lens[ops] = len;
    ++ops;
    if (ops % 16 == 0 || ops < n) {
      elapsed += Clock::now() - segment_start;
      segment_start = Clock::now();
    }
  }
  elapsed += Clock::now() - segment_start;
  const uint64_t protect_allocs = g_openssl_allocs.load() - allocs_before - unmeasured_allocs;
  m.ops = ops;
  m.protect_ns =
      std::chrono::duration<double, std::nano>(elapsed).count() / static_cast<double>(ops);
  auto teardown_start = Clock::now();
  Destroy(out);
  m.teardown_s = std::chrono::duration<double>(Clock::now() - teardown_start).count();

  setup_start = Clock::now();
  auto in = MakeContexts(engine, n, Direction::kInbound);
  m.setup_s += std::chrono::duration<double>(Clock::now() - setup_start).count();
  for (size_t i = 0; i < std::min(n, ops); ++i) {
    size_t len = warmup.lens[i];
    if (SrtpResult r = in[i]->UnprotectRtp(warmup.at(i), &len); r != SrtpResult::kOk) {
      Fail("first unprotect", i, r);
    }
  }
  const uint64_t allocs_before_unprotect = g_openssl_allocs.load();
  const auto start = Clock::now();
  for (size_t k = 0; k < ops; ++k) {
    const size_t i = k % n;
    size_t len = sent.lens[k];
    if (SrtpResult r = in[i]->UnprotectRtp(sent.at(k), &len); r != SrtpResult::kOk) {
      Fail("unprotect", i, r);
    }
  }
  const auto unprotect_elapsed = Clock::now() - start;
  const uint64_t unprotect_allocs = g_openssl_allocs.load() - allocs_before_unprotect;
  m.unprotect_ns = std::chrono::duration<double, std::nano>(unprotect_elapsed).count() /
                   static_cast<double>(ops);
  if (g_counting) {
    m.allocs_per_packet =
        static_cast<double>(protect_allocs + unprotect_allocs) / (2.0 * static_cast<double>(ops));
  }
  teardown_start = Clock::now();
  Destroy(in);
  m.teardown_s += std::chrono::duration<double>(Clock::now() - teardown_start).count();
  return m;
}

std::vector<size_t> ParseCounts(const char* arg) {
  std::vector<size_t> counts;
  for (const char* p = arg; *p != '\0';) {
    char* end = nullptr;
    counts.push_back(std::strtoul(p, &end, 10));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p != '\0') break;
  }
  return counts;
}

int Run(int argc, char** argv) {
  std::vector<size_t> counts(std::begin(kContextCounts), std::end(kContextCounts));
  if (argc > 1) counts = ParseCounts(argv[1]);
  g_counting = CRYPTO_set_mem_functions(CountingMalloc, CountingRealloc, CountingFree) == 1;
  const auto run_start = Clock::now();
  std::map<std::pair<SrtpEngine, size_t>, Measurement> results;
  std::printf("%-8s %9s %12s %14s %8s %15s %8s %10s\n", "engine", "contexts", "protect_ns",
              "unprotect_ns", "packets", "ossl_allocs/pkt", "setup_s", "teardown_s");
  for (SrtpEngine engine : {SrtpEngine::kLibsrtp, SrtpEngine::kOpenssl}) {
    for (size_t n : counts) {
      const Measurement m = Measure(engine, n);
      results[{engine, n}] = m;
      const std::string allocs =
          m.allocs_per_packet < 0 ? "n/a" : absl::StrFormat("%.2f", m.allocs_per_packet);
      std::printf("%-8s %9zu %12.0f %14.0f %8zu %15s %8.1f %10.1f\n",
                  std::string(SrtpEngineName(engine)).c_str(), n, m.protect_ns, m.unprotect_ns,
                  m.ops, allocs.c_str(), m.setup_s, m.teardown_s);
      std::fflush(stdout);
    }
  }
  SetSrtpEngine(SrtpEngine::kLibsrtp);
  std::printf("(ossl_allocs/pkt: OpenSSL allocations per packet on the measured path%s)\n",
              g_counting ? "" : "; not counted, OpenSSL allocated before main");
  std::printf("total %.1f s\n", std::chrono::duration<double>(Clock::now() - run_start).count());
  if (results.count({SrtpEngine::kOpenssl, 4000}) != 0) {
    const double speedup = results[{SrtpEngine::kLibsrtp, 4000}].protect_ns /
                           results[{SrtpEngine::kOpenssl, 4000}].protect_ns;
    std::printf("RESULT srtp openssl/libsrtp protect speedup at 4000 contexts=%.1f\n", speedup);
  }
  return 0;
}

}  // namespace
}  // namespace rwg::media_relay

int main(int argc, char** argv) { return rwg::media_relay::Run(argc, argv); }
