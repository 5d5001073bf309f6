// The relay's state in Redis (see relay.h): each session's record (addresses, keys sealed
// with the secret key, SRTP rollover counters and SRTCP indexes) and this instance's index of
// them, written as sessions change; reading a record back (SessionRecordFromJson) and
// restoring this instance's sessions after a restart; the heartbeat that advertises the
// instance and its load for the SIP edge. Sessions themselves, the API and housekeeping are
// in relay.cc.
#include <nlohmann/json.hpp>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/json.h"
#include "services/core/log.h"
#include "services/core/relay_instances.h"
#include "services/media_relay/relay.h"
#include "services/media_relay/relay_internal.h"
#include "services/media_relay/rtp.h"

namespace rwg::media_relay {

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
  return {{"SET", core::RelaySessionKey(s.id), core::JsonDump(j)},
          {"SADD", core::RelaySessionIndexKey(options_.instance), s.id}};
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

absl::Status RestoreLegState(const LegRecord& lr, const core::SecretBox& box,
                             const std::string& context, Leg& leg,
                             const std::function<void(uint32_t, const absl::Status&)>& roc_failed) {
  leg.suite = lr.suite;
  for (auto [field, sealed, dest] :
       {std::tuple<const char*, const std::optional<std::string>*, std::string*>{
            "local_key", &lr.sealed_local_key, &leg.local_key},
        {"remote_key", &lr.sealed_remote_key, &leg.remote_key}}) {
    if (!sealed->has_value()) continue;
    absl::StatusOr<std::string> k =
        box.Open(**sealed, context + (dest == &leg.local_key ? ":local" : ":remote"));
    if (!k.ok()) return absl::DataLossError(absl::StrCat(field, ": ", k.status().message()));
    *dest = *std::move(k);
  }
  leg.sdp_rtp = lr.sdp_rtp;
  leg.sdp_rtcp = lr.sdp_rtcp;
  leg.latched_rtp = lr.latched_rtp;
  leg.latched_rtcp = lr.latched_rtcp;
  if (absl::Status st = BuildContexts(leg, true, true); !st.ok()) return st;
  // SRTP continues where it was: rollover counters, and SRTCP indexes moved past the ones
  // already used (each protected RTCP packet advances the index by one).
  leg.in_ssrcs = lr.in;
  leg.out_ssrcs = lr.out;
  for (bool inbound : {true, false}) {
    SrtpContext* c = inbound ? leg.inbound.get() : leg.outbound.get();
    if (c == nullptr || leg.suite == SrtpSuite::kNone) continue;
    for (const SsrcState& st : inbound ? leg.in_ssrcs : leg.out_ssrcs) {
      if (!st.used) continue;
      if (absl::Status roc = c->SetRoc(st.ssrc, st.roc); !roc.ok()) roc_failed(st.ssrc, roc);
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
  return absl::OkStatus();
}

absl::Status Relay::Restore() {
  absl::StatusOr<core::RedisReply> ids =
      redis_.Command({"SMEMBERS", core::RelaySessionIndexKey(options_.instance)});
  if (!ids.ok()) return ids.status();
  absl::MutexLock lock(&mu_);
  for (const core::RedisReply& id : ids->elements) {
    absl::StatusOr<core::RedisReply> raw = redis_.Command({"GET", core::RelaySessionKey(id.str)});
    if (!raw.ok()) return raw.status();
    auto forget = [&](const std::string& why) {
      core::log::Warn("cannot restore a session; forgetting it",
                      {{"session", id.str}, {"error", why}});
      // Left behind, the record is met (and forgotten) again at the next start.
      if (absl::StatusOr<std::vector<core::RedisReply>> r =
              redis_.Pipeline({{"SREM", core::RelaySessionIndexKey(options_.instance), id.str},
                               {"DEL", core::RelaySessionKey(id.str)}});
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
        absl::Status st =
            RestoreLegState(lr, box_, absl::StrCat("relay:", s->id, ":", kLegNames[l]), leg,
                            [&](uint32_t ssrc, const absl::Status& roc) {
                              // The stream starts at rollover counter 0 instead: only packets sent
                              // after a rollover fail authentication, so the session is kept.
                              core::log::Warn("cannot restore an SRTP rollover counter",
                                              {{"session", id.str},
                                               {"ssrc", std::to_string(ssrc)},
                                               {"error", std::string(roc.message())}});
                            });
        if (!st.ok()) {
          error = std::string(st.message());
          break;
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
  core::RelayHeartbeat h;
  h.grpc = grpc;
  h.media = options_.media_address;
  h.ports_free = static_cast<int64_t>((pool_.total_pairs() - pool_.used_pairs()) * 2);
  h.ports_used = static_cast<int64_t>(pool_.used_pairs() * 2);
  h.sessions = static_cast<int64_t>(metrics_->sessions.Value());
  h.draining = draining_.load();
  h.seen_unix = absl::ToUnixSeconds(clock_.Now());
  absl::StatusOr<core::RedisReply> r = redis_.Command(
      {"HSET", core::kRelayInstancesKey, options_.instance, core::EncodeRelayHeartbeat(h)});
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

}  // namespace rwg::media_relay
