// RedisClient against a real redis-server started by the test.
#include "services/core/redis.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/core/bans.h"
#include "services/core/calls.h"
#include "services/core/crypto.h"
#include "services/core/devices.h"
#include "services/core/json.h"
#include "services/core/registrations.h"
#include "tests/testing/wait.h"

extern char** environ;

namespace rwg::core {
namespace {

// The asynchronous interface over a blocking client: each command runs at once, its reply is
// handed over when the test calls Deliver (as a loop would, later).
class DeferredRedis : public AsyncRedisCommands {
 public:
  explicit DeferredRedis(RedisClient& redis) : redis_(redis) {}
  void Command(const std::vector<std::string>& args, Callback done) override {
    commands_.push_back(args);
    pending_.push_back([r = redis_.Command(args), done = std::move(done)]() mutable { done(r); });
  }
  void Eval(const std::string& script, const std::vector<std::string>& keys,
            const std::vector<std::string>& args, Callback done) override {
    commands_.push_back({"EVAL"});
    pending_.push_back(
        [r = redis_.Eval(script, keys, args), done = std::move(done)]() mutable { done(r); });
  }
  // Answers every command sent so far (and those their callbacks send).
  void Deliver() {
    while (!pending_.empty()) {
      std::function<void()> next = std::move(pending_.front());
      pending_.pop_front();
      next();
    }
  }
  size_t pending() const { return pending_.size(); }
  const std::vector<std::vector<std::string>>& commands() const { return commands_; }

 private:
  RedisClient& redis_;
  std::deque<std::function<void()>> pending_;
  std::vector<std::vector<std::string>> commands_;
};

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = testing::FreeTcpPort();
    char dir[] = "/tmp/rwg-redis-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    const std::string port = std::to_string(port_);
    const char* argv[] = {"redis-server", "--port", port.c_str(), "--bind",
                          "127.0.0.1",    "--save", "",           "--appendonly",
                          "no",           "--dir",  dir_.c_str(), nullptr};
    ASSERT_EQ(
        posix_spawnp(&pid_, "redis-server", nullptr, nullptr, const_cast<char**>(argv), environ), 0)
        << "redis-server not installed";
    RedisOptions o;
    o.address = absl::StrCat("127.0.0.1:", port_);
    client_ = std::make_unique<RedisClient>(o);
    for (int i = 0; i < 200 && !client_->Ping().ok(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_TRUE(client_->Ping().ok());
  }
  void TearDown() override {
    client_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  int port_ = 0;
  pid_t pid_ = -1;
  std::string dir_;
  std::unique_ptr<RedisClient> client_;
};

TEST_F(RedisTest, PipelineRunsEveryCommandAndReturnsTheRepliesInOrder) {
  absl::StatusOr<std::vector<RedisReply>> r =
      client_->Pipeline({{"SET", "k", "v"}, {"SADD", "s", "a", "b"}, {"GET", "k"}, {"GET", "x"}});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].str, "OK");
  EXPECT_EQ((*r)[1].integer, 2);
  EXPECT_EQ((*r)[2].str, "v");
  EXPECT_TRUE((*r)[3].is_nil());
  absl::StatusOr<RedisReply> members = client_->Command({"SCARD", "s"});
  ASSERT_TRUE(members.ok());
  EXPECT_EQ(members->integer, 2);
}

TEST_F(RedisTest, AnErrorReplyFailsThePipelineAndTheConnectionStaysInStep) {
  ASSERT_TRUE(client_->Command({"SET", "text", "abc"}).ok());
  absl::StatusOr<std::vector<RedisReply>> r =
      client_->Pipeline({{"SET", "a", "1"}, {"INCR", "text"}, {"SET", "b", "2"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("not an integer"), std::string::npos) << r.status();
  // The commands around the failing one ran (Redis pipelines are not transactions), and the
  // pooled connection answers the next command with its own reply, not a stale one.
  absl::StatusOr<RedisReply> b = client_->Command({"GET", "b"});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->str, "2");
  absl::StatusOr<RedisReply> a = client_->Command({"GET", "a"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->str, "1");
}

TEST_F(RedisTest, AConnectionRedisClosedWhileIdleIsNotUsed) {
  // The pool's connection goes idle, then Redis closes it (as a restart, a client
  // timeout or CLIENT KILL does): the next commands get a new connection, none fails.
  ASSERT_TRUE(client_->Pipeline({{"SET", "k", "1"}, {"GET", "k"}}).ok());
  RedisOptions o;
  o.address = absl::StrCat("127.0.0.1:", port_);
  RedisClient admin(o);
  absl::StatusOr<RedisReply> killed = admin.Command({"CLIENT", "KILL", "TYPE", "normal"});
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_GE(killed->integer, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<RedisReply> r = client_->Command({"INCR", "k"});
    ASSERT_TRUE(r.ok()) << "command " << i << ": " << r.status();
    EXPECT_EQ(r->integer, 2 + i);
  }
}

TEST_F(RedisTest, PipelineToARedisThatIsGoneIsUnavailable) {
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  absl::StatusOr<std::vector<RedisReply>> r = client_->Pipeline({{"SET", "k", "v"}, {"GET", "k"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find(absl::StrCat("127.0.0.1:", port_)), std::string::npos);
}

TEST_F(RedisTest, CallRecordsAreReadInOrderAcrossBatchesWithEndedCallsNil) {
  std::vector<std::string> ids;
  for (int i = 0; i < 600; ++i) {  // more than two batches
    ids.push_back(absl::StrCat("c", i));
    if (i % 7 != 0) {
      ASSERT_TRUE(client_->Command({"SET", CallKey(ids.back()), ids.back()}).ok());
    }
  }
  absl::StatusOr<std::vector<RedisReply>> r = ReadCallRecords(*client_, ids);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i % 7 == 0) {
      EXPECT_TRUE((*r)[i].is_nil()) << i;
    } else {
      EXPECT_EQ((*r)[i].str, ids[i]);
    }
  }
  EXPECT_TRUE(ReadCallRecords(*client_, {})->empty());
}

// Records holding what a hostile phone sends: bytes that are not UTF-8 are stored (as U+FFFD)
// and read back; nothing throws.
constexpr char kReplacement[] = "\xef\xbf\xbd";

TEST_F(RedisTest, BanOfANonUtf8UserRoundTrips) {
  BanStore bans(*client_);
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  Ban b{AuthBanId("203.0.113.5", "\xff"),
        "auth",
        "203.0.113.5",
        BanUserKey("\xff"),
        "5 failed authentications in 5m \xe9",
        "sip-edge-\xfe",
        now,
        now + absl::Minutes(10)};
  ASSERT_TRUE(bans.Put(b).ok());
  absl::StatusOr<std::vector<Ban>> list = bans.List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  const Ban& got = (*list)[0];
  EXPECT_EQ(got.id, b.id);
  EXPECT_EQ(got.user, b.user);
  EXPECT_EQ(got.reason, absl::StrCat("5 failed authentications in 5m ", kReplacement));
  EXPECT_EQ(got.instance, absl::StrCat("sip-edge-", kReplacement));
  EXPECT_EQ(got.until, b.until);
  absl::StatusOr<bool> removed = bans.Remove(got.id);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_TRUE(bans.List()->empty());
}

TEST_F(RedisTest, DamagedBanRecordsAreSkipped) {
  BanStore bans(*client_);
  ASSERT_TRUE(client_->Command({"SET", "rwg:ban:src:192.0.2.1", "not json"}).ok());
  ASSERT_TRUE(client_->Command({"SET", "rwg:ban:src:192.0.2.2", "[1]"}).ok());
  ASSERT_TRUE(client_->Command({"SET", "rwg:ban:src:192.0.2.3", R"({"until":"soon"})"}).ok());
  ASSERT_TRUE(client_->Command({"SET", "rwg:ban:src:192.0.2.4", R"({"kind":"source"})"}).ok());
  absl::StatusOr<std::vector<Ban>> list = bans.List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, "src:192.0.2.4");
}

TEST_F(RedisTest, BindingWithNonUtf8ContactRoundTrips) {
  BindingStore store(*client_);
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  Binding b;
  b.set_username = "1001";
  b.icp_username = "21001";
  b.contacts = {"\"Jos\xe9\" <sip:\xff@192.0.2.7:5060;transport=tcp>"};
  b.source = "192.0.2.7:5060";
  b.transport = "tcp";
  b.instance = "sip-edge-0";
  b.connection = "c1";
  b.since = now;
  b.expires_at = now + absl::Minutes(10);
  ASSERT_TRUE(store.Put(b).ok());
  absl::StatusOr<std::optional<Binding>> got = store.Get("1001");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  ASSERT_EQ((*got)->contacts.size(), 1u);
  EXPECT_EQ((*got)->contacts[0], absl::StrCat("\"Jos", kReplacement, "\" <sip:", kReplacement,
                                              "@192.0.2.7:5060;transport=tcp>"));
  EXPECT_EQ((*got)->expires_at, b.expires_at);
  absl::StatusOr<std::vector<Binding>> active = store.ListActive(now);
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 1u);
  // A damaged record (a field of the wrong type): an error for that binding, skipped in lists.
  ASSERT_TRUE(
      client_->Command({"SET", BindingStore::Key("1001"), R"({"contacts":[],"since":"x"})"}).ok());
  EXPECT_EQ(store.Get("1001").status().code(), absl::StatusCode::kDataLoss);
  active = store.ListActive(now);
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_TRUE(active->empty());
}

TEST_F(RedisTest, CallRecordWithNonUtf8FieldsRoundTrips) {
  // As the SIP edge keeps a call: the phone's Call-ID and display name as they came.
  CallRecord record;
  record.id = "c1";
  record.instance = "sip-edge-0";
  record.set.call_id = "\xff\xfe@192.0.2.7";
  record.set.remote_uri = "\"M\xfcller\" <sip:1001@rwg.test>";
  record.set.route = {"<sip:\xff>"};
  ASSERT_TRUE(client_->Command({"SET", CallKey("c1"), EncodeCallRecord(record)}).ok());
  absl::StatusOr<std::vector<RedisReply>> r = ReadCallRecords(*client_, {"c1"});
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<CallRecord> back = DecodeCallRecord((*r)[0].str);
  ASSERT_TRUE(back.ok()) << back.status() << " " << (*r)[0].str;
  EXPECT_EQ(back->set.call_id, absl::StrCat(kReplacement, kReplacement, "@192.0.2.7"));
  EXPECT_EQ(back->set.remote_uri, absl::StrCat("\"M", kReplacement, "ller\" <sip:1001@rwg.test>"));
  EXPECT_EQ(back->instance, "sip-edge-0");
}

TEST_F(RedisTest, BansAndBindingsWrittenWithoutBlockingAreTheSame) {
  DeferredRedis async(*client_);
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  Ban ban{SourceBanId("198.51.100.4"), "source", "198.51.100.4", "", "flood", "sip-edge-0", now,
          now + absl::Minutes(5)};
  std::optional<absl::Status> put;
  BanStore::Put(ban, async, [&](absl::Status s) { put = s; });
  EXPECT_FALSE(put.has_value());  // answered once the reply is delivered
  async.Deliver();
  ASSERT_TRUE(put.has_value());
  EXPECT_TRUE(put->ok()) << *put;
  BanStore bans(*client_);
  absl::StatusOr<std::vector<Ban>> list = bans.List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, ban.id);
  EXPECT_EQ((*list)[0].until, ban.until);

  BindingStore store(*client_);
  Binding b;
  b.set_username = "1002";
  b.icp_username = "21002";
  b.contacts = {"sip:1002@192.0.2.9"};
  b.instance = "sip-edge-0";
  b.since = now;
  b.expires_at = now + absl::Minutes(10);
  ASSERT_TRUE(store.Put(b).ok());
  std::optional<absl::StatusOr<std::optional<std::string>>> user;
  BindingStore::SetUsernameForIcp("21002", async, [&](auto r) { user = std::move(r); });
  std::optional<absl::StatusOr<std::optional<Binding>>> got;
  BindingStore::Get("1002", async, [&](auto r) { got = std::move(r); });
  std::optional<absl::StatusOr<std::optional<Binding>>> none;
  BindingStore::Get("9999", async, [&](auto r) { none = std::move(r); });
  async.Deliver();
  ASSERT_TRUE(user.has_value() && user->ok() && user->value().has_value());
  EXPECT_EQ(*user->value(), "1002");
  ASSERT_TRUE(got.has_value() && got->ok() && got->value().has_value());
  EXPECT_EQ(got->value()->contacts, b.contacts);
  EXPECT_EQ(got->value()->expires_at, b.expires_at);
  ASSERT_TRUE(none.has_value() && none->ok());
  EXPECT_FALSE(none->value().has_value());

  // Removal and a licence given back, as the blocking forms do them.
  absl::StatusOr<BindingStore::Reserved> r = store.Reserve("1003", 10, now, now + absl::Minutes(1));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(store.CountActive(now).value_or(-1), 2);
  std::vector<absl::Status> done;
  BindingStore::Remove("1002", "21002", async, [&](absl::Status s) { done.push_back(s); });
  BindingStore::Release("1003", async, [&](absl::Status s) { done.push_back(s); });
  async.Deliver();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_TRUE(done[0].ok() && done[1].ok());
  EXPECT_FALSE(store.Get("1002").value_or(b).has_value());
  EXPECT_FALSE(store.SetUsernameForIcp("21002").value_or("x").has_value());
  EXPECT_EQ(store.CountActive(now).value_or(-1), 0);
}

TEST_F(RedisTest, DevicesReadInBatchesOpenTheIcpPasswordOnlyWhenAsked) {
  Random& rng = Random::System();
  absl::StatusOr<std::unique_ptr<SecretBox>> box = SecretBox::Create(std::string(32, 'k'), rng);
  ASSERT_TRUE(box.ok()) << box.status();
  const std::string set_sealed =
      (*box)->Seal("set-1001", DeviceSecretContext("1001", "set_password"));
  const std::string icp_sealed =
      (*box)->Seal("icp-1001", DeviceSecretContext("1001", "icp_password"));
  ASSERT_TRUE(client_
                  ->Command({"HSET", kDevicesKey, "1001",
                             JsonDump({{"icp_username", "21001"},
                                       {"set_password", set_sealed},
                                       {"icp_password", icp_sealed}})})
                  .ok());
  // A record whose ICP-side secret does not open: only a reader that opens it fails.
  ASSERT_TRUE(
      client_
          ->Command(
              {"HSET", kDevicesKey, "1002",
               JsonDump({{"icp_username", "21002"},
                         {"set_password",
                          (*box)->Seal("set-1002", DeviceSecretContext("1002", "set_password"))},
                         {"icp_password", "not sealed"}})})
          .ok());
  DeviceDirectory devices(*client_, **box);
  auto all = devices.BySetUsernames({"1001", "nobody"});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  ASSERT_TRUE((*all)[0].has_value());
  EXPECT_EQ((*all)[0]->set_password, "set-1001");
  EXPECT_EQ((*all)[0]->icp_password, "icp-1001");
  EXPECT_FALSE((*all)[1].has_value());
  auto set_side = devices.BySetUsernames({"1001", "1002"}, /*icp_passwords=*/false);
  ASSERT_TRUE(set_side.ok()) << set_side.status();
  ASSERT_TRUE((*set_side)[0].has_value() && (*set_side)[1].has_value());
  EXPECT_EQ((*set_side)[0]->set_password, "set-1001");
  EXPECT_EQ((*set_side)[0]->icp_password, "");
  EXPECT_EQ((*set_side)[1]->set_password, "set-1002");
  EXPECT_FALSE(devices.BySetUsernames({"1002"}).ok());
}

TEST_F(RedisTest, DeviceLookupWithoutBlockingFillsTheCacheLikeTheBlockingOne) {
  Random& rng = Random::System();
  absl::StatusOr<std::unique_ptr<SecretBox>> box = SecretBox::Create(std::string(32, 'k'), rng);
  ASSERT_TRUE(box.ok()) << box.status();
  auto record = [&](const std::string& user, const std::string& icp) {
    return JsonDump(
        {{"icp_username", icp},
         {"location", "hq"},
         {"set_password", (*box)->Seal("set-" + user, DeviceSecretContext(user, "set_password"))},
         {"icp_password", (*box)->Seal("icp-" + user, DeviceSecretContext(user, "icp_password"))}});
  };
  ASSERT_TRUE(client_->Command({"HSET", kDevicesKey, "1001", record("1001", "21001")}).ok());
  ASSERT_TRUE(client_->Command({"HSET", kDevicesKey, "1002", record("1002", "21002")}).ok());
  ASSERT_TRUE(client_->Command({"SET", kDevicesRevisionKey, "1"}).ok());
  DeviceDirectory devices(*client_, **box, /*cache=*/true);
  ASSERT_TRUE(devices.Revalidate().ok());
  DeferredRedis async(*client_);

  using Result = absl::StatusOr<std::optional<DeviceSecrets>>;
  std::optional<Result> found, unknown;
  devices.BySetUsername("1001", async, [&](Result r) { found = std::move(r); });
  devices.BySetUsername("nobody", async, [&](Result r) { unknown = std::move(r); });
  EXPECT_FALSE(found.has_value());  // waits for Redis
  EXPECT_FALSE(devices.Cached("1001").has_value());
  async.Deliver();
  ASSERT_TRUE(found.has_value() && found->ok() && found->value().has_value());
  EXPECT_EQ(found->value()->set_password, "set-1001");
  EXPECT_EQ(found->value()->icp_password, "icp-1001");
  EXPECT_EQ(found->value()->icp_username, "21001");
  EXPECT_EQ(found->value()->location, "hq");
  ASSERT_TRUE(unknown.has_value() && unknown->ok());
  EXPECT_FALSE(unknown->value().has_value());
  EXPECT_EQ(devices.cached(), 1u);  // unknown users are never cached

  // Cached now: answered at once, without Redis.
  const size_t sent = async.commands().size();
  std::optional<Result> again;
  devices.BySetUsername("1001", async, [&](Result r) { again = std::move(r); });
  ASSERT_TRUE(again.has_value() && again->ok() && again->value().has_value());
  EXPECT_EQ(async.commands().size(), sent);
  ASSERT_TRUE(devices.Cached("1001").has_value());
  // The blocking form shares the cache.
  EXPECT_EQ(devices.BySetUsername("1001").value_or(std::nullopt)->set_password, "set-1001");

  // A read answered after control changed the devices is not cached: it may be older. The
  // devices cached are read again by Revalidate, with control's change.
  std::optional<Result> raced;
  devices.BySetUsername("1002", async, [&](Result r) { raced = std::move(r); });
  ASSERT_TRUE(client_->Command({"HSET", kDevicesKey, "1001", record("1001", "31001")}).ok());
  ASSERT_TRUE(client_->Command({"SET", kDevicesRevisionKey, "2"}).ok());
  ASSERT_TRUE(devices.Revalidate().ok());
  async.Deliver();
  ASSERT_TRUE(raced.has_value() && raced->ok() && raced->value().has_value());
  EXPECT_FALSE(devices.Cached("1002").has_value());
  EXPECT_EQ(devices.cached(), 1u);
  ASSERT_TRUE(devices.Cached("1001").has_value());
  EXPECT_EQ(devices.Cached("1001")->icp_username, "31001");
  EXPECT_EQ(devices.ByIcpUsername("31001").value_or(std::nullopt)->set_username, "1001");
  // A device control removed leaves the cache at the next change.
  ASSERT_TRUE(client_->Command({"HDEL", kDevicesKey, "1001"}).ok());
  ASSERT_TRUE(client_->Command({"SET", kDevicesRevisionKey, "3"}).ok());
  ASSERT_TRUE(devices.Revalidate().ok());
  EXPECT_EQ(devices.cached(), 0u);

  // A damaged record is an error, not a device.
  ASSERT_TRUE(client_->Command({"HSET", kDevicesKey, "1003", "not json"}).ok());
  std::optional<Result> damaged;
  devices.BySetUsername("1003", async, [&](Result r) { damaged = std::move(r); });
  async.Deliver();
  ASSERT_TRUE(damaged.has_value());
  EXPECT_EQ(damaged->status().code(), absl::StatusCode::kDataLoss);

  // Redis gone: Unavailable, as the blocking form says.
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  std::optional<Result> down;
  devices.BySetUsername("1002", async, [&](Result r) { down = std::move(r); });
  async.Deliver();
  ASSERT_TRUE(down.has_value());
  EXPECT_TRUE(absl::IsUnavailable(down->status())) << down->status();
}

enum class Read { kParsed, kIncomplete, kRefused };

// What a bounded reader makes of `bytes`: a reply, nothing yet (it waits for more bytes), or
// an error.
Read ReadWithBound(const std::string& bytes, int max_elements) {
  redisReader* reader = redisReaderCreate();
  BoundRedisReplies(reader, max_elements);
  void* reply = nullptr;
  Read out = Read::kRefused;
  if (redisReaderFeed(reader, bytes.data(), bytes.size()) == REDIS_OK &&
      redisReaderGetReply(reader, &reply) == REDIS_OK) {
    out = reply != nullptr ? Read::kParsed : Read::kIncomplete;
  }
  if (reply != nullptr) freeReplyObject(reply);
  redisReaderFree(reader);
  return out;
}

TEST(RedisReplyBoundTest, AnArrayWithinTheBoundParsesAndOneBeyondItIsRefused) {
  EXPECT_EQ(ReadWithBound("*3\r\n:1\r\n:2\r\n:3\r\n", 3), Read::kParsed);
  EXPECT_EQ(ReadWithBound("*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", 3), Read::kRefused);
}

TEST(RedisReplyBoundTest, NestedArraysCountTogether) {
  // 2 + 2 + 2 = 6 elements in one reply (HGETALL-like pairs inside an array).
  const std::string nested = "*2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n*2\r\n$1\r\nc\r\n$1\r\nd\r\n";
  EXPECT_EQ(ReadWithBound(nested, 6), Read::kParsed);
  EXPECT_EQ(ReadWithBound(nested, 5), Read::kRefused);
  // Three levels: 1 + 1 + 2, counted against the reply, not the parent.
  const std::string deep = "*1\r\n*1\r\n*2\r\n:1\r\n:2\r\n";
  EXPECT_EQ(ReadWithBound(deep, 4), Read::kParsed);
  EXPECT_EQ(ReadWithBound(deep, 3), Read::kRefused);
  // Nil and empty arrays inside count nothing.
  EXPECT_EQ(ReadWithBound("*3\r\n*-1\r\n*0\r\n*1\r\n:1\r\n", 4), Read::kParsed);
}

TEST(RedisReplyBoundTest, EachReplyHasItsOwnBudget) {
  // Two nested elements per reply, three replies on one reader, and on another reader
  // between them: each within the bound of 2.
  redisReader* reader = redisReaderCreate();
  BoundRedisReplies(reader, 2);
  const std::string nested = "*1\r\n*1\r\n:1\r\n";
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(redisReaderFeed(reader, nested.data(), nested.size()), REDIS_OK);
    void* reply = nullptr;
    ASSERT_EQ(redisReaderGetReply(reader, &reply), REDIS_OK) << "reply " << i;
    ASSERT_NE(reply, nullptr);
    EXPECT_EQ(static_cast<redisReply*>(reply)->elements, 1U);
    freeReplyObject(reply);
    EXPECT_EQ(ReadWithBound(nested, 2), Read::kParsed);
  }
  redisReaderFree(reader);
}

TEST(RedisReplyBoundTest, AnArrayHeaderBeyondTheBoundIsRefusedBeforeItsElementsCome) {
  // Unbounded, hiredis reserves the table and waits for the elements (kIncomplete): 72 MB
  // here, 16 GiB for *2147483647.
  EXPECT_EQ(ReadWithBound("*9000000\r\n", kMaxRedisReplyElements), Read::kRefused);
  EXPECT_EQ(ReadWithBound("*2147483647\r\n", kMaxRedisReplyElements), Read::kRefused);
  EXPECT_EQ(ReadWithBound("*3\r\n*8388608\r\n", kMaxRedisReplyElements), Read::kRefused);
  // Within it, the same header waits for its elements.
  EXPECT_EQ(ReadWithBound("*8388608\r\n", kMaxRedisReplyElements), Read::kIncomplete);
}

// A server that answers any command with `reply` (one connection).
class OneReplyServer {
 public:
  explicit OneReplyServer(std::string reply) : reply_(std::move(reply)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 4);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[512];
      if (read(c, buf, sizeof(buf)) > 0) {
        (void)!write(c, reply_.data(), reply_.size());
      }
      char drain[64];
      while (read(c, drain, sizeof(drain)) > 0) {
      }
      close(c);
    });
  }
  ~OneReplyServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  std::string reply_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(RedisReplyBoundTest, TheClientAnswersAHugeArrayFromTheServerWithAnErrorAtOnce) {
  // Unbounded, the client would reserve the table and wait for the elements until its
  // command timeout.
  OneReplyServer server("*9000000\r\n");
  RedisOptions o;
  o.address = absl::StrCat("127.0.0.1:", server.port());
  o.command_timeout = absl::Seconds(10);
  RedisClient client(o);
  const absl::Time start = absl::Now();
  absl::StatusOr<RedisReply> r = client.Command({"HGETALL", "rwg:devices"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << r.status();
}

}  // namespace
}  // namespace rwg::core
