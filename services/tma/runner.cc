#include "services/tma/runner.h"

#include <algorithm>
#include <cstddef>
#include <deque>
#include <exception>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"

namespace rwg::tma {
namespace {

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Files whose contents one connection reads from Redis at once, and their bytes at most.
constexpr size_t kFetchBatch = 32;
constexpr uint64_t kFetchBytes = uint64_t{1} << 20;
// Files written that are recorded in Redis together, and how long the first of them waits.
constexpr size_t kRecordBatch = 16;
constexpr absl::Duration kRecordAfter = absl::Milliseconds(100);

}  // namespace

Runner::Runner(TmaStore& store, TargetFactory targets, RunnerOptions options,
               prometheus::Registry& registry)
    : store_(store),
      targets_(std::move(targets)),
      options_(std::move(options)),
      deployments_(prometheus::BuildCounter()
                       .Name("rwg_tma_deployments_total")
                       .Help("Deployments run to their end, by outcome (completed, failed)")
                       .Register(registry)),
      files_(prometheus::BuildCounter()
                 .Name("rwg_tma_files_total")
                 .Help("Files of deployments, by result (written, unchanged, failed)")
                 .Register(registry)),
      bytes_(prometheus::BuildCounter()
                 .Name("rwg_tma_bytes_written_total")
                 .Help("Bytes written to download servers")
                 .Register(registry)
                 .Add({})),
      duration_(prometheus::BuildHistogram()
                    .Name("rwg_tma_deployment_duration_seconds")
                    .Help("Time from a deployment's start (or resumption) to its end")
                    .Register(registry)
                    .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.5, 1, 5, 10, 30, 60,
                                                                     300, 900, 3600})) {
  for (const char* o : {"completed", "failed"}) deployments_.Add({{"outcome", o}});
  for (const char* r : {"written", "unchanged", "failed"}) files_.Add({{"result", r}});
}

Runner::~Runner() { Stop(); }

void Runner::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Runner::Stop() {
  stop_.store(true);
  Wake();
  if (thread_.joinable()) thread_.join();
}

void Runner::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void Runner::Ended() {
  absl::MutexLock lock(&ends_mu_);
  ++ends_;
}

uint64_t Runner::Ends() {
  absl::MutexLock lock(&ends_mu_);
  return ends_;
}

uint64_t Runner::AwaitEnd(uint64_t seen, absl::Duration timeout) {
  absl::MutexLock lock(&ends_mu_);
  auto ended = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(ends_mu_) { return ends_ != seen; };
  ends_mu_.AwaitWithTimeout(absl::Condition(&ended), timeout);
  return ends_;
}

void Runner::Loop() {
  while (!stop_.load()) {
    try {
      absl::StatusOr<std::vector<std::string>> active = store_.Active();
      if (active.ok()) {
        for (const std::string& id : *active) {
          if (stop_.load()) break;
          absl::StatusOr<bool> ran = RunOne(id);
          if (!ran.ok()) {
            core::log::Warn("deployment not run",
                            {{"deployment", id}, {"error", Message(ran.status())}});
          }
        }
      }
    } catch (const std::exception& e) {
      core::log::Warn("deployment runner error", {{"error", e.what()}});
    }
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return woken_; };
    mu_.AwaitWithTimeout(absl::Condition(&woken), options_.scan);
    woken_ = false;
  }
}

absl::StatusOr<bool> Runner::RunOne(const std::string& id) {
  absl::StatusOr<bool> leased = store_.TakeLease(id, options_.owner, options_.lease);
  if (!leased.ok()) return leased.status();
  if (!*leased) return false;
  const absl::Time started = absl::Now();
  // A lease Redis could not release lapses by itself after options_.lease.
  auto release = [&] { (void)store_.ReleaseLease(id, options_.owner); };

  absl::StatusOr<std::optional<pb::Deployment>> d = store_.GetDeployment(id);
  if (!d.ok()) {
    release();
    return d.status();
  }
  if (!d->has_value() || (*d)->state() == pb::DEPLOYMENT_STATE_COMPLETED ||
      (*d)->state() == pb::DEPLOYMENT_STATE_FAILED) {
    // Gone or ended meanwhile: nothing to run. Finish only takes it off the active set; if Redis
    // fails here, the next pass finds it the same way and tries again.
    (void)store_.Finish(id, d->has_value() ? (*d)->state() : pb::DEPLOYMENT_STATE_FAILED,
                        d->has_value() ? (*d)->error() : "deployment record lost");
    release();
    return true;
  }
  const std::string server_name = (*d)->server();
  auto fail = [&](const std::string& error) -> absl::StatusOr<bool> {
    store_.RecordEvent(id, "deployment.failed", "", error);
    absl::Status s = store_.Finish(id, pb::DEPLOYMENT_STATE_FAILED, error);
    Ended();
    deployments_.Add({{"outcome", "failed"}}).Increment();
    duration_.Observe(absl::ToDoubleSeconds(absl::Now() - started));
    core::log::Warn("deployment failed", {{"deployment", id}, {"error", error}});
    release();
    if (!s.ok()) return s;
    return true;
  };

  absl::StatusOr<std::optional<pb::Server>> server = store_.GetServer(server_name, true);
  if (!server.ok()) {
    release();
    return server.status();
  }
  if (!server->has_value()) {
    return fail(absl::StrCat("download server ", server_name, " no longer exists"));
  }
  absl::StatusOr<std::vector<PlannedFile>> plan = store_.Plan(id);
  if (!plan.ok()) return fail(Message(plan.status()));
  absl::StatusOr<std::set<std::string>> done = store_.DoneFiles(id);
  if (!done.ok()) {
    release();
    return done.status();
  }
  if (absl::Status s = store_.SetRunning(id); !s.ok()) {
    release();
    return s;
  }
  store_.RecordEvent(
      id,
      (*d)->state() == pb::DEPLOYMENT_STATE_RUNNING ? "deployment.resumed" : "deployment.started",
      "", absl::StrCat(done->size(), " of ", plan->size(), " files already done"));
  core::log::Info("deployment running", {{"deployment", id},
                                         {"server", server_name},
                                         {"files", std::to_string(plan->size())},
                                         {"done", std::to_string(done->size())}});

  // What the server has and what tma last wrote there: a file listed with the size planned
  // and last written with this SHA-256 is not written again.
  std::vector<std::unique_ptr<Target>> targets;
  const int n = std::max(1, options_.parallel);
  targets.reserve(n);
  for (int i = 0; i < n; ++i) targets.push_back(targets_(**server));
  absl::StatusOr<std::vector<RemoteFile>> listed = targets[0]->List();
  if (!listed.ok()) {
    return fail(absl::StrCat("cannot list the server's directory: ", Message(listed.status())));
  }
  std::map<std::string, uint64_t> on_server;
  for (const RemoteFile& f : *listed) on_server[f.name] = f.size;
  // Temporary files of this deployment's files left by an instance that died mid-upload
  // (the rename never came): removed before anything else, so none stays behind.
  std::set<std::string> planned;
  for (const PlannedFile& f : *plan) planned.insert(f.name);
  for (const RemoteFile& f : *listed) {
    const size_t tmp = f.name.find(".rwg-tmp-");
    if (tmp == std::string::npos || planned.count(f.name.substr(0, tmp)) == 0) continue;
    if (absl::Status s = targets[0]->Delete(f.name); s.ok()) {
      store_.RecordEvent(id, "file.cleaned", f.name,
                         "a temporary file left by an interrupted upload");
    } else {
      core::log::Warn("cannot remove a temporary file",
                      {{"deployment", id}, {"file", f.name}, {"error", Message(s)}});
    }
  }
  absl::StatusOr<std::map<std::string, std::string>> manifest = store_.Manifest(server_name);
  if (!manifest.ok()) {
    release();
    return manifest.status();
  }

  std::deque<PlannedFile> todo;
  std::vector<TmaStore::Done> unchanged;
  for (const PlannedFile& f : *plan) {
    if (done->count(f.name) != 0) continue;
    auto m = manifest->find(f.name);
    auto l = on_server.find(f.name);
    if (m != manifest->end() && m->second == f.sha256 && l != on_server.end() &&
        l->second == f.size) {
      unchanged.push_back({&f, true});
      continue;
    }
    todo.push_back(f);
  }
  // Files the server already has are recorded at once (FilesDone takes them in batches; if one
  // fails, those of the batches before are recorded but not counted in the metric, and the
  // deployment fails).
  if (!unchanged.empty()) {
    absl::StatusOr<size_t> counted = store_.FilesDone(id, server_name, unchanged);
    if (!counted.ok()) return fail(Message(counted.status()));
    files_.Add({{"result", "unchanged"}}).Increment(static_cast<double>(unchanged.size()));
  }

  absl::Mutex mu;
  std::string error;  // the first failure
  bool lost = false;  // the lease went to another instance
  absl::Time renewed = absl::Now();
  // Whether to go on with another file: no failure, lease kept (renewed when due), not stopping.
  auto going = [&]() -> bool {
    absl::MutexLock lock(&mu);
    if (!error.empty() || lost || stop_.load()) return false;
    if (absl::Now() - renewed > options_.lease / 3) {
      absl::StatusOr<bool> kept = store_.TakeLease(id, options_.owner, options_.lease);
      if (kept.ok() && !*kept) {
        lost = true;
        return false;
      }
      renewed = absl::Now();
    }
    return true;
  };
  // The next files for one connection: up to kFetchBatch of them and kFetchBytes together (at
  // least one), so that their contents come from Redis in one round trip; never more than its
  // share of what is left, so that a small deployment still uses every connection.
  auto next = [&](std::vector<PlannedFile>* batch) -> bool {
    batch->clear();
    if (!going()) return false;
    absl::MutexLock lock(&mu);
    const size_t share = std::min(kFetchBatch, (todo.size() + n - 1) / static_cast<size_t>(n));
    uint64_t bytes = 0;
    while (!todo.empty() && batch->size() < share &&
           (batch->empty() || bytes + todo.front().size <= kFetchBytes)) {
      bytes += todo.front().size;
      batch->push_back(std::move(todo.front()));
      todo.pop_front();
    }
    return !batch->empty();
  };
  auto record_error = [&](const std::string& e) {
    absl::MutexLock lock(&mu);
    if (error.empty()) error = e;
  };
  // Files written and not yet recorded, recorded together: when kRecordBatch are waiting, the
  // oldest has waited kRecordAfter, or the connection has nothing more to write. A file
  // written and not recorded when tma dies is written again by the next run (counted once).
  auto record = [&](std::vector<TmaStore::Done>& written) -> bool {
    if (written.empty()) return true;
    absl::StatusOr<size_t> counted = store_.FilesDone(id, server_name, written);
    if (!counted.ok()) {
      record_error(absl::StrCat(written.front().file->name,
                                ": written, but not recorded: ", Message(counted.status())));
      written.clear();
      return false;
    }
    files_.Add({{"result", "written"}}).Increment(static_cast<double>(written.size()));
    for (const TmaStore::Done& d : written) bytes_.Increment(static_cast<double>(d.file->size));
    written.clear();
    return true;
  };
  auto work = [&](Target& target) {
    std::vector<PlannedFile> batch;
    std::vector<TmaStore::Done> written;  // points into batch: recorded before it changes
    absl::Time oldest;
    // Recorded when the first waiting has waited kRecordAfter (a slow server, a retry).
    auto record_due = [&]() -> bool {
      return written.empty() || absl::Now() - oldest < kRecordAfter || record(written);
    };
    std::string current;  // the file being handled, for an error thrown meanwhile
    try {
      while (next(&batch)) {
        std::vector<std::string> names;
        names.reserve(batch.size());
        for (const PlannedFile& f : batch) names.push_back(f.name);
        absl::StatusOr<std::vector<std::string>> contents = store_.Contents(id, names);
        if (!contents.ok()) {
          record_error(Message(contents.status()));
          break;
        }
        for (size_t i = 0; i < batch.size(); ++i) {
          if (i > 0 && !going()) break;
          const PlannedFile& f = batch[i];
          current = f.name;
          if (!record_due()) break;
          absl::Status put;
          bool recorded = true;
          for (int attempt = 1; attempt <= std::max(1, options_.attempts); ++attempt) {
            put = target.Put(f.name, (*contents)[i]);
            if (put.ok() || !absl::IsUnavailable(put) || stop_.load() ||
                attempt == std::max(1, options_.attempts)) {
              break;
            }
            recorded = record_due();  // before waiting to try again
            if (!recorded) break;
            absl::SleepFor(options_.retry_delay * attempt);
          }
          if (!recorded) break;
          if (!put.ok()) {
            // What was written before it is recorded (and logged) first.
            (void)record(written);
            files_.Add({{"result", "failed"}}).Increment();
            store_.RecordEvent(id, "file.failed", f.name, Message(put));
            record_error(absl::StrCat(f.name, ": ", Message(put)));
            break;
          }
          if (written.empty()) oldest = absl::Now();
          written.push_back({&f, false});
          if (written.size() >= kRecordBatch && !record(written)) break;
          if (!record_due()) break;
        }
        if (!record(written)) break;
      }
      (void)record(written);
    } catch (const std::exception& e) {
      record_error(
          absl::StrCat(current.empty() ? "" : current + ": ", "internal error: ", e.what()));
      // The files written before it are on the server: recorded if that can still be done.
      try {
        (void)record(written);
      } catch (const std::exception&) {
        written.clear();  // left to the next run, which writes them again
      }
    }
  };
  std::vector<std::thread> workers;
  for (int i = 1; i < n; ++i) workers.emplace_back([&, i] { work(*targets[i]); });
  work(*targets[0]);
  for (std::thread& t : workers) t.join();

  if (lost) {
    core::log::Warn("deployment lease lost", {{"deployment", id}});
    return true;
  }
  if (!error.empty()) return fail(error);
  if (stop_.load()) {
    // Stopping: the deployment stays to run; the next instance carries it on.
    store_.RecordEvent(id, "deployment.paused", "", "tma stopping; carried on at its next start");
    release();
    return true;
  }
  if (absl::Status s = store_.Finish(id, pb::DEPLOYMENT_STATE_COMPLETED, ""); !s.ok()) {
    release();
    return s;
  }
  store_.RecordEvent(id, "deployment.completed", "", "Deployment completed");
  Ended();
  deployments_.Add({{"outcome", "completed"}}).Increment();
  duration_.Observe(absl::ToDoubleSeconds(absl::Now() - started));
  core::log::Info("deployment completed",
                  {{"deployment", id}, {"files", std::to_string(plan->size())}});
  release();
  return true;
}

}  // namespace rwg::tma
