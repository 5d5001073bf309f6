#include "services/media_relay/relay.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/json.h"
#include "services/core/log.h"
#include "services/core/thread.h"
#include "services/media_relay/rtp.h"

namespace rwg::media_relay {
namespace {

constexpr char kInstancesKey[] = "rwg:relay:instances";
// SRTCP packets a restored outbound stream may have sent: 12 days of one report a second.
// Beyond, the record is damaged (the index is restored by protecting that many packets).
constexpr uint64_t kMaxRestoredSrtcp = uint64_t{1} << 20;

std::string SessionKey(const std::string& id) { return absl::StrCat("rwg:relay:session:", id); }
std::string IndexKey(const std::string& instance) {
  return absl::StrCat("rwg:relay:sessions:", instance);
}
const char* kLegNames[2] = {"set", "icp"};

absl::StatusOr<SrtpSuite> SuiteOf(const std::string& s) {
  if (s.empty() || s == "RTP") return SrtpSuite::kNone;
  return ParseSuite(s);
}
std::string SuiteLabel(SrtpSuite s) { return s == SrtpSuite::kNone ? "RTP" : SuiteName(s); }

}  // namespace

struct RelayMetrics {
  prometheus::Gauge& sessions;
  prometheus::Gauge& ports_free;
  prometheus::Gauge& ports_used;
  prometheus::Family<prometheus::Counter>& packets;
  prometheus::Family<prometheus::Counter>& bytes;
  prometheus::Family<prometheus::Counter>& drops;
  prometheus::Counter& auth_failures;
  prometheus::Counter& idle;
  prometheus::Counter& internal_errors;
  prometheus::Counter& redis_write_failures;
  // The children of the families, looked up once: [leg][direction] and [leg][reason].
  std::array<std::array<prometheus::Counter*, 2>, 2> packets_by{}, bytes_by{};
  std::array<std::array<prometheus::Counter*, kDropReasons>, 2> drops_by{};

  explicit RelayMetrics(prometheus::Registry& r)
      : sessions(prometheus::BuildGauge()
                     .Name("rwg_media_relay_sessions")
                     .Help("Relay sessions on this instance")
                     .Register(r)
                     .Add({})),
        ports_free(prometheus::BuildGauge()
                       .Name("rwg_media_relay_ports_free")
                       .Help("UDP ports of the pool not in use")
                       .Register(r)
                       .Add({})),
        ports_used(prometheus::BuildGauge()
                       .Name("rwg_media_relay_ports_used")
                       .Help("UDP ports of the pool in use (RTP and RTCP)")
                       .Register(r)
                       .Add({})),
        packets(prometheus::BuildCounter()
                    .Name("rwg_media_relay_packets_total")
                    .Help("Packets relayed, by leg (set, icp) and direction (in, out)")
                    .Register(r)),
        bytes(prometheus::BuildCounter()
                  .Name("rwg_media_relay_bytes_total")
                  .Help("Bytes relayed, by leg and direction")
                  .Register(r)),
        drops(prometheus::BuildCounter()
                  .Name("rwg_media_relay_dropped_total")
                  .Help("Packets dropped, by leg and reason")
                  .Register(r)),
        auth_failures(prometheus::BuildCounter()
                          .Name("rwg_media_relay_srtp_auth_failures_total")
                          .Help("SRTP/SRTCP packets that failed authentication")
                          .Register(r)
                          .Add({})),
        idle(prometheus::BuildCounter()
                 .Name("rwg_media_relay_idle_sessions_total")
                 .Help("Sessions that went idle (no packet for the idle timeout)")
                 .Register(r)
                 .Add({})),
        internal_errors(prometheus::BuildCounter()
                            .Name("rwg_media_relay_internal_errors_total")
                            .Help("Exceptions caught on the packet path (the packet dropped) or "
                                  "in an API handler (answered INTERNAL); should stay 0")
                            .Register(r)
                            .Add({})),
        redis_write_failures(prometheus::BuildCounter()
                                 .Name("rwg_media_relay_redis_write_failures_total")
                                 .Help("Redis writes that failed: a session's removal, an idle "
                                       "event, the heartbeat (tried again every second)")
                                 .Register(r)
                                 .Add({})) {
    SetPacketPathErrorCounter(&internal_errors);
    for (int l = 0; l < 2; ++l) {
      for (int d = 0; d < 2; ++d) {
        const char* dir = d == 0 ? "in" : "out";
        packets_by[l][d] = &packets.Add({{"leg", kLegNames[l]}, {"direction", dir}});
        bytes_by[l][d] = &bytes.Add({{"leg", kLegNames[l]}, {"direction", dir}});
      }
      for (int r = 0; r < kDropReasons; ++r) {
        drops_by[l][r] =
            &drops.Add({{"leg", kLegNames[l]}, {"reason", DropName(static_cast<Drop>(r))}});
      }
    }
  }

  // Adds what a counter grew by since it was last counted.
  static void Feed(prometheus::Counter& c, uint64_t& counted, uint64_t value) {
    if (value > counted) c.Increment(static_cast<double>(value - counted));
    counted = value;
  }
};

Relay::Relay(RelayOptions options, core::RedisClient& redis, const core::SecretBox& box,
             core::Clock& clock, core::Random& rng, prometheus::Registry& registry)
    : options_(std::move(options)),
      redis_(redis),
      box_(box),
      clock_(clock),
      rng_(rng),
      metrics_(std::make_unique<RelayMetrics>(registry)),
      pool_(options_.bind_address, options_.port_min, options_.port_max),
      grpc_address_(options_.grpc_address) {
  if (options_.media_address.empty()) options_.media_address = options_.bind_address;
}

Relay::~Relay() { Stop(); }

absl::Status Relay::Start() {
  workers_.clear();
  {
    absl::MutexLock lock(&hk_mu_);
    hk_stop_ = false;
  }
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.push_back(std::make_unique<Worker>(i, options_.io, options_.worker_scheduling));
    if (absl::Status s = workers_.back()->Start(); !s.ok()) return s;
  }
  if (absl::Status s = Restore(); !s.ok()) return s;
  Heartbeat();
  housekeeper_ = std::thread([this] {
    core::NameThisThread("rwg-housekeep");
    // Lowering a thread's priority needs no privilege, so this does not fail; the
    // housekeeper would work at any priority anyway.
    (void)core::ScheduleThisThread({core::ThreadScheduling::Policy::kOther, kHousekeepingNice});
    Housekeeping();
  });
  return absl::OkStatus();
}

void Relay::Stop() {
  {
    absl::MutexLock lock(&hk_mu_);
    hk_stop_ = true;  // wakes the housekeeper's AwaitWithTimeout
  }
  if (housekeeper_.joinable()) housekeeper_.join();
  for (auto& w : workers_) w->Stop();
  // Sessions stay in Redis: the next start of this instance restores them.
  absl::MutexLock lock(&mu_);
  for (auto& [id, s] : sessions_) {
    for (Leg& leg : s->legs) pool_.Release(leg.ports);
  }
  sessions_.clear();
}

Worker& Relay::LeastLoaded() {
  Worker* best = workers_[0].get();
  for (auto& w : workers_) {
    if (w->sessions().load() < best->sessions().load()) best = w.get();
  }
  return *best;
}

// Sets up a leg from the control plane's request: suite, keys, contexts, SDP address.
absl::Status Relay::ApplyLeg(Leg& leg, const relaypb::LegRequest& req, bool initial) {
  absl::StatusOr<SrtpSuite> suite = SuiteOf(req.suite());
  if (!suite.ok()) return suite.status();
  leg.suite = *suite;
  if (leg.suite == SrtpSuite::kNone) {
    if (!req.remote_key().empty()) {
      return absl::InvalidArgumentError("remote_key given for a plain RTP leg");
    }
    leg.local_key.clear();
    leg.remote_key.clear();
  } else {
    if (!req.remote_key().empty()) {
      if (absl::Status s = ValidateKey({leg.suite, req.remote_key()}); !s.ok()) return s;
    }
    leg.remote_key = req.remote_key();
    if (initial || leg.local_key.empty()) leg.local_key = GenerateKey(leg.suite, rng_).master;
  }
  if (!req.remote_address().empty() || req.remote_port() != 0) {
    if (!Address::Parse(req.remote_address(), static_cast<int>(req.remote_port()), &leg.sdp_rtp)) {
      return absl::InvalidArgumentError(absl::StrCat("remote address '", req.remote_address(),
                                                     "' port ", req.remote_port(),
                                                     " is not an IP address and port"));
    }
    const int rtcp = req.remote_rtcp_port() != 0 ? static_cast<int>(req.remote_rtcp_port())
                                                 : static_cast<int>(req.remote_port()) + 1;
    if (!Address::Parse(req.remote_address(), rtcp, &leg.sdp_rtcp)) {
      return absl::InvalidArgumentError(absl::StrCat("remote RTCP port ", rtcp, " is not valid"));
    }
  }
  return absl::OkStatus();
}

namespace {

// New SRTP contexts for a leg from its keys (plain legs get pass-through contexts).
absl::Status BuildContexts(Leg& leg, bool inbound, bool outbound) {
  if (inbound) {
    leg.inbound.reset();
    if (leg.suite == SrtpSuite::kNone || !leg.remote_key.empty()) {
      absl::StatusOr<std::unique_ptr<SrtpContext>> c =
          SrtpContext::Create({leg.suite, leg.remote_key}, SrtpContext::Direction::kInbound);
      if (!c.ok()) return c.status();
      leg.inbound = *std::move(c);
    }
    leg.in_ssrcs = {};
  }
  if (outbound) {
    absl::StatusOr<std::unique_ptr<SrtpContext>> c =
        SrtpContext::Create({leg.suite, leg.local_key}, SrtpContext::Direction::kOutbound);
    if (!c.ok()) return c.status();
    leg.outbound = *std::move(c);
    leg.out_ssrcs = {};
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<relaypb::Session> Relay::Allocate(const relaypb::AllocateRequest& req) {
  if (draining_) return absl::UnavailableError("relay instance is draining");
  if (req.call_id().size() > 256) return absl::InvalidArgumentError("call_id longer than 256");
  auto s = std::make_unique<Session>();
  s->id = core::RandomHex(rng_, 12);
  s->call_id = req.call_id();
  s->created = clock_.Now();
  const relaypb::LegRequest* reqs[2] = {&req.set(), &req.icp()};
  for (int l = 0; l < 2; ++l) {
    if (absl::Status st = ApplyLeg(s->legs[l], *reqs[l], true); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(kLegNames[l], ": ", st.message()));
    }
    if (absl::Status st = BuildContexts(s->legs[l], true, true); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(kLegNames[l], ": ", st.message()));
    }
  }
  // The lock covers the ports and the session table only: attaching to a worker and writing
  // Redis happen outside it, so that requests do not queue behind each other's round trips.
  Worker* w = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (options_.max_sessions > 0 &&
        sessions_.size() + allocating_ >= static_cast<size_t>(options_.max_sessions)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("session limit reached (", options_.max_sessions, ")"));
    }
    for (int l = 0; l < 2; ++l) {
      absl::StatusOr<PortPair> p = pool_.Acquire();
      if (!p.ok()) {
        if (l == 1) pool_.Release(s->legs[0].ports);
        return p.status();
      }
      s->legs[l].ports = *p;
    }
    w = &LeastLoaded();
    ++allocating_;
  }
  auto give_up = [&](absl::Status why) {
    absl::MutexLock lock(&mu_);
    for (Leg& leg : s->legs) pool_.Release(leg.ports);
    --allocating_;
    return why;
  };
  // The state to keep and the answer are taken before the worker sees the session (one
  // hand-over only).
  const SessionState state = CopyState(*s);
  relaypb::Session out = SnapshotHere(*s);
  absl::Status attached;
  w->Run([&] { attached = w->Attach(s.get()); });
  if (!attached.ok()) {
    w->Run([&] { w->Detach(s.get()); });
    return give_up(attached);
  }
  if (absl::Status st = WriteState(*s, state); !st.ok()) {
    w->Run([&] { w->Detach(s.get()); });
    return give_up(st);  // nothing half done: no session without its state in Redis
  }
  core::log::Info("session started", {{"session", s->id},
                                      {"call_id", s->call_id},
                                      {"set_port", std::to_string(s->legs[0].ports.port)},
                                      {"icp_port", std::to_string(s->legs[1].ports.port)},
                                      {"set_suite", SuiteLabel(s->legs[0].suite)},
                                      {"icp_suite", SuiteLabel(s->legs[1].suite)}});
  absl::MutexLock lock(&mu_);
  --allocating_;
  sessions_[s->id] = std::move(s);
  metrics_->sessions.Set(static_cast<double>(sessions_.size()));
  return out;
}

// Computes a leg's next state from an update without touching the leg: `next` gets the new
// suite, keys, addresses and (where they change) new contexts.
absl::Status Relay::ApplyUpdate(const Leg& cur, const relaypb::LegUpdate& u, LegChange* next) {
  relaypb::LegRequest req;
  req.set_suite(u.suite().empty() ? SuiteLabel(cur.suite) : u.suite());
  req.set_remote_key(u.remote_key().empty() ? cur.remote_key : u.remote_key());
  if (!u.remote_address().empty() || u.remote_port() != 0) {
    req.set_remote_address(u.remote_address().empty() ? cur.sdp_rtp.Host() : u.remote_address());
    req.set_remote_port(u.remote_port() != 0 ? u.remote_port()
                                             : static_cast<uint32_t>(cur.sdp_rtp.Port()));
    req.set_remote_rtcp_port(u.remote_rtcp_port());
  }
  Leg& probe = next->leg;
  probe.local_key = cur.local_key;
  probe.sdp_rtp = cur.sdp_rtp;
  probe.sdp_rtcp = cur.sdp_rtcp;
  if (absl::Status s = ApplyLeg(probe, req, false); !s.ok()) return s;
  if (u.new_local_key() && probe.suite != SrtpSuite::kNone) {
    probe.local_key = GenerateKey(probe.suite, rng_).master;
  }
  const bool suite_changed = probe.suite != cur.suite;
  next->inbound = suite_changed || probe.remote_key != cur.remote_key;
  next->outbound = suite_changed || probe.local_key != cur.local_key;
  next->address = !(probe.sdp_rtp == cur.sdp_rtp);
  return BuildContexts(probe, next->inbound, next->outbound);
}

absl::StatusOr<relaypb::Session> Relay::Update(const relaypb::UpdateRequest& req) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(req.id());
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", req.id()));
  Session& s = *it->second;
  const relaypb::LegUpdate* ups[2] = {req.has_set() ? &req.set() : nullptr,
                                      req.has_icp() ? &req.icp() : nullptr};
  absl::Status result;
  SessionState state;
  Worker& w = *workers_[s.worker];
  w.Run([&] {
    // Both legs are checked before either changes: nothing is half applied.
    LegChange next[2];
    for (int l = 0; l < 2; ++l) {
      if (ups[l] == nullptr) continue;
      if (absl::Status st = ApplyUpdate(s.legs[l], *ups[l], &next[l]); !st.ok()) {
        result = absl::InvalidArgumentError(absl::StrCat(kLegNames[l], ": ", st.message()));
        return;
      }
    }
    for (int l = 0; l < 2; ++l) {
      if (ups[l] == nullptr) continue;
      Leg& leg = s.legs[l];
      Leg& n = next[l].leg;
      leg.suite = n.suite;
      leg.remote_key = n.remote_key;
      leg.local_key = n.local_key;
      if (next[l].inbound) {
        leg.inbound = std::move(n.inbound);
        leg.in_ssrcs = {};
      }
      if (next[l].outbound) {
        leg.outbound = std::move(n.outbound);
        leg.out_ssrcs = {};
      }
      if (next[l].address) {
        // A new remote address (re-INVITE): the source is learnt again.
        leg.sdp_rtp = n.sdp_rtp;
        leg.sdp_rtcp = n.sdp_rtcp;
        leg.latched_rtp = {};
        leg.latched_rtcp = {};
      }
    }
    state = CopyState(s);
  });
  if (!result.ok()) return result;
  if (absl::Status st = WriteState(s, state); !st.ok()) return st;
  core::log::Info("session updated", {{"session", s.id}, {"call_id", s.call_id}});
  return Snapshot(s);
}

void Relay::Finish(std::unique_ptr<Session> s, const char* why, relaypb::Session* final) {
  Worker& w = *workers_[s->worker];
  w.Run([&] {
    if (final != nullptr) *final = SnapshotHere(*s);
    w.Detach(s.get());
  });
  {
    absl::MutexLock lock(&mu_);
    for (Leg& leg : s->legs) pool_.Release(leg.ports);
  }
  // A record left behind is restored by the next start of this instance, then ended as an
  // orphan: the failure costs ports for a while, not a wrong answer.
  if (absl::StatusOr<std::vector<core::RedisReply>> r = redis_.Pipeline(
          {{"DEL", SessionKey(s->id)}, {"SREM", IndexKey(options_.instance), s->id}});
      !r.ok()) {
    RedisWriteFailed("cannot remove the session from Redis", s->id, r.status());
  }
  const LegCounters& a = s->legs[0].counters;
  const LegCounters& b = s->legs[1].counters;
  core::log::Info(
      "session ended",
      {{"session", s->id},
       {"call_id", s->call_id},
       {"reason", why},
       {"seconds", std::to_string(absl::ToInt64Seconds(clock_.Now() - s->created))},
       {"set_in", std::to_string(a.rtp_in_packets.Get())},
       {"set_out", std::to_string(a.rtp_out_packets.Get())},
       {"icp_in", std::to_string(b.rtp_in_packets.Get())},
       {"icp_out", std::to_string(b.rtp_out_packets.Get())},
       {"set_auth_failures", std::to_string(a.drops[static_cast<int>(Drop::kAuthFailure)].Get())},
       {"set_foreign", std::to_string(a.drops[static_cast<int>(Drop::kForeignSource)].Get())}});
  CollectMetricsFor(*s);
}

absl::StatusOr<relaypb::Session> Relay::Delete(const std::string& id) {
  std::unique_ptr<Session> s;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
    s = std::move(it->second);
    sessions_.erase(it);
    metrics_->sessions.Set(static_cast<double>(sessions_.size()));
  }
  relaypb::Session final;
  Finish(std::move(s), "deleted", &final);
  return final;
}

absl::StatusOr<relaypb::Session> Relay::Get(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
  return Snapshot(*it->second);
}

relaypb::ListResponse Relay::List() {
  absl::MutexLock lock(&mu_);
  relaypb::ListResponse out;
  for (auto& [id, s] : sessions_) *out.add_sessions() = Snapshot(*s);
  out.set_ports_used(static_cast<uint32_t>(pool_.used_pairs() * 2));
  out.set_ports_free(static_cast<uint32_t>((pool_.total_pairs() - pool_.used_pairs()) * 2));
  out.set_draining(draining_);
  return out;
}

uint32_t Relay::Drain() {
  draining_ = true;
  absl::MutexLock lock(&mu_);
  core::log::Info("draining", {{"sessions", std::to_string(sessions_.size())}});
  return static_cast<uint32_t>(sessions_.size());
}

relaypb::Session Relay::Snapshot(Session& s) {
  relaypb::Session out;
  Worker& w = *workers_[s.worker];
  w.Run([&] { out = SnapshotHere(s); });
  return out;
}

relaypb::Session Relay::SnapshotHere(Session& s) {
  relaypb::Session out;
  {
    out.set_id(s.id);
    out.set_call_id(s.call_id);
    out.set_instance(options_.instance);
    out.set_created_unix(absl::ToUnixSeconds(s.created));
    out.set_last_packet_unix(s.last_packet_ns.load() / 1000000000);
    out.set_idle(s.idle.load());
    for (int l = 0; l < 2; ++l) {
      const Leg& leg = s.legs[l];
      relaypb::Leg* pl = l == 0 ? out.mutable_set() : out.mutable_icp();
      pl->set_local_address(options_.media_address);
      pl->set_local_port(static_cast<uint32_t>(leg.ports.port));
      pl->set_suite(SuiteLabel(leg.suite));
      pl->set_local_key(leg.local_key);
      const Address& to = leg.latched_rtp.empty() ? leg.sdp_rtp : leg.latched_rtp;
      pl->set_remote_address(to.Host());
      pl->set_remote_port(static_cast<uint32_t>(to.Port()));
      pl->set_latched(!leg.latched_rtp.empty());
      const LegCounters& c = leg.counters;
      relaypb::LegStats* st = pl->mutable_stats();
      st->mutable_rtp_in()->set_packets(c.rtp_in_packets.Get());
      st->mutable_rtp_in()->set_bytes(c.rtp_in_bytes.Get());
      st->mutable_rtp_out()->set_packets(c.rtp_out_packets.Get());
      st->mutable_rtp_out()->set_bytes(c.rtp_out_bytes.Get());
      st->mutable_rtcp_in()->set_packets(c.rtcp_in_packets.Get());
      st->mutable_rtcp_in()->set_bytes(c.rtcp_in_bytes.Get());
      st->mutable_rtcp_out()->set_packets(c.rtcp_out_packets.Get());
      st->mutable_rtcp_out()->set_bytes(c.rtcp_out_bytes.Get());
      st->set_dropped_foreign_source(c.drops[static_cast<int>(Drop::kForeignSource)].Get());
      st->set_dropped_auth_failure(c.drops[static_cast<int>(Drop::kAuthFailure)].Get());
      st->set_dropped_replay(c.drops[static_cast<int>(Drop::kReplay)].Get());
      st->set_dropped_malformed(c.drops[static_cast<int>(Drop::kMalformed)].Get());
      st->set_fraction_lost(static_cast<uint32_t>(c.fraction_lost.Get()));
      st->set_cumulative_lost(static_cast<int32_t>(c.cumulative_lost.Get()));
      st->set_jitter(static_cast<uint32_t>(c.jitter.Get()));
    }
  }
  return out;
}

// -- persistence ------------------------------------------------------------------------------

namespace {

nlohmann::json SsrcsJson(const std::array<SsrcState, kTrackedSsrcs>& slots) {
  nlohmann::json a = nlohmann::json::array();
  for (const SsrcState& s : slots) {
    if (!s.used) continue;
    a.push_back({{"ssrc", s.ssrc}, {"roc", s.roc}, {"srtcp", s.srtcp_sent}, {"seq", s.last_seq}});
  }
  return a;
}

nlohmann::json AddressJson(const Address& a) {
  if (a.empty()) return nullptr;
  return {{"host", a.Host()}, {"port", a.Port()}};
}

Address AddressFrom(const nlohmann::json& j) {
  Address a;
  if (j.is_object()) Address::Parse(j.value("host", ""), core::JsonNumber<int>(j, "port", 0), &a);
  return a;
}

}  // namespace

absl::StatusOr<SessionRecord> SessionRecordFromJson(std::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) return absl::DataLossError("record is not JSON");
  SessionRecord r;
  try {
    r.call_id = j.value("call_id", "");
    r.created = absl::FromUnixMillis(core::JsonNumber<int64_t>(j, "created", 0));
    for (int l = 0; l < 2; ++l) {
      const auto it = j.find(kLegNames[l]);
      if (it == j.end() || !it->is_object()) {
        return absl::DataLossError(absl::StrCat(kLegNames[l], " leg missing"));
      }
      const nlohmann::json& lj = *it;
      LegRecord& leg = r.legs[l];
      absl::StatusOr<SrtpSuite> suite = SuiteOf(lj.value("suite", ""));
      if (!suite.ok()) return absl::DataLossError(suite.status().message());
      leg.suite = *suite;
      if (lj.contains("local_key")) leg.sealed_local_key = lj.value("local_key", "");
      if (lj.contains("remote_key")) leg.sealed_remote_key = lj.value("remote_key", "");
      leg.sdp_rtp = AddressFrom(lj.value("sdp_rtp", nlohmann::json()));
      leg.sdp_rtcp = AddressFrom(lj.value("sdp_rtcp", nlohmann::json()));
      leg.latched_rtp = AddressFrom(lj.value("latched_rtp", nlohmann::json()));
      leg.latched_rtcp = AddressFrom(lj.value("latched_rtcp", nlohmann::json()));
      for (bool inbound : {true, false}) {
        const nlohmann::json arr = lj.value(inbound ? "in" : "out", nlohmann::json());
        if (!arr.is_array()) continue;
        int slot = 0;
        for (const nlohmann::json& e : arr) {
          if (slot >= kTrackedSsrcs) break;
          SsrcState& st = inbound ? leg.in[slot] : leg.out[slot];
          st.used = true;
          st.ssrc = core::JsonNumber<uint32_t>(e, "ssrc", 0);
          st.roc = core::JsonNumber<uint32_t>(e, "roc", 0);
          st.srtcp_sent = core::JsonNumber<uint64_t>(e, "srtcp", 0);
          st.last_seq = core::JsonNumber<uint16_t>(e, "seq", 0);
          ++slot;
          if (st.srtcp_sent > kMaxRestoredSrtcp) {
            // The index is moved on packet by packet at the restore: a damaged count must not
            // hold up the start for ever.
            return absl::DataLossError(absl::StrCat(kLegNames[l], ": srtcp: ", st.srtcp_sent,
                                                    " is more than ", kMaxRestoredSrtcp,
                                                    " packets"));
          }
        }
      }
      leg.port = core::JsonNumber<int>(lj, "port", 0);
    }
  } catch (const std::exception& e) {
    // A field of the wrong type (nlohmann::json::exception) or anything else the record makes
    // a library throw.
    return absl::DataLossError(e.what());
  }
  return r;
}

Relay::SessionState Relay::CopyState(Session& s) {
  s.dirty.store(false);
  SessionState state;
  for (int l = 0; l < 2; ++l) {
    const Leg& leg = s.legs[l];
    state[l] = {leg.ports.port, leg.suite,       leg.local_key,    leg.remote_key, leg.sdp_rtp,
                leg.sdp_rtcp,   leg.latched_rtp, leg.latched_rtcp, leg.in_ssrcs,   leg.out_ssrcs};
  }
  return state;
}

absl::Status Relay::WriteState(const Session& s, const SessionState& state) {
  // One round trip for both.
  return redis_.Pipeline(StateCommands(s, state)).status();
}

std::vector<std::vector<std::string>> Relay::StateCommands(const Session& s,
                                                           const SessionState& state) const {
  nlohmann::json j;
  j["id"] = s.id;
  j["call_id"] = s.call_id;
  j["instance"] = options_.instance;
  j["created"] = absl::ToUnixMillis(s.created);
  for (int l = 0; l < 2; ++l) {
    const LegState& leg = state[l];
    const std::string ctx = absl::StrCat("relay:", s.id, ":", kLegNames[l]);
    nlohmann::json lj = {{"port", leg.port},
                         {"suite", SuiteLabel(leg.suite)},
                         {"sdp_rtp", AddressJson(leg.sdp_rtp)},
                         {"sdp_rtcp", AddressJson(leg.sdp_rtcp)},
                         {"latched_rtp", AddressJson(leg.latched_rtp)},
                         {"latched_rtcp", AddressJson(leg.latched_rtcp)},
                         {"in", SsrcsJson(leg.in)},
                         {"out", SsrcsJson(leg.out)}};
    if (!leg.local_key.empty()) lj["local_key"] = box_.Seal(leg.local_key, ctx + ":local");
    if (!leg.remote_key.empty()) lj["remote_key"] = box_.Seal(leg.remote_key, ctx + ":remote");
    j[kLegNames[l]] = lj;
  }
  return {{"SET", SessionKey(s.id), core::JsonDump(j)},
          {"SADD", IndexKey(options_.instance), s.id}};
}

absl::Status Relay::PersistDirty(const std::vector<Session*>& dirty) {
  if (dirty.empty()) return absl::OkStatus();
  // One hand-over per worker for all of its sessions, one round trip for all.
  std::vector<SessionState> states(dirty.size());
  for (size_t w = 0; w < workers_.size(); ++w) {
    std::vector<size_t> mine;
    for (size_t i = 0; i < dirty.size(); ++i) {
      if (static_cast<size_t>(dirty[i]->worker) == w) mine.push_back(i);
    }
    if (mine.empty()) continue;
    workers_[w]->Run([&] {
      for (size_t i : mine) states[i] = CopyState(*dirty[i]);
    });
  }
  std::vector<std::vector<std::string>> commands;
  commands.reserve(dirty.size() * 2);
  for (size_t i = 0; i < dirty.size(); ++i) {
    for (auto& c : StateCommands(*dirty[i], states[i])) commands.push_back(std::move(c));
  }
  absl::Status st = redis_.Pipeline(commands).status();
  if (!st.ok()) {
    // Written at the next round, with whatever changed meanwhile.
    for (Session* s : dirty) s->dirty.store(true);
  }
  return st;
}

absl::Status Relay::Restore() {
  absl::StatusOr<core::RedisReply> ids = redis_.Command({"SMEMBERS", IndexKey(options_.instance)});
  if (!ids.ok()) return ids.status();
  absl::MutexLock lock(&mu_);
  for (const core::RedisReply& id : ids->elements) {
    absl::StatusOr<core::RedisReply> raw = redis_.Command({"GET", SessionKey(id.str)});
    if (!raw.ok()) return raw.status();
    auto forget = [&](const std::string& why) {
      core::log::Warn("cannot restore a session; forgetting it",
                      {{"session", id.str}, {"error", why}});
      // Left behind, the record is met (and forgotten) again at the next start.
      if (absl::StatusOr<std::vector<core::RedisReply>> r = redis_.Pipeline(
              {{"SREM", IndexKey(options_.instance), id.str}, {"DEL", SessionKey(id.str)}});
          !r.ok()) {
        RedisWriteFailed("cannot forget the session in Redis", id.str, r.status());
      }
    };
    if (raw->is_nil()) {
      forget("record missing");
      continue;
    }
    absl::StatusOr<SessionRecord> rec = SessionRecordFromJson(raw->str);
    if (!rec.ok()) {
      forget(std::string(rec.status().message()));
      continue;
    }
    auto s = std::make_unique<Session>();
    s->id = id.str;
    std::string error;
    int bound = 0;
    try {
      s->call_id = rec->call_id;
      s->created = rec->created;
      for (int l = 0; l < 2 && error.empty(); ++l) {
        const LegRecord& lr = rec->legs[l];
        Leg& leg = s->legs[l];
        leg.suite = lr.suite;
        const std::string ctx = absl::StrCat("relay:", s->id, ":", kLegNames[l]);
        for (auto [field, sealed, dest] :
             {std::tuple<const char*, const std::optional<std::string>*, std::string*>{
                  "local_key", &lr.sealed_local_key, &leg.local_key},
              {"remote_key", &lr.sealed_remote_key, &leg.remote_key}}) {
          if (!sealed->has_value()) continue;
          absl::StatusOr<std::string> k =
              box_.Open(**sealed, ctx + (dest == &leg.local_key ? ":local" : ":remote"));
          if (!k.ok()) {
            error = absl::StrCat(field, ": ", k.status().message());
            break;
          }
          *dest = *std::move(k);
        }
        if (!error.empty()) break;
        leg.sdp_rtp = lr.sdp_rtp;
        leg.sdp_rtcp = lr.sdp_rtcp;
        leg.latched_rtp = lr.latched_rtp;
        leg.latched_rtcp = lr.latched_rtcp;
        if (absl::Status st = BuildContexts(leg, true, true); !st.ok()) {
          error = std::string(st.message());
          break;
        }
        // SRTP continues where it was: rollover counters, and SRTCP indexes moved past the
        // ones already used (each protected RTCP packet advances the index by one).
        leg.in_ssrcs = lr.in;
        leg.out_ssrcs = lr.out;
        for (bool inbound : {true, false}) {
          SrtpContext* c = inbound ? leg.inbound.get() : leg.outbound.get();
          if (c == nullptr || leg.suite == SrtpSuite::kNone) continue;
          for (const SsrcState& st : inbound ? leg.in_ssrcs : leg.out_ssrcs) {
            if (!st.used) continue;
            if (absl::Status roc = c->SetRoc(st.ssrc, st.roc); !roc.ok()) {
              // The stream starts at rollover counter 0 instead: only packets sent after a
              // rollover fail authentication, so the session is kept.
              core::log::Warn("cannot restore an SRTP rollover counter",
                              {{"session", id.str},
                               {"ssrc", std::to_string(st.ssrc)},
                               {"error", std::string(roc.message())}});
            }
            if (inbound) continue;
            alignas(16) uint8_t pkt[8 + kMaxTrailer] = {0x80, 201, 0, 1};
            for (uint64_t n = 0; n < st.srtcp_sent; ++n) {
              pkt[4] = static_cast<uint8_t>(st.ssrc >> 24);
              pkt[5] = static_cast<uint8_t>(st.ssrc >> 16);
              pkt[6] = static_cast<uint8_t>(st.ssrc >> 8);
              pkt[7] = static_cast<uint8_t>(st.ssrc);
              size_t len = 8;
              // Only the index advance is wanted: the packet is thrown away.
              (void)c->ProtectRtcp(pkt, &len, sizeof(pkt));
            }
          }
        }
        absl::StatusOr<PortPair> p = pool_.AcquireExactly(lr.port);
        if (!p.ok()) {
          error = std::string(p.status().message());
          break;
        }
        leg.ports = *p;
        ++bound;
      }
    } catch (const std::exception& e) {
      // Anything the record makes a library throw: this record is damaged, the others are
      // restored.
      error = e.what();
    }
    if (!error.empty()) {
      for (int l = 0; l < bound; ++l) pool_.Release(s->legs[l].ports);
      forget(error);
      continue;
    }
    Worker& w = LeastLoaded();
    absl::Status attached;
    w.Run([&] { attached = w.Attach(s.get()); });
    if (!attached.ok()) return attached;
    // The idle clock starts again at the restart.
    s->last_packet_ns.store(absl::ToUnixNanos(clock_.Now()));
    core::log::Info("session restored", {{"session", s->id}, {"call_id", s->call_id}});
    sessions_[s->id] = std::move(s);
    ++restored_;
  }
  metrics_->sessions.Set(static_cast<double>(sessions_.size()));
  return absl::OkStatus();
}

// -- housekeeping ---------------------------------------------------------------------------

void Relay::SetGrpcAddress(const std::string& address) {
  {
    absl::MutexLock lock(&hk_mu_);
    grpc_address_ = address;
  }
  Heartbeat();  // the control plane learns the address at once, not at the next heartbeat
}

void Relay::Heartbeat() {
  std::string grpc;
  {
    absl::MutexLock lock(&hk_mu_);
    grpc = grpc_address_;
  }
  // Not advertised before the API listens (SetGrpcAddress): the SIP edge would pick an
  // instance it cannot reach.
  if (grpc.empty()) return;
  nlohmann::json j = {{"grpc", grpc},
                      {"media", options_.media_address},
                      {"ports_free", (pool_.total_pairs() - pool_.used_pairs()) * 2},
                      {"ports_used", pool_.used_pairs() * 2},
                      {"sessions", metrics_->sessions.Value()},
                      {"draining", draining_.load()},
                      {"seen", absl::ToUnixSeconds(clock_.Now())}};
  absl::StatusOr<core::RedisReply> r =
      redis_.Command({"HSET", kInstancesKey, options_.instance, core::JsonDump(j)});
  // Tried again every second: counted each time, logged when it starts and stops failing.
  if (!r.ok()) {
    metrics_->redis_write_failures.Increment();
    if (!heartbeat_failing_.exchange(true)) {
      core::log::Warn("cannot advertise the instance in Redis; trying again every second",
                      {{"error", std::string(r.status().message())}});
    }
  } else if (heartbeat_failing_.exchange(false)) {
    core::log::Info("instance advertised in Redis again", {});
  }
}

void Relay::RedisWriteFailed(const char* what, const std::string& session,
                             const absl::Status& status) {
  metrics_->redis_write_failures.Increment();
  core::log::Warn(what, {{"session", session}, {"error", std::string(status.message())}});
}

void Relay::CollectMetricsFor(Session& s) {
  RelayMetrics& m = *metrics_;
  for (int l = 0; l < 2; ++l) {
    const LegCounters& c = s.legs[l].counters;
    LegCounted& n = s.legs[l].counted;
    RelayMetrics::Feed(*m.packets_by[l][0], n.in_packets, c.rtp_in_packets.Get());
    RelayMetrics::Feed(*m.bytes_by[l][0], n.in_bytes, c.rtp_in_bytes.Get());
    RelayMetrics::Feed(*m.packets_by[l][1], n.out_packets, c.rtp_out_packets.Get());
    RelayMetrics::Feed(*m.bytes_by[l][1], n.out_bytes, c.rtp_out_bytes.Get());
    for (int d = 0; d < kDropReasons; ++d) {
      const uint64_t before = n.drops[d];
      RelayMetrics::Feed(*m.drops_by[l][d], n.drops[d], c.drops[d].Get());
      if (static_cast<Drop>(d) == Drop::kAuthFailure && n.drops[d] > before) {
        m.auth_failures.Increment(static_cast<double>(n.drops[d] - before));
      }
    }
  }
}

void Relay::CollectMetrics() {
  for (auto& [id, s] : sessions_) CollectMetricsFor(*s);
  metrics_->ports_used.Set(static_cast<double>(pool_.used_pairs() * 2));
  metrics_->ports_free.Set(static_cast<double>((pool_.total_pairs() - pool_.used_pairs()) * 2));
}

void Relay::Housekeeping() {
  std::vector<std::unique_ptr<Session>> ended;  // orphans, finished outside the lock
  hk_mu_.Lock();
  while (!hk_stop_) {
    hk_mu_.Unlock();
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = clock_.Now();
      std::vector<std::string> orphans;
      std::vector<Session*> dirty;
      for (auto& [id, s] : sessions_) {
        const int64_t last_ns = s->last_packet_ns.load();
        const absl::Time last = last_ns ? absl::FromUnixNanos(last_ns) : s->created;
        const bool idle = now - last > options_.idle_timeout;
        if (idle && !s->idle.exchange(true)) {
          metrics_->idle.Increment();
          core::log::Info("session idle", {{"session", id}, {"call_id", s->call_id}});
          // Published once: without it the call stays up until a phone hangs up, and the
          // session (still marked idle for Get) ends as an orphan if no packet comes.
          if (absl::StatusOr<core::RedisReply> r =
                  redis_.Command({"PUBLISH", "rwg:relay:events", absl::StrCat("idle ", id)});
              !r.ok()) {
            RedisWriteFailed("cannot publish the idle event", id, r.status());
          }
        } else if (!idle) {
          s->idle.store(false);
        }
        if (now - last > options_.orphan_timeout) orphans.push_back(id);
        if (s->dirty.load()) dirty.push_back(s.get());
      }
      if (absl::Status st = PersistDirty(dirty); !st.ok()) {
        core::log::Warn(
            "cannot save session state; retrying in a second",
            {{"sessions", std::to_string(dirty.size())}, {"error", std::string(st.message())}});
      }
      for (const std::string& id : orphans) {
        auto it = sessions_.find(id);
        ended.push_back(std::move(it->second));
        sessions_.erase(it);
      }
      metrics_->sessions.Set(static_cast<double>(sessions_.size()));
      CollectMetrics();
    }
    for (std::unique_ptr<Session>& s : ended) Finish(std::move(s), "orphaned", nullptr);
    ended.clear();
    Heartbeat();
    hk_mu_.Lock();
    hk_mu_.AwaitWithTimeout(absl::Condition(&hk_stop_), absl::Seconds(1));
  }
  hk_mu_.Unlock();
}

}  // namespace rwg::media_relay
