// rwg-media-peer: the media test peer and load generator. For each of N test calls it plays
// the phone (SRTP) and the iPBX (RTP or SRTP) with a relay in between (the rwg media relay or
// rtpengine), sends G.711-sized RTP and RTCP both ways, and checks what arrives: loss,
// duplicates, order, payload integrity, added latency, and with --spoof whether the relay
// forwards packets a third party sends in the phone's name.
//
// One JSON object on stdout at the end, a human summary on stderr. Exit status: 0 when
// everything arrived intact (within --max-loss), 1 when not, 2 on usage or setup errors.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "services/core/random.h"
#include "services/media_relay/srtp.h"
#include "tools/media-peer/net.h"
#include "tools/media-peer/peer.h"
#include "tools/media-peer/relay_control.h"
#include "tools/media-peer/rtpengine_relay.h"
#include "tools/media-peer/rwg_relay.h"
#include "tools/media-peer/traffic.h"

namespace rwg::media_peer {
namespace {

using media_relay::SrtpSuite;

constexpr int kExitFailed = 1;
constexpr int kExitSetup = 2;
constexpr size_t kMaxPayloadBytes = 1200;

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

struct Flags {
  std::string srtp_engine = "openssl";
  std::string relay_kind = "rwg";
  std::string relay;
  std::string ca;
  std::string token_file;
  std::string ng = "127.0.0.1:22222";
  std::vector<std::string> ng_flags;
  std::string set_suite = "AES_CM_128_HMAC_SHA1_80";
  std::string icp_suite = "RTP";
  std::string bind = "127.0.0.1";
  int streams = 1;
  uint32_t packets = 500;
  double duration_s = 0;
  int64_t interval_us = 20000;
  size_t payload_bytes = 160;
  int first_seq = -1;  // -1: random per stream and direction
  uint32_t rtcp_every = 50;
  bool spoof = false;
  uint32_t spoof_after = 100;
  double max_loss = 0;
  int64_t drain_ms = 1000;
  double rate_report_s = 0;
  bool busy_poll = false;
  int64_t timeout_ms = 5000;
  bool keep_sessions = false;
  bool json = false;
  bool quiet = false;
};

[[noreturn]] void Die(absl::string_view message) {
  std::cerr << "rwg-media-peer: " << message << "\n";
  std::exit(kExitSetup);
}

// "RTP" (any case) or "NONE" is plain RTP; otherwise an SDES suite name.
absl::StatusOr<SrtpSuite> ParseSuiteFlag(absl::string_view flag, const std::string& value) {
  const std::string upper = absl::AsciiStrToUpper(value);
  if (upper == "RTP" || upper == "NONE") return SrtpSuite::kNone;
  absl::StatusOr<SrtpSuite> suite = media_relay::ParseSuite(value);
  if (!suite.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", suite.status().message(), ", or RTP for plain RTP"));
  }
  return suite;
}

std::string SuiteLabel(SrtpSuite suite) {
  return suite == SrtpSuite::kNone ? "RTP" : media_relay::SuiteName(suite);
}

double Seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// `v` rounded to `decimals` decimal places (divides, so the JSON shows no binary noise).
double Round(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

// Releases every allocated stream; returns how many releases failed (the first error is
// printed).
uint64_t ReleaseAll(RelayControl& relay, std::vector<std::unique_ptr<Stream>>& streams,
                    double* total_ms) {
  uint64_t errors = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto& s : streams) {
    if (!s->allocated) continue;
    if (absl::Status st = relay.Release(s->plan, s->allocation); !st.ok()) {
      if (errors == 0) {
        std::cerr << "rwg-media-peer: stream " << s->id << ": " << st.message() << "\n";
      }
      ++errors;
    }
    s->allocated = false;
  }
  *total_ms = Ms(std::chrono::steady_clock::now() - start);
  return errors;
}

std::string Summary(Direction d, const DirectionStats& st) {
  return absl::StrFormat(
      "  %s: sent %d, received %d, lost %d, duplicated %d, out of order %d, corrupted %d, "
      "header changed %d, SRTP errors %d, foreign %d; RTCP %d/%d; latency p50 %.1f us, p99 "
      "%.1f us, max %.1f us",
      DirectionName(d), st.sent, st.received, st.lost(), st.duplicated, st.out_of_order,
      st.corrupted, st.header_mismatch, st.srtp_errors, st.foreign, st.rtcp_received, st.rtcp_sent,
      static_cast<double>(st.latency.Quantile(0.5)) / 1e3,
      static_cast<double>(st.latency.Quantile(0.99)) / 1e3,
      static_cast<double>(st.latency.max()) / 1e3);
}

// Why the run failed, one entry per problem; empty when it passed.
std::vector<std::string> Failures(const RunResult& r, const Flags& f) {
  std::vector<std::string> out;
  for (Direction d : {kSetToIcp, kIcpToSet}) {
    const DirectionStats& st = r.dir[d];
    const std::string name = DirectionName(d);
    const double loss =
        st.sent == 0 ? 0 : static_cast<double>(st.lost()) / static_cast<double>(st.sent);
    if (st.sent == 0) out.push_back(absl::StrCat(name, ": nothing sent"));
    if (loss > f.max_loss) {
      out.push_back(absl::StrCat(name, ": lost ", st.lost(), " of ", st.sent, " packets"));
    }
    if (st.duplicated > 0) out.push_back(absl::StrCat(name, ": ", st.duplicated, " duplicated"));
    if (st.corrupted > 0) out.push_back(absl::StrCat(name, ": ", st.corrupted, " corrupted"));
    if (st.header_mismatch > 0) {
      out.push_back(absl::StrCat(name, ": ", st.header_mismatch, " with a changed RTP header"));
    }
    if (st.srtp_errors > 0) {
      out.push_back(absl::StrCat(name, ": ", st.srtp_errors, " failed SRTP or RTP checks"));
    }
    if (st.foreign > 0) {
      out.push_back(absl::StrCat(name, ": ", st.foreign, " packets of another stream or unknown"));
    }
    if (st.send_errors > 0) {
      out.push_back(absl::StrCat(name, ": ", st.send_errors, " packets could not be sent"));
    }
    const double rtcp_loss =
        st.rtcp_sent == 0
            ? 0
            : static_cast<double>(st.rtcp_sent - std::min(st.rtcp_sent, st.rtcp_received)) /
                  static_cast<double>(st.rtcp_sent);
    if (rtcp_loss > f.max_loss) {
      out.push_back(absl::StrCat(name, ": RTCP received ", st.rtcp_received, " of ", st.rtcp_sent));
    }
    if (st.rtcp_bad > 0) out.push_back(absl::StrCat(name, ": ", st.rtcp_bad, " bad RTCP packets"));
    if (st.spoofed_received > 0) {
      out.push_back(absl::StrCat(name, ": ", st.spoofed_received, " spoofed packets delivered"));
    }
  }
  if (r.spoof_socket_received > 0) {
    out.push_back(absl::StrCat("the relay sent ", r.spoof_socket_received,
                               " packets to the spoofing source"));
  }
  if (r.interrupted) out.push_back("interrupted");
  return out;
}

int Run(const Flags& f) {
  // Flag checks that CLI11 cannot express.
  absl::StatusOr<media_relay::SrtpEngine> engine = media_relay::ParseSrtpEngine(f.srtp_engine);
  if (!engine.ok()) Die(engine.status().message());
  media_relay::SetSrtpEngine(*engine);
  absl::StatusOr<SrtpSuite> set_suite = ParseSuiteFlag("--set-suite", f.set_suite);
  if (!set_suite.ok()) Die(set_suite.status().message());
  absl::StatusOr<SrtpSuite> icp_suite = ParseSuiteFlag("--icp-suite", f.icp_suite);
  if (!icp_suite.ok()) Die(icp_suite.status().message());
  const bool rwg = f.relay_kind == "rwg";
  if (rwg && f.relay.empty()) Die("--relay HOST:PORT is required with --relay-kind rwg");
  if (f.payload_bytes < kPayloadHeaderSize || f.payload_bytes > kMaxPayloadBytes) {
    Die(absl::StrCat("--payload-bytes must be in ", kPayloadHeaderSize, "..", kMaxPayloadBytes));
  }
  if (auto bind = SocketAddress::FromNumeric(f.bind, 0); !bind.ok()) {
    Die(absl::StrCat("--bind: ", bind.status().message()));
  }
  uint32_t packets = f.packets;
  if (f.duration_s > 0) {
    const double n = std::ceil(f.duration_s * 1e6 / static_cast<double>(f.interval_us));
    if (n > std::numeric_limits<uint32_t>::max()) Die("--duration-s is too long");
    packets = static_cast<uint32_t>(std::max(1.0, n));
  }

  const uint64_t fds = static_cast<uint64_t>(f.streams) * 4 + 64;
  if (absl::Status st = EnsureFileLimit(fds); !st.ok()) Die(st.message());

  std::unique_ptr<RelayControl> relay;
  std::string relay_target;
  if (rwg) {
    RwgRelayOptions o;
    o.target = f.relay;
    o.ca_file = f.ca;
    o.token_file = f.token_file;
    o.timeout = absl::Milliseconds(f.timeout_ms);
    absl::StatusOr<std::unique_ptr<RelayControl>> r = MakeRwgRelay(o);
    if (!r.ok()) Die(r.status().message());
    relay = std::move(*r);
    relay_target = f.relay;
  } else {
    RtpengineOptions o;
    o.ng = f.ng;
    o.timeout = absl::Milliseconds(f.timeout_ms);
    o.extra_flags = f.ng_flags;
    absl::StatusOr<std::unique_ptr<RelayControl>> r = MakeRtpengineRelay(o);
    if (!r.ok()) Die(r.status().message());
    relay = std::move(*r);
    relay_target = f.ng;
  }
  if (absl::Status st = relay->Probe(); !st.ok()) Die(st.message());

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  core::Random& rng = core::Random::System();
  std::string seed_bytes = rng.Bytes(8);
  uint64_t seed = 0;
  std::memcpy(&seed, seed_bytes.data(), sizeof(seed));
  std::mt19937_64 prng(seed);

  std::vector<std::unique_ptr<Stream>> streams;
  streams.reserve(static_cast<size_t>(f.streams));
  double alloc_total_ms = 0;
  double alloc_max_ms = 0;
  auto fail_setup = [&](const std::string& message) {
    double ms = 0;
    ReleaseAll(*relay, streams, &ms);
    Die(message);
  };
  for (int i = 0; i < f.streams && !g_stop.load(); ++i) {
    auto s = std::make_unique<Stream>();
    s->id = i;
    absl::StatusOr<RtpSocketPair> phone = BindRtpPair(f.bind);
    absl::StatusOr<RtpSocketPair> ipbx =
        phone.ok() ? BindRtpPair(f.bind) : absl::StatusOr<RtpSocketPair>(phone.status());
    if (!ipbx.ok()) {
      fail_setup(absl::StrCat("stream ", i, ": bind on ", f.bind, ": ", ipbx.status().message()));
    }
    s->phone = std::move(*phone);
    s->ipbx = std::move(*ipbx);
    s->plan.index = i;
    s->plan.call_id = absl::StrCat("rwg-media-peer-", getpid(), "-", i);
    s->plan.phone = EndpointPlan{s->phone.rtp.local(), s->phone.rtcp.local(),
                                 media_relay::GenerateKey(*set_suite, rng)};
    s->plan.ipbx = EndpointPlan{s->ipbx.rtp.local(), s->ipbx.rtcp.local(),
                                media_relay::GenerateKey(*icp_suite, rng)};
    for (Direction d : {kSetToIcp, kIcpToSet}) {
      StreamParams& p = s->params[d];
      p.stream = static_cast<uint32_t>(i);
      p.direction = d;
      do {
        p.ssrc = static_cast<uint32_t>(prng());
      } while (p.ssrc == 0 || (d == kIcpToSet && p.ssrc == s->params[kSetToIcp].ssrc));
      p.first_seq =
          f.first_seq >= 0 ? static_cast<uint16_t>(f.first_seq) : static_cast<uint16_t>(prng());
      p.first_timestamp = static_cast<uint32_t>(prng());
      // 8 kHz clock: 160 per 20 ms packet.
      p.timestamp_step = static_cast<uint32_t>(std::max<int64_t>(1, f.interval_us * 8 / 1000));
      p.payload_bytes = f.payload_bytes;
    }
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<Allocation> allocation = relay->Allocate(s->plan);
    const double ms = Ms(std::chrono::steady_clock::now() - start);
    if (!allocation.ok()) {
      // The first failure is usually the relay itself (unreachable, refused); later ones say
      // which stream found a limit.
      fail_setup(i > 0 ? absl::StrCat("stream ", i, ": ", allocation.status().message())
                       : std::string(allocation.status().message()));
    }
    alloc_total_ms += ms;
    alloc_max_ms = std::max(alloc_max_ms, ms);
    s->allocation = std::move(*allocation);
    s->allocated = true;
    streams.push_back(std::move(s));
    if (absl::Status st = PrepareStream(*streams.back(), packets, f.spoof); !st.ok()) {
      fail_setup(std::string(st.message()));
    }
  }
  if (g_stop.load()) fail_setup("interrupted during setup");

  std::optional<UdpSocket> spoofer;
  if (f.spoof) {
    absl::StatusOr<UdpSocket> s = UdpSocket::Bind(f.bind, 0);
    if (!s.ok()) fail_setup(absl::StrCat("spoofer: bind on ", f.bind, ": ", s.status().message()));
    spoofer = std::move(*s);
  }

  PeerOptions po;
  po.packets = packets;
  po.interval_ns = f.interval_us * 1000;
  po.rtcp_every = f.rtcp_every;
  po.spoof_after = f.spoof_after;
  po.drain_ns = f.drain_ms * 1'000'000;
  po.rate_report_s = f.rate_report_s;
  po.busy_poll = f.busy_poll;
  if (!f.quiet) {
    std::cerr << absl::StrFormat(
        "rwg-media-peer: %s %s: %d streams set up in %.0f ms (max %.1f ms each); %u packets "
        "each way per stream every %d us\n",
        f.relay_kind, relay_target, f.streams, alloc_total_ms, alloc_max_ms, packets,
        f.interval_us);
  }
  absl::StatusOr<RunResult> run =
      RunTraffic(po, streams, spoofer.has_value() ? &*spoofer : nullptr, g_stop);
  if (!run.ok()) fail_setup(std::string(run.status().message()));

  double release_ms = 0;
  uint64_t release_errors = 0;
  if (!f.keep_sessions) release_errors = ReleaseAll(*relay, streams, &release_ms);

  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const std::vector<std::string> failures = Failures(*run, f);
  nlohmann::json out = {
      {"ok", failures.empty()},
      {"failures", failures},
      {"relay_kind", f.relay_kind},
      {"relay", relay_target},
      {"streams", f.streams},
      {"packets_per_stream", packets},
      {"interval_us", f.interval_us},
      {"payload_bytes", f.payload_bytes},
      {"set_suite", SuiteLabel(*set_suite)},
      {"icp_suite", SuiteLabel(*icp_suite)},
      {"rtcp_every", f.rtcp_every},
      {"max_loss", f.max_loss},
      {"elapsed_s", Round(run->elapsed_s, 3)},
      {"interrupted", run->interrupted},
      {"setup",
       {{"allocate_ms_total", Round(alloc_total_ms, 2)},
        {"allocate_ms_mean", Round(alloc_total_ms / std::max(1, f.streams), 3)},
        {"allocate_ms_max", Round(alloc_max_ms, 3)},
        {"release_ms_total", Round(release_ms, 2)},
        {"release_errors", release_errors},
        {"sessions_kept", f.keep_sessions}}},
      {"set_to_icp", run->dir[kSetToIcp].ToJson()},
      {"icp_to_set", run->dir[kIcpToSet].ToJson()},
      {"spoof", f.spoof},
      {"spoofed_sent", run->spoofed_sent},
      {"spoofed_received", run->dir[kSetToIcp].spoofed_received},
      {"spoof_socket_received", run->spoof_socket_received},
      // The peer's own load: a sender running late, or a peer using most of a core, means
      // the host limits the result rather than the relay.
      {"peer",
       {{"send_late_max_us", Round(static_cast<double>(run->send_late_max_ns) / 1e3, 1)},
        {"send_late_packets", run->send_late_packets},
        {"cpu_user_s", Round(Seconds(usage.ru_utime), 3)},
        {"cpu_sys_s", Round(Seconds(usage.ru_stime), 3)}}},
  };
  out["first_seq"] = f.first_seq >= 0 ? nlohmann::json(f.first_seq) : nlohmann::json(nullptr);
  if (nlohmann::json rs = relay->ReleaseSummary(); !rs.is_null()) out["relay_stats"] = rs;
  std::cout << out.dump() << std::endl;

  if (!f.quiet) {
    std::cerr << Summary(kSetToIcp, run->dir[kSetToIcp]) << "\n"
              << Summary(kIcpToSet, run->dir[kIcpToSet]) << "\n";
    if (f.spoof) {
      std::cerr << absl::StrFormat(
          "  spoof: sent %d, delivered to the iPBX %d, relay sent %d to the spoofer\n",
          run->spoofed_sent, run->dir[kSetToIcp].spoofed_received, run->spoof_socket_received);
    }
    if (run->send_late_packets > 0) {
      std::cerr << absl::StrFormat(
          "  warning: %d packets left more than one interval late (worst %.1f ms): this host "
          "cannot pace %d streams\n",
          run->send_late_packets, static_cast<double>(run->send_late_max_ns) / 1e6, f.streams);
    }
    if (release_errors > 0) {
      std::cerr << "  warning: " << release_errors << " sessions could not be released\n";
    }
    std::cerr << "  result: "
              << (failures.empty() ? "OK" : absl::StrCat("FAIL: ", absl::StrJoin(failures, "; ")))
              << "\n";
  }
  return failures.empty() ? 0 : kExitFailed;
}

int Main(int argc, char** argv) {
  Flags f;
  CLI::App app{
      "rwg-media-peer: plays the phone (SRTP) and the iPBX (RTP or SRTP) of N calls through a "
      "media relay, sends RTP and RTCP both ways and checks what arrives. One JSON object on "
      "stdout, a summary on stderr. Exit status 0: everything arrived intact (within "
      "--max-loss); 1: loss, damage, duplicates, spoofed packets delivered, or interrupted; "
      "2: usage or setup error.",
      "rwg-media-peer"};
  app.option_defaults()->always_capture_default();

  app.add_option("--relay-kind", f.relay_kind, "relay under test")
      ->check(CLI::IsMember({"rwg", "rtpengine"}));
  auto* group_rwg = app.add_option_group("rwg relay", "--relay-kind rwg");
  group_rwg->add_option("--relay", f.relay, "HOST:PORT of the relay's gRPC API (RelayService)");
  group_rwg->add_option("--ca", f.ca, "PEM CA file: TLS to the relay (default: plaintext)")
      ->check(CLI::ExistingFile);
  group_rwg
      ->add_option("--token-file", f.token_file,
                   "file with the API token, sent as 'authorization: Bearer <token>'")
      ->check(CLI::ExistingFile);
  auto* group_rtpe = app.add_option_group("rtpengine", "--relay-kind rtpengine");
  group_rtpe->add_option("--ng", f.ng, "HOST:PORT of rtpengine's ng control socket (UDP)");
  group_rtpe->add_option("--ng-flag", f.ng_flags,
                         "extra entry for the 'flags' list of offer/answer, e.g. strict-source "
                         "(repeatable)");
  app.add_flag("--keep-sessions", f.keep_sessions, "leave the sessions on the relay at the end");
  app.add_option("--timeout-ms", f.timeout_ms, "deadline of each control request")
      ->check(CLI::Range(1, 600000));

  app.add_option("--srtp-engine", f.srtp_engine,
                 "SRTP of the phone and iPBX ends: openssl or libsrtp (Debian's, slow with many "
                 "contexts)");
  app.add_option("--set-suite", f.set_suite,
                 "phone leg: AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or RTP");
  app.add_option("--icp-suite", f.icp_suite, "iPBX leg: RTP (plain) or an SRTP suite");
  app.add_option("--bind", f.bind, "local address of the phone and iPBX sockets (ports: kernel)");
  app.add_option("--streams", f.streams, "concurrent calls")->check(CLI::Range(1, 100000));
  auto* packets_opt = app.add_option("--packets", f.packets, "packets per direction per stream")
                          ->check(CLI::Range(1u, 100000000u));
  app.add_option("--duration-s", f.duration_s, "run this long instead of --packets")
      ->check(CLI::PositiveNumber)
      ->excludes(packets_opt);
  app.add_option("--interval-us", f.interval_us, "packet interval per stream (20000: G.711 20 ms)")
      ->check(CLI::Range(int64_t{100}, int64_t{10'000'000}));
  app.add_option("--payload-bytes", f.payload_bytes, "RTP payload size (24..1200)");
  app.add_option("--first-seq", f.first_seq,
                 "first RTP sequence number of every stream (default: random), e.g. 65000 to "
                 "cross the wrap")
      ->check(CLI::Range(0, 65535))
      ->default_str("random");
  app.add_option("--rtcp-every", f.rtcp_every,
                 "an RTCP SR from each end every N packets (0: none)");
  app.add_flag("--spoof", f.spoof,
               "a third socket sends SRTP copies of the phone's packets (valid key, new "
               "sequence numbers) to the relay's set port; none may reach the iPBX");
  app.add_option("--spoof-after", f.spoof_after, "phone packets per stream before spoofing starts");
  app.add_option("--max-loss", f.max_loss, "tolerated loss fraction per direction (RTP and RTCP)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--drain-ms", f.drain_ms, "wait this long after the last packet for late ones")
      ->check(CLI::Range(int64_t{0}, int64_t{600000}));
  app.add_option("--rate-report-s", f.rate_report_s, "progress line on stderr every S seconds")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--busy-poll", f.busy_poll,
               "never sleep: poll the sockets in a loop (takes a whole core; the relay then "
               "never pays for waking this peer, as on a real network)");
  app.add_flag("--json", f.json, "JSON result on stdout (always on; accepted for scripts)");
  app.add_flag("-q,--quiet", f.quiet, "no summary on stderr (the JSON only)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "rwg-media-peer: " << e.what() << "\n";
    return kExitSetup;
  }
  return Run(f);
}

}  // namespace
}  // namespace rwg::media_peer

// Whatever is thrown (a failed allocation) ends the run with a message and the setup-error
// status rather than an abort.
int main(int argc, char** argv) {
  try {
    return rwg::media_peer::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "rwg-media-peer: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "rwg-media-peer: unknown exception\n";
  }
  return rwg::media_peer::kExitSetup;
}
