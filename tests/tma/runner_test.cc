// The deployment runner and the store under it, against a real redis-server and a download
// server kept in memory (the FTP and store targets have their own tests against real servers).
#include "services/tma/runner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/crypto.h"
#include "services/core/keys.h"
#include "services/core/random.h"
#include "services/tma/store.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::tma {
namespace {

// A download server in memory, shared by the targets of one test; failures on demand.
struct MemoryServer {
  absl::Mutex mu;
  std::map<std::string, std::string> files ABSL_GUARDED_BY(mu);
  int puts ABSL_GUARDED_BY(mu) = 0;
  // Puts after this many fail (-1: never), with this status.
  int fail_after ABSL_GUARDED_BY(mu) = -1;
  absl::Status failure = absl::UnavailableError("connection refused");
  // Calls Stop on the runner after this many puts (-1: never).
  int stop_after = -1;
  absl::Duration put_delay;  // each put takes this long (a distant server)
  std::set<std::thread::id> putters ABSL_GUARDED_BY(mu);  // the threads that put files
  Runner* runner = nullptr;
};

class MemoryTarget final : public Target {
 public:
  explicit MemoryTarget(MemoryServer& s) : s_(s) {}
  absl::Status Put(const std::string& name, std::string_view content) override {
    int n;
    {
      absl::MutexLock lock(&s_.mu);
      if (s_.fail_after >= 0 && s_.puts >= s_.fail_after) return s_.failure;
      s_.putters.insert(std::this_thread::get_id());
      s_.files[name] = std::string(content);
      n = ++s_.puts;
    }
    absl::SleepFor(s_.put_delay);
    if (s_.stop_after >= 0 && n == s_.stop_after && s_.runner != nullptr) {
      // As SIGTERM does: the runner is told to stop while files are in flight.
      std::thread([r = s_.runner] { r->Stop(); }).detach();
      absl::SleepFor(absl::Milliseconds(50));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const std::string& name) override {
    absl::MutexLock lock(&s_.mu);
    auto it = s_.files.find(name);
    if (it == s_.files.end()) return absl::NotFoundError(name);
    return it->second;
  }
  absl::Status Delete(const std::string& name) override {
    absl::MutexLock lock(&s_.mu);
    s_.files.erase(name);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<RemoteFile>> List() override {
    absl::MutexLock lock(&s_.mu);
    std::vector<RemoteFile> out;
    for (const auto& [name, content] : s_.files) out.push_back({name, content.size()});
    return out;
  }

 private:
  MemoryServer& s_;
};

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
        core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
    ASSERT_TRUE(box.ok());
    box_ = *std::move(box);
    store_ = std::make_unique<TmaStore>(redis_->client(), *box_, clock_);
    pb::Server s;
    s.set_name("mem");
    s.set_kind(pb::SERVER_KIND_FTP);
    s.set_address("ftp.example");
    s.set_password("ftp-secret");
    ASSERT_TRUE(*store_->AddServer(s));
  }

  std::unique_ptr<Runner> NewRunner(const std::string& owner, int parallel = 3) {
    RunnerOptions o;
    o.owner = owner;
    o.parallel = parallel;
    o.retry_delay = absl::Milliseconds(1);
    o.lease = absl::Seconds(5);
    return std::make_unique<Runner>(
        *store_,
        [this](const pb::Server& s) -> std::unique_ptr<Target> {
          EXPECT_EQ(s.password(), "ftp-secret");  // opened for the connection
          return std::make_unique<MemoryTarget>(server_);
        },
        o, registry_);
  }

  // A deployment of `phones` phone files (content varying with `version`) and a certificate.
  std::string Create(int phones, const std::string& version = "v1") {
    std::vector<PlannedFile> plan;
    std::vector<std::string> contents;
    auto add = [&](PlannedFile f, std::string content) {
      f.sha256 = core::Sha256Hex(content);
      f.size = content.size();
      plan.push_back(std::move(f));
      contents.push_back(std::move(content));
    };
    PlannedFile cert;
    cert.name = "CA_Mitel.pem";
    cert.role = "certificate";
    add(cert, "-----BEGIN CERTIFICATE-----\n");
    for (int i = 0; i < phones; ++i) {
      const std::string mac = absl::StrCat("0800A1B2", absl::Hex(i, absl::kZeroPad4));
      PlannedFile f;
      f.name = absl::StrCat(mac, ".cfg");
      f.role = "phone";
      f.mac = mac;
      f.device = absl::StrCat("u", i);
      f.site = "paris";
      add(f, absl::StrCat("sip line1 user name: u", i, "\n# ", version, "\n"));
    }
    pb::Deployment d;
    d.set_id(absl::StrCat("dep", ++created_));
    d.set_server("mem");
    d.set_phones(phones);
    EXPECT_TRUE(store_->CreateDeployment(d, plan, contents).ok());
    return d.id();
  }

  pb::Deployment Get(const std::string& id) { return **store_->GetDeployment(id); }

  std::map<std::string, std::string> Files() {
    absl::MutexLock lock(&server_.mu);
    return server_.files;
  }

  std::vector<std::string> Actions(const std::string& id) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<pb::Event>> events = store_->Events(id, 0, 100000);
    if (!events.ok()) return out;
    for (const pb::Event& e : *events) out.push_back(e.action());
    return out;
  }

  core::ManualClock clock_{absl::FromUnixSeconds(1800000000)};
  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<core::SecretBox> box_;
  std::unique_ptr<TmaStore> store_;
  MemoryServer server_;
  prometheus::Registry registry_;
  int created_ = 0;
};

TEST_F(RunnerTest, WritesEveryFileAndRecordsTheInventory) {
  const std::string id = Create(20);
  auto runner = NewRunner("a");
  ASSERT_TRUE(*runner->RunOne(id));
  pb::Deployment d = Get(id);
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_COMPLETED);
  EXPECT_EQ(d.files_total(), 21);
  EXPECT_EQ(d.files_done(), 21);
  EXPECT_EQ(d.files_unchanged(), 0);
  std::map<std::string, std::string> files = Files();
  ASSERT_EQ(files.size(), 21u);
  EXPECT_EQ(files["0800A1B20013.cfg"], "sip line1 user name: u19\n# v1\n");
  std::vector<pb::InventoryEntry> inv = *store_->Inventory();
  ASSERT_EQ(inv.size(), 20u);
  EXPECT_EQ(inv[0].mac(), "0800A1B20000");
  EXPECT_EQ(inv[0].device(), "u0");
  EXPECT_EQ(inv[0].server(), "mem");
  EXPECT_EQ(inv[0].deployment(), id);
  EXPECT_EQ(inv[0].sha256(), core::Sha256Hex(files["0800A1B20000.cfg"]));
  // Contents are dropped once done; the deployment is no longer to run.
  EXPECT_TRUE(absl::IsNotFound(store_->Content(id, "CA_Mitel.pem").status()));
  EXPECT_TRUE(store_->Active()->empty());
  std::vector<std::string> actions = Actions(id);
  EXPECT_EQ(actions.front(), "deployment.created");
  EXPECT_EQ(actions.back(), "deployment.completed");
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "file.written"), 21);
}

TEST_F(RunnerTest, TheSameDeploymentAgainWritesNothing) {
  auto runner = NewRunner("a");
  ASSERT_TRUE(*runner->RunOne(Create(10)));
  const int puts = [&] {
    absl::MutexLock lock(&server_.mu);
    return server_.puts;
  }();
  const std::string again = Create(10);
  ASSERT_TRUE(*runner->RunOne(again));
  pb::Deployment d = Get(again);
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_COMPLETED);
  EXPECT_EQ(d.files_done(), 11);
  EXPECT_EQ(d.files_unchanged(), 11);
  absl::MutexLock lock(&server_.mu);
  EXPECT_EQ(server_.puts, puts);
}

TEST_F(RunnerTest, OnlyWhatDiffersIsWritten) {
  auto runner = NewRunner("a");
  ASSERT_TRUE(*runner->RunOne(Create(10, "v1")));
  // A file removed on the server behind tma's back is written again, though unchanged.
  {
    absl::MutexLock lock(&server_.mu);
    server_.files.erase("0800A1B20003.cfg");
    server_.puts = 0;
  }
  const std::string changed = Create(10, "v2");
  ASSERT_TRUE(*runner->RunOne(changed));
  EXPECT_EQ(Get(changed).files_unchanged(), 1);  // the certificate
  {
    absl::MutexLock lock(&server_.mu);
    EXPECT_EQ(server_.puts, 10);
  }
  const std::string same = Create(10, "v2");
  {
    absl::MutexLock lock(&server_.mu);
    server_.files.erase("0800A1B20003.cfg");
    server_.puts = 0;
  }
  ASSERT_TRUE(*runner->RunOne(same));
  EXPECT_EQ(Get(same).files_unchanged(), 10);
  absl::MutexLock lock(&server_.mu);
  EXPECT_EQ(server_.puts, 1);
  EXPECT_EQ(server_.files["0800A1B20003.cfg"], "sip line1 user name: u3\n# v2\n");
}

TEST_F(RunnerTest, AServerDownFailsTheDeploymentWhichResumesWhereItStopped) {
  {
    absl::MutexLock lock(&server_.mu);
    server_.fail_after = 5;
  }
  const std::string id = Create(20);
  auto runner = NewRunner("a", 1);
  ASSERT_TRUE(*runner->RunOne(id));
  pb::Deployment d = Get(id);
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(d.files_done(), 5);
  EXPECT_NE(d.error().find("connection refused"), std::string::npos) << d.error();
  EXPECT_EQ(Files().size(), 5u);  // the files written are whole; the rest absent
  EXPECT_EQ(store_->Inventory()->size(), 4u);
  std::vector<std::string> actions = Actions(id);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "file.failed"), 1);
  EXPECT_EQ(actions.back(), "deployment.failed");
  // The files written before the failure are logged before it.
  const auto failed = std::find(actions.begin(), actions.end(), "file.failed");
  EXPECT_EQ(std::count(actions.begin(), failed, "file.written"), 5);

  // Failed deployments are not run again by themselves.
  ASSERT_TRUE(store_->Active()->empty());
  {
    absl::MutexLock lock(&server_.mu);
    server_.fail_after = -1;
    server_.puts = 0;
  }
  ASSERT_TRUE(*store_->Resume(id));
  EXPECT_FALSE(*store_->Resume(id));  // only a failed one
  ASSERT_TRUE(*runner->RunOne(id));
  d = Get(id);
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_COMPLETED);
  EXPECT_EQ(d.files_done(), 21);
  EXPECT_EQ(Files().size(), 21u);
  absl::MutexLock lock(&server_.mu);
  EXPECT_EQ(server_.puts, 16);  // only what was left
}

TEST_F(RunnerTest, ADiskFullIsNotRetried) {
  {
    absl::MutexLock lock(&server_.mu);
    server_.fail_after = 0;
    server_.failure = absl::ResourceExhaustedError("552 disk full");
  }
  const std::string id = Create(3);
  auto runner = NewRunner("a", 1);
  ASSERT_TRUE(*runner->RunOne(id));
  EXPECT_EQ(Get(id).state(), pb::DEPLOYMENT_STATE_FAILED);
  EXPECT_NE(Get(id).error().find("CA_Mitel.pem: 552 disk full"), std::string::npos);
}

TEST_F(RunnerTest, AStoppedRunnerLeavesTheRestToTheNextWithoutCountingTwice) {
  const std::string id = Create(200);
  auto first = NewRunner("a", 2);
  server_.runner = first.get();
  server_.stop_after = 30;
  ASSERT_TRUE(*first->RunOne(id));
  pb::Deployment d = Get(id);
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_RUNNING);
  EXPECT_LT(d.files_done(), 201);
  EXPECT_GE(d.files_done(), 30);
  EXPECT_EQ(*store_->Active(), std::vector<std::string>{id});
  server_.runner = nullptr;
  server_.stop_after = -1;
  // The lease was released on the way out: another instance takes it at once.
  auto second = NewRunner("b", 2);
  ASSERT_TRUE(*second->RunOne(id));
  d = Get(id);
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_COMPLETED);
  EXPECT_EQ(d.files_done(), 201);
  EXPECT_EQ(Files().size(), 201u);
  std::vector<std::string> actions = Actions(id);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "file.written"), 201);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "deployment.paused"), 1);
}

// Files are recorded in Redis several at a time: each is still counted, logged and put in the
// inventory and manifest once, however often it comes, and its bytes added once.
TEST_F(RunnerTest, FilesRecordedTogetherAreEachCountedOnce) {
  const std::string id = Create(3);
  std::vector<PlannedFile> plan = *store_->Plan(id);
  ASSERT_EQ(plan.size(), 4u);
  ASSERT_EQ(*store_->FilesDone(id, "mem", {{&plan[0], false}, {&plan[1], false}}), 2u);
  // Again, with one more: only the new one counts.
  ASSERT_EQ(*store_->FilesDone(id, "mem", {{&plan[1], false}, {&plan[2], true}, {&plan[1], false}}),
            1u);
  EXPECT_EQ(*store_->FilesDone(id, "mem", {}), 0u);
  pb::Deployment d = Get(id);
  EXPECT_EQ(d.files_done(), 3);
  EXPECT_EQ(d.files_unchanged(), 1);
  EXPECT_EQ(d.bytes_written(), plan[0].size + plan[1].size);
  EXPECT_EQ(d.current_file(), plan[2].name);
  std::vector<std::string> actions = Actions(id);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "file.written"), 2);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "file.unchanged"), 1);
  EXPECT_EQ(store_->Inventory()->size(), 2u);  // plan[0] is the certificate
  std::map<std::string, std::string> manifest = *store_->Manifest("mem");
  EXPECT_EQ(manifest.size(), 3u);
  EXPECT_EQ(manifest[plan[2].name], plan[2].sha256);

  // Contents come several at a time, in the order asked; a name not planned is NOT_FOUND.
  std::vector<std::string> got = *store_->Contents(id, {plan[2].name, plan[0].name});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], *store_->Content(id, plan[2].name));
  EXPECT_EQ(got[1], "-----BEGIN CERTIFICATE-----\n");
  EXPECT_TRUE(absl::IsNotFound(store_->Contents(id, {plan[0].name, "nope.cfg"}).status()));

  // More files than one script takes: all counted, each event once, in order.
  const std::string big = Create(700);
  std::vector<PlannedFile> all = *store_->Plan(big);
  std::vector<TmaStore::Done> every;
  for (const PlannedFile& f : all) every.push_back({&f, false});
  ASSERT_EQ(*store_->FilesDone(big, "mem", every), 701u);
  EXPECT_EQ(*store_->FilesDone(big, "mem", every), 0u);
  EXPECT_EQ(Get(big).files_done(), 701);
  std::vector<pb::Event> events = *store_->Events(big, 0, 100000);
  std::vector<std::string> written;
  uint64_t seq = 0;
  for (const pb::Event& e : events) {
    EXPECT_GT(e.seq(), seq);
    seq = e.seq();
    if (e.action() == "file.written") written.push_back(e.file());
  }
  ASSERT_EQ(written.size(), 701u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(written[i], all[i].name);
}

// A file that fails stops the deployment with the files written before it recorded, also
// when several connections have files written and not yet recorded.
TEST_F(RunnerTest, AFailureRecordsWhatWasWrittenBeforeIt) {
  {
    absl::MutexLock lock(&server_.mu);
    server_.fail_after = 77;
    server_.failure = absl::ResourceExhaustedError("552 disk full");
  }
  const std::string id = Create(300);
  auto runner = NewRunner("a", 4);
  ASSERT_TRUE(*runner->RunOne(id));
  pb::Deployment d = Get(id);
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(d.files_done(), 77);
  EXPECT_EQ(Files().size(), 77u);
  EXPECT_EQ(store_->DoneFiles(id)->size(), 77u);
}

// Files are handed out several at a time, but a small deployment still goes through every
// connection: 20 files and 4 connections to a server taking 50 ms a file.
TEST_F(RunnerTest, ASmallDeploymentUsesEveryConnection) {
  server_.put_delay = absl::Milliseconds(50);
  const std::string id = Create(19);
  auto runner = NewRunner("a", 4);
  ASSERT_TRUE(*runner->RunOne(id));
  EXPECT_EQ(Get(id).state(), pb::DEPLOYMENT_STATE_COMPLETED);
  EXPECT_EQ(Files().size(), 20u);
  absl::MutexLock lock(&server_.mu);
  EXPECT_EQ(server_.putters.size(), 4u);
}

// A file being retried does not hold back the record of the files written before it: the
// progress moves while the server is away.
TEST_F(RunnerTest, FilesWrittenBeforeARetryAreRecordedMeanwhile) {
  {
    absl::MutexLock lock(&server_.mu);
    server_.fail_after = 3;
  }
  const std::string id = Create(9);
  RunnerOptions o;
  o.owner = "a";
  o.parallel = 1;
  o.attempts = 3;
  o.retry_delay = absl::Milliseconds(300);
  o.lease = absl::Seconds(5);
  Runner runner(
      *store_, [this](const pb::Server&) { return std::make_unique<MemoryTarget>(server_); }, o,
      registry_);
  std::thread run([&] { ASSERT_TRUE(*runner.RunOne(id)); });
  // During the retries (0.3 s, then 0.6 s), the three files written are recorded.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(Get(id).files_done(), 3);
  run.join();
  EXPECT_EQ(Get(id).state(), pb::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(Get(id).files_done(), 3);
}

// A watch waits for the runner's end rather than polling for it: AwaitEnd returns when a
// deployment this instance runs ends, not at its timeout.
TEST_F(RunnerTest, TheEndOfARunIsSignalledAtOnce) {
  const std::string id = Create(5);
  auto runner = NewRunner("a", 1);
  const uint64_t seen = runner->Ends();
  std::atomic<uint64_t> after{seen};
  absl::Time woke;
  std::thread watcher([&] {
    after = runner->AwaitEnd(seen, absl::Seconds(60));
    woke = absl::Now();
  });
  absl::SleepFor(absl::Milliseconds(100));  // the watcher waits meanwhile
  EXPECT_EQ(after.load(), seen);
  ASSERT_TRUE(*runner->RunOne(id));
  const absl::Time ended = absl::Now();
  watcher.join();
  EXPECT_EQ(after.load(), seen + 1);
  EXPECT_LT(woke - ended, absl::Seconds(2));  // not the 60 s timeout
  EXPECT_EQ(Get(id).state(), pb::DEPLOYMENT_STATE_COMPLETED);
  // Nothing new: the wait lasts its timeout.
  EXPECT_EQ(runner->AwaitEnd(seen + 1, absl::Milliseconds(10)), seen + 1);
}

TEST_F(RunnerTest, ADeploymentHeldByAnotherInstanceIsLeftAlone) {
  const std::string id = Create(3);
  ASSERT_TRUE(*store_->TakeLease(id, "other", absl::Seconds(30)));
  auto runner = NewRunner("a");
  EXPECT_FALSE(*runner->RunOne(id));
  EXPECT_EQ(Get(id).state(), pb::DEPLOYMENT_STATE_PENDING);
  EXPECT_TRUE(Files().empty());
}

TEST_F(RunnerTest, AServerDeletedMeanwhileFailsTheDeploymentClearly) {
  const std::string id = Create(3);
  ASSERT_TRUE(*store_->DeleteServer("mem"));
  auto runner = NewRunner("a");
  ASSERT_TRUE(*runner->RunOne(id));
  EXPECT_EQ(Get(id).state(), pb::DEPLOYMENT_STATE_FAILED);
  EXPECT_EQ(Get(id).error(), "download server mem no longer exists");
}

TEST_F(RunnerTest, StartRunsNewDeploymentsByItself) {
  auto runner = NewRunner("a");
  runner->Start();
  const std::string id = Create(5);
  runner->Wake();
  for (int i = 0; i < 500 && Get(id).state() != pb::DEPLOYMENT_STATE_COMPLETED; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(Get(id).state(), pb::DEPLOYMENT_STATE_COMPLETED);
  runner->Stop();
}

TEST_F(RunnerTest, ServerPasswordsAreSealedAndNeverListed) {
  absl::StatusOr<core::RedisReply> raw =
      redis_->client().Command({"HGET", core::kTmaServersKey, "mem"});
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->str.find("ftp-secret"), std::string::npos);
  std::vector<pb::Server> list = *store_->ListServers();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TRUE(list[0].password().empty());
  EXPECT_TRUE(list[0].has_password());
  EXPECT_EQ((*store_->GetServer("mem", true))->password(), "ftp-secret");
  EXPECT_TRUE((*store_->GetServer("mem", false))->password().empty());
}

TEST_F(RunnerTest, OldFinishedDeploymentsAreForgotten) {
  store_ = std::make_unique<TmaStore>(redis_->client(), *box_, clock_, StoreLimits{3, 1000, 1000});
  auto runner = NewRunner("a");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Create(1));
    clock_.Advance(absl::Seconds(1));
    ASSERT_TRUE(*runner->RunOne(ids.back()));
  }
  std::vector<pb::Deployment> list = *store_->ListDeployments();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].id(), ids[4]);
  absl::StatusOr<std::vector<std::string>> keys = redis_->Keys();
  ASSERT_TRUE(keys.ok());
  for (const std::string& k : *keys) {
    EXPECT_EQ(k.find(absl::StrCat("rwg:tma:dep:", ids[0])), std::string::npos) << k;
  }
}

}  // namespace
}  // namespace rwg::tma

namespace rwg::tma {
namespace {

TEST_F(RunnerTest, TemporaryFilesOfAnInterruptedUploadAreRemoved) {
  const std::string id = Create(2);
  {
    absl::MutexLock lock(&server_.mu);
    server_.files["0800A1B20001.cfg.rwg-tmp-0011223344556677"] = "half";
    server_.files["OTHER.cfg.rwg-tmp-8899aabbccddeeff"] = "another deployment's";
  }
  auto runner = NewRunner("a");
  ASSERT_TRUE(*runner->RunOne(id));
  std::map<std::string, std::string> files = Files();
  EXPECT_EQ(files.count("0800A1B20001.cfg.rwg-tmp-0011223344556677"), 0u);
  EXPECT_EQ(files.count("OTHER.cfg.rwg-tmp-8899aabbccddeeff"), 1u);  // not this one's to touch
  std::vector<std::string> actions = Actions(id);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "file.cleaned"), 1);
}

}  // namespace
}  // namespace rwg::tma
