// The media relay's sessions (see relay.h): allocation from the port pool onto the least
// loaded packet worker, updates (keys, suites, addresses) applied on the session's worker,
// deletion, snapshots for the API, draining, and housekeeping (idle and orphan sessions,
// metrics, persisting changed sessions, the heartbeat). Their Redis records, the restore
// after a restart and the heartbeat's advert are in relay_redis.cc.
#include "services/media_relay/relay.h"

#include <sys/resource.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/log.h"
#include "services/core/thread.h"
#include "services/media_relay/relay_internal.h"
#include "services/media_relay/rtp.h"

namespace rwg::media_relay {

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
  // A session holds four descriptors (RTP and RTCP of two legs): without a limit of its own the
  // relay takes no more sessions than its descriptor limit leaves room for (past it, every
  // allocation would fail on the first socket anyway).
  rlimit files{};
  if (options_.max_sessions == 0 && getrlimit(RLIMIT_NOFILE, &files) == 0 &&
      files.rlim_cur != RLIM_INFINITY) {
    const rlim_t reserve = 512;  // gRPC, Redis, io_uring, metrics, logs
    options_.max_sessions =
        files.rlim_cur > reserve + 4 ? static_cast<int>((files.rlim_cur - reserve) / 4) : 1;
    limit_from_descriptors_ = true;
  }
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
      return absl::ResourceExhaustedError(absl::StrCat(
          "session limit reached (", options_.max_sessions,
          limit_from_descriptors_ ? ", from the descriptor limit: raise RLIMIT_NOFILE for more)"
                                  : ")"));
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
  if (absl::StatusOr<std::vector<core::RedisReply>> r =
          redis_.Pipeline({{"DEL", core::RelaySessionKey(s->id)},
                           {"SREM", core::RelaySessionIndexKey(options_.instance), s->id}});
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

// -- housekeeping ---------------------------------------------------------------------------

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
                  redis_.Command({"PUBLISH", core::kRelayEventsChannel, absl::StrCat("idle ", id)});
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
