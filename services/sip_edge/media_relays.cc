#include "services/sip_edge/media_relays.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "rwg/relay/v1/relay.grpc.pb.h"
#include "services/core/keys.h"
#include "services/core/log.h"
#include "services/core/relay_instances.h"
#include "services/sip_edge/async_redis.h"
#include "services/sip_edge/loop_queue.h"

namespace rwg::sip_edge {

namespace relaypb = ::rwg::relay::v1;

std::vector<RelayCandidate> UsableRelays(
    const std::vector<std::pair<std::string, std::string>>& rows, absl::Time now,
    absl::Duration stale_after) {
  std::vector<RelayCandidate> out;
  for (const auto& [name, value] : rows) {
    // A damaged heartbeat (not JSON, fields of the wrong type): not an instance to use.
    absl::StatusOr<core::RelayHeartbeat> h = core::DecodeRelayHeartbeat(value);
    if (!h.ok()) continue;
    // An address ending in :0 is a relay still starting (its port not known yet).
    if (h->grpc.empty() || absl::EndsWith(h->grpc, ":0") || h->draining || h->ports_free < 4 ||
        absl::FromUnixSeconds(h->seen_unix) + stale_after < now) {
      continue;
    }
    out.push_back(RelayCandidate{RelayInstance{name, h->grpc}, h->sessions, h->ports_free});
  }
  return out;
}

RelayCandidate* LeastLoaded(std::vector<RelayCandidate>& candidates) {
  RelayCandidate* best = nullptr;
  for (RelayCandidate& c : candidates) {
    if (c.ports_free < 4) continue;  // full since it was read
    if (!best || c.sessions < best->sessions ||
        (c.sessions == best->sessions && c.ports_free > best->ports_free)) {
      best = &c;
    }
  }
  return best;
}

std::optional<RelayInstance> PickRelay(const std::vector<std::pair<std::string, std::string>>& rows,
                                       absl::Time now, absl::Duration stale_after) {
  std::vector<RelayCandidate> usable = UsableRelays(rows, now, stale_after);
  RelayCandidate* best = LeastLoaded(usable);
  if (best == nullptr) return std::nullopt;
  return best->instance;
}

namespace {

absl::Status FromGrpc(const char* rpc, const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("media relay ", rpc, ": ", s.error_message()));
}

void FillRemote(const RelayRemote& r, relaypb::LegRequest* leg) {
  leg->set_suite(r.suite);
  leg->set_remote_key(r.key);
  leg->set_remote_address(r.address);
  leg->set_remote_port(static_cast<uint32_t>(r.port));
  leg->set_remote_rtcp_port(static_cast<uint32_t>(r.rtcp_port));
}

void FillUpdate(const RelayRemote& r, bool new_key, relaypb::LegUpdate* leg) {
  leg->set_suite(r.suite);
  leg->set_remote_key(r.key);
  leg->set_remote_address(r.address);
  leg->set_remote_port(static_cast<uint32_t>(r.port));
  leg->set_remote_rtcp_port(static_cast<uint32_t>(r.rtcp_port));
  leg->set_new_local_key(new_key);
}

RelayLocal LocalOf(const relaypb::Leg& l) {
  return RelayLocal{l.local_address(), static_cast<int>(l.local_port()), l.suite(), l.local_key()};
}

class GrpcMediaRelays : public MediaRelays {
 public:
  GrpcMediaRelays(MediaRelaysOptions options, AsyncRedis& redis, LoopQueue& loop,
                  core::Clock& clock)
      : options_(std::move(options)), redis_(redis), loop_(loop), clock_(clock) {
    if (options_.plaintext) {
      creds_ = grpc::InsecureChannelCredentials();
    } else {
      // TLS with the relay's certificate verified: against the given CA, else the system's.
      grpc::SslCredentialsOptions o;
      if (!options_.ca_file.empty()) {
        std::ifstream in(options_.ca_file);
        std::stringstream ss;
        ss << in.rdbuf();
        o.pem_root_certs = ss.str();
      }
      creds_ = grpc::SslCredentials(o);
    }
  }

  void Allocate(const std::string& call_id, const RelayRemote& set, const RelayRemote& icp,
                Done done) override {
    if (listed_ && clock_.Now() - listed_at_ < options_.refresh) {
      return Place(call_id, set, icp, done);
    }
    redis_.Command(
        {"HGETALL", core::kRelayInstancesKey},
        [this, call_id, set, icp, done = std::move(done)](absl::StatusOr<core::RedisReply> r) {
          if (!r.ok()) {
            return done(absl::UnavailableError("media relays unknown: Redis unavailable"));
          }
          std::vector<std::pair<std::string, std::string>> rows;
          for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
            rows.emplace_back(r->elements[i].str, r->elements[i + 1].str);
          }
          candidates_ = UsableRelays(rows, clock_.Now(), options_.stale_after);
          listed_ = true;
          listed_at_ = clock_.Now();
          Place(call_id, set, icp, done);
        });
  }

  // Allocates the session on the least loaded instance known (on the loop thread).
  void Place(const std::string& call_id, const RelayRemote& set, const RelayRemote& icp,
             const Done& done) {
    RelayCandidate* pick = LeastLoaded(candidates_);
    if (pick == nullptr) {
      listed_ = false;  // read again next time: an instance may have come up
      return done(absl::UnavailableError("no media relay available"));
    }
    ++pick->sessions;
    pick->ports_free -= 4;
    auto* call = new Call<relaypb::AllocateRequest, relaypb::Session>();
    call->req.set_call_id(call_id);
    FillRemote(set, call->req.mutable_set());
    FillRemote(icp, call->req.mutable_icp());
    Prepare(call->ctx);
    const std::string instance = pick->instance.name;
    const std::string grpc = pick->instance.grpc;
    Stub(grpc)->async()->Allocate(
        &call->ctx, &call->req, &call->resp,
        [this, call, instance, grpc, done](const grpc::Status& s) {
          loop_.Post([this, call, instance, grpc, done, s]() {
            std::unique_ptr<Call<relaypb::AllocateRequest, relaypb::Session>> owned(call);
            if (!s.ok()) {
              // The list is read again for the next session: this instance may be gone or
              // full.
              if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                  s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                  s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
                listed_ = false;
              }
              return done(FromGrpc("Allocate", s));
            }
            done(ToSession(call->resp, instance, grpc));
          });
        });
  }

  void Update(const RelaySession& session, const RelayRemote* set, const RelayRemote* icp,
              bool new_set_key, bool new_icp_key, Done done) override {
    auto* call = new Call<relaypb::UpdateRequest, relaypb::Session>();
    call->req.set_id(session.id);
    if (set != nullptr || new_set_key) {
      FillUpdate(set ? *set : RelayRemote{}, new_set_key, call->req.mutable_set());
    }
    if (icp != nullptr || new_icp_key) {
      FillUpdate(icp ? *icp : RelayRemote{}, new_icp_key, call->req.mutable_icp());
    }
    Prepare(call->ctx);
    const std::string instance = session.instance;
    const std::string grpc = session.grpc;
    Stub(grpc)->async()->Update(
        &call->ctx, &call->req, &call->resp,
        [this, call, instance, grpc, done](const grpc::Status& s) {
          loop_.Post([call, instance, grpc, done, s]() {
            std::unique_ptr<Call<relaypb::UpdateRequest, relaypb::Session>> owned(call);
            if (!s.ok()) return done(FromGrpc("Update", s));
            done(ToSession(call->resp, instance, grpc));
          });
        });
  }

  void Delete(const RelaySession& session) override {
    StartDelete(PendingDelete{session, clock_.Now(), absl::Seconds(2), absl::Time(), 0});
  }

  void Sweep() override {
    const absl::Time now = clock_.Now();
    std::vector<PendingDelete> failed;
    {
      absl::MutexLock lock(&failed_->mu);
      failed.swap(failed_->deletes);
    }
    for (PendingDelete& d : failed) {
      const bool expired = now - d.first >= options_.delete_retry_for;
      if (expired || retries_.size() >= kMaxRetries) {
        core::log::Warn(failed_->giving_up_log, "cannot delete the media relay session; giving up",
                        {{"session", d.session.id},
                         {"instance", d.session.instance},
                         {"attempts", std::to_string(d.attempts)},
                         {"reason", expired ? "tried for delete-retry-for" : "too many waiting"}});
        continue;
      }
      d.next = now + d.delay;
      d.delay = std::min(d.delay * 2, absl::Seconds(30));
      retries_.push_back(std::move(d));
    }
    // The due ones moved to the end and taken from there, in one pass.
    auto first_due = std::stable_partition(retries_.begin(), retries_.end(),
                                           [now](const PendingDelete& d) { return d.next > now; });
    std::vector<PendingDelete> due(std::make_move_iterator(first_due),
                                   std::make_move_iterator(retries_.end()));
    retries_.erase(first_due, retries_.end());
    for (PendingDelete& d : due) StartDelete(std::move(d));
  }

 private:
  struct PendingDelete {
    RelaySession session;
    absl::Time first;      // the first attempt
    absl::Duration delay;  // before the next attempt
    absl::Time next;
    int attempts;
  };
  // Deletions that failed, handed from gRPC's threads to Sweep; shared with the calls in
  // flight, which may complete after this client is gone (at shutdown).
  struct FailedDeletes {
    absl::Mutex mu;
    std::vector<PendingDelete> deletes ABSL_GUARDED_BY(mu);
    // A relay overloaded or restarting refuses every deletion: a few lines, not one each. On
    // the system clock: the callbacks that log may outlive the client and its clock.
    core::log::Limiter refused_log{core::SystemClock::Get()};
    core::log::Limiter giving_up_log{core::SystemClock::Get()};
  };
  // Deletions waiting to be asked again, at most (some 50 MiB; a relay gone for 5 minutes
  // at 600 calls a second): beyond, the relay ends the session as an orphan.
  static constexpr size_t kMaxRetries = 200'000;

  void StartDelete(PendingDelete d) {
    ++d.attempts;
    auto* call = new Call<relaypb::DeleteRequest, relaypb::DeleteResponse>();
    call->req.set_id(d.session.id);
    Prepare(call->ctx);
    Stub(d.session.grpc)
        ->async()
        ->Delete(
            &call->ctx, &call->req, &call->resp,
            [failed = failed_, call, d](const grpc::Status& s) mutable {
              std::unique_ptr<Call<relaypb::DeleteRequest, relaypb::DeleteResponse>> owned(call);
              if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) return;
              // Not reached (restarting), no answer in time, or too busy to take the request
              // (its request threads all taken): asked again.
              const bool again = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                                 s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                                 s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
              if (d.attempts == 1 || !again) {
                core::log::Warn(failed->refused_log,
                                again ? "cannot delete the media relay session; trying again"
                                      : "cannot delete the media relay session",
                                {{"session", d.session.id},
                                 {"instance", d.session.instance},
                                 {"error", s.error_message()}});
              }
              if (!again) return;
              absl::MutexLock lock(&failed->mu);
              failed->deletes.push_back(std::move(d));
            });
  }

  template <typename Req, typename Resp>
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
  };

  static RelaySession ToSession(const relaypb::Session& s, const std::string& instance,
                                const std::string& grpc) {
    RelaySession out;
    out.id = s.id();
    out.instance = instance;
    out.grpc = grpc;
    out.set = LocalOf(s.set());
    out.icp = LocalOf(s.icp());
    return out;
  }

  void Prepare(grpc::ClientContext& ctx) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
    if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
  }

  relaypb::RelayService::Stub* Stub(const std::string& address) {
    absl::MutexLock lock(&mu_);
    auto& stub = stubs_[address];
    if (!stub) stub = relaypb::RelayService::NewStub(grpc::CreateChannel(address, creds_));
    return stub.get();
  }

  MediaRelaysOptions options_;
  AsyncRedis& redis_;
  LoopQueue& loop_;
  core::Clock& clock_;
  std::shared_ptr<grpc::ChannelCredentials> creds_;
  // The instances last read from Redis (loop thread only).
  std::vector<RelayCandidate> candidates_;
  bool listed_ = false;
  absl::Time listed_at_;
  std::vector<PendingDelete> retries_;  // deletions to try again (loop thread only)
  std::shared_ptr<FailedDeletes> failed_ = std::make_shared<FailedDeletes>();
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<relaypb::RelayService::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<MediaRelays> NewMediaRelays(MediaRelaysOptions options, AsyncRedis& redis,
                                            LoopQueue& loop, core::Clock& clock) {
  return std::make_unique<GrpcMediaRelays>(std::move(options), redis, loop, clock);
}

}  // namespace rwg::sip_edge
