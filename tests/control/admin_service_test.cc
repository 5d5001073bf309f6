// The admin service as a unit: served in-process (no network) over a private redis-server,
// called through its generated stub as rwgctl calls it. What an administrator relies on:
// nothing without a session, bad input refused whole with the field named, secrets sealed at
// rest, every record written and removed completely.
#include "services/control/admin_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/device_changes.h"
#include "services/core/keys.h"
#include "services/core/registrations.h"
#include "services/core/sync_store.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::control {
namespace {

namespace adminpb = ::rwg::admin::v1;

class FixedRandom final : public core::Random {
 public:
  std::string Bytes(size_t n) override {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(++counter_);
    return out;
  }

 private:
  uint8_t counter_ = 0;
};

class FakeClock final : public core::Clock {
 public:
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_ = absl::Now();
};

class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    store_ = std::make_unique<RedisControlStore>(redis_->client());
    // Plain comparison instead of scrypt: these tests are about the service, not hashing.
    auth_ = std::make_unique<Authenticator>(
        *store_, *store_, clock_, rng_, absl::Hours(1), LoginLimits{}, nullptr,
        [](const std::string& password, const std::string& hash) { return hash == password; });
    absl::StatusOr<std::unique_ptr<core::SecretBox>> box =
        core::SecretBox::Create(std::string(32, 'k'), rng_);
    ASSERT_TRUE(box.ok());
    box_ = *std::move(box);
    service_ = std::make_unique<AdminServiceImpl>(*store_, redis_->client(), *auth_, *box_, clock_,
                                                  rng_, registry_);
    ASSERT_TRUE(service_->EnsureConfig("rwg.example.com").ok());
    // The stored hash is what the test's verifier compares the password with.
    ASSERT_TRUE(store_->CreateAdmin("admin", "s3cret-pw").ok());
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = adminpb::AdminService::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // A client context carrying the session's token (none when empty).
  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  std::string Login() {
    adminpb::LoginRequest req;
    req.set_username("admin");
    req.set_password("s3cret-pw");
    adminpb::LoginResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->Login(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.token();
  }

  adminpb::Device Device(const std::string& user, const std::string& icp,
                         const std::string& mac = "") {
    adminpb::Device d;
    d.set_set_username(user);
    d.set_set_password("set-" + user + "-password");
    d.set_icp_username(icp);
    d.set_icp_password("icp-" + user + "-password");
    d.set_mac(mac);
    return d;
  }

  grpc::Status Create(const std::string& token, const adminpb::Device& d) {
    adminpb::CreateDeviceRequest req;
    *req.mutable_device() = d;
    adminpb::Device resp;
    return stub_->CreateDevice(Ctx(token).get(), req, &resp);
  }

  std::vector<std::string> Keys() {
    absl::StatusOr<std::vector<std::string>> k = redis_->Keys();
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? *k : std::vector<std::string>{};
  }

  std::string HashField(const char* key, const std::string& field) {
    absl::StatusOr<core::RedisReply> r = redis_->client().Command({"HGET", key, field});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->str : "";
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<RedisControlStore> store_;
  FakeClock clock_;
  FixedRandom rng_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<core::SecretBox> box_;
  prometheus::Registry registry_;
  std::unique_ptr<AdminServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<adminpb::AdminService::Stub> stub_;
};

TEST_F(AdminServiceTest, NothingWithoutASessionAndNothingAfterLogout) {
  adminpb::ListDevicesResponse list;
  EXPECT_EQ(stub_->ListDevices(Ctx("").get(), {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stub_->ListDevices(Ctx("not-a-token").get(), {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Create("", Device("1001", "21001")).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  adminpb::LoginRequest wrong;
  wrong.set_username("admin");
  wrong.set_password("guess");
  adminpb::LoginResponse resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->Login(&ctx, wrong, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  const std::string token = Login();
  ASSERT_FALSE(token.empty());
  EXPECT_TRUE(stub_->ListDevices(Ctx(token).get(), {}, &list).ok());
  adminpb::LogoutResponse out;
  ASSERT_TRUE(stub_->Logout(Ctx(token).get(), {}, &out).ok());
  EXPECT_EQ(stub_->ListDevices(Ctx(token).get(), {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AdminServiceTest, ASessionEndsWithItsLifetime) {
  const std::string token = Login();
  adminpb::ListDevicesResponse list;
  ASSERT_TRUE(stub_->ListDevices(Ctx(token).get(), {}, &list).ok());
  clock_.Advance(absl::Hours(1) + absl::Seconds(1));
  EXPECT_EQ(stub_->ListDevices(Ctx(token).get(), {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AdminServiceTest, ADeviceIsStoredWithItsPasswordsSealedAndShownOnlyOnRequest) {
  const std::string token = Login();
  ASSERT_TRUE(Create(token, Device("1001", "21001", "00085D0A0B0C")).ok());

  const std::string stored = HashField(core::kDevicesKey, "1001");
  EXPECT_FALSE(absl::StrContains(stored, "set-1001-password")) << stored;
  EXPECT_FALSE(absl::StrContains(stored, "icp-1001-password")) << stored;
  EXPECT_EQ(HashField(core::kDevicesByIcpKey, "21001"), "1001");
  EXPECT_EQ(HashField(core::kDevicesByMacKey, "00085D0A0B0C"), "1001");

  adminpb::GetDeviceRequest get;
  get.set_set_username("1001");
  adminpb::Device d;
  ASSERT_TRUE(stub_->GetDevice(Ctx(token).get(), get, &d).ok());
  EXPECT_EQ(d.icp_username(), "21001");
  EXPECT_EQ(d.set_password(), "");
  get.set_show_secrets(true);
  ASSERT_TRUE(stub_->GetDevice(Ctx(token).get(), get, &d).ok());
  EXPECT_EQ(d.set_password(), "set-1001-password");
  EXPECT_EQ(d.icp_password(), "icp-1001-password");
}

TEST_F(AdminServiceTest, AnInvalidDeviceIsRefusedNamingTheFieldAndNothingIsWritten) {
  const std::string token = Login();
  const std::vector<std::string> before = Keys();
  adminpb::Device bad = Device("1001", "21001");
  bad.set_mac("not-a-mac");
  grpc::Status s = Create(token, bad);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "mac")) << s.error_message();
  adminpb::Device unnamed = Device("", "21001");
  s = Create(token, unnamed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "set_username")) << s.error_message();
  EXPECT_EQ(Keys(), before);
}

TEST_F(AdminServiceTest, AnIcpNameOrMacTakenIsAConflictNamingTheOtherDevice) {
  const std::string token = Login();
  ASSERT_TRUE(Create(token, Device("1001", "21001", "00085D0A0B0C")).ok());
  grpc::Status s = Create(token, Device("1002", "21001"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "1001")) << s.error_message();
  s = Create(token, Device("1003", "21003", "00085D0A0B0C"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(HashField(core::kDevicesKey, "1002"), "");
  EXPECT_EQ(HashField(core::kDevicesKey, "1003"), "");
  EXPECT_EQ(Create(token, Device("1001", "21009")).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(AdminServiceTest, AnImportWithOneBadRowImportsNothingAndNamesTheRow) {
  const std::string token = Login();
  adminpb::ImportDevicesRequest req;
  req.set_csv(
      "set_username,set_password,icp_username,icp_password,mac\n"
      "1001,pw-aaaaaaaa,21001,ipw-aaaaaaaa,00085D0A0B01\n"
      "1002,pw-bbbbbbbb,21002,ipw-bbbbbbbb,zz\n");
  adminpb::ImportDevicesResponse resp;
  grpc::Status s = stub_->ImportDevices(Ctx(token).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "3")) << s.error_message();  // row 3
  EXPECT_EQ(HashField(core::kDevicesKey, "1001"), "");

  req.set_csv(
      "set_username,set_password,icp_username,icp_password,mac\n"
      "1001,pw-aaaaaaaa,21001,ipw-aaaaaaaa,00085D0A0B01\n"
      "1002,pw-bbbbbbbb,21002,ipw-bbbbbbbb,00085D0A0B02\n");
  ASSERT_TRUE(stub_->ImportDevices(Ctx(token).get(), req, &resp).ok());
  EXPECT_EQ(resp.created(), 2);
  adminpb::ListDevicesResponse list;
  ASSERT_TRUE(stub_->ListDevices(Ctx(token).get(), {}, &list).ok());
  ASSERT_EQ(list.devices_size(), 2);
}

TEST_F(AdminServiceTest, DeletingADeviceRemovesItAndItsIndexes) {
  const std::string token = Login();
  ASSERT_TRUE(Create(token, Device("1001", "21001", "00085D0A0B0C")).ok());
  adminpb::DeleteDeviceRequest del;
  del.set_set_username("1001");
  adminpb::DeleteDeviceResponse out;
  ASSERT_TRUE(stub_->DeleteDevice(Ctx(token).get(), del, &out).ok());
  EXPECT_EQ(HashField(core::kDevicesKey, "1001"), "");
  EXPECT_EQ(HashField(core::kDevicesByIcpKey, "21001"), "");
  EXPECT_EQ(HashField(core::kDevicesByMacKey, "00085D0A0B0C"), "");
  EXPECT_EQ(stub_->DeleteDevice(Ctx(token).get(), del, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, RegistrationsAreListedFromTheEdgesBindings) {
  const std::string token = Login();
  core::BindingStore bindings(redis_->client());
  core::Binding b;
  b.set_username = "1001";
  b.icp_username = "21001";
  b.contacts = {"<sip:1001@198.51.100.7:5061;transport=tls>"};
  b.transport = "tls";
  b.instance = "sip-edge-0";
  b.since = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  b.expires_at = b.since + absl::Minutes(10);
  ASSERT_TRUE(bindings.Put(b).ok());
  adminpb::ListRegistrationsResponse list;
  ASSERT_TRUE(stub_->ListRegistrations(Ctx(token).get(), {}, &list).ok());
  ASSERT_EQ(list.registrations_size(), 1);
  EXPECT_EQ(list.registrations(0).set_username(), "1001");
  EXPECT_EQ(list.registrations(0).instance(), "sip-edge-0");
  EXPECT_EQ(list.registrations(0).expires_at_unix(), absl::ToUnixSeconds(b.expires_at));
}

TEST_F(AdminServiceTest, RedisGoneIsUnavailableAndTheServiceKeepsAnswering) {
  const std::string token = Login();
  redis_->Kill();
  adminpb::ListDevicesResponse list;
  // The session itself is in Redis: without it, the answer is UNAVAILABLE, not a refusal.
  grpc::Status s = stub_->ListDevices(Ctx(token).get(), {}, &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(Create(token, Device("1001", "21001")).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------------
// The device change log (core/device_changes.h) written by the device RPCs

class DeviceChangeLogTest : public AdminServiceTest {
 protected:
  // "op user pw" of each change after `since`.
  std::vector<std::string> Changes(int64_t since = 0) {
    absl::StatusOr<core::DeviceChangeLog> log =
        core::ReadDeviceChanges(redis_->client(), since, 100);
    EXPECT_TRUE(log.ok()) << log.status();
    std::vector<std::string> out;
    if (!log.ok()) return out;
    for (const core::DeviceChange& c : log->changes) {
      out.push_back(absl::StrCat(c.revision, " ", c.op, " ", c.set_username,
                                 c.set_password_changed ? " pw" : ""));
    }
    return out;
  }

  grpc::Status Update(const std::string& token, const adminpb::Device& d,
                      std::vector<std::string> mask, bool generate = false) {
    adminpb::UpdateDeviceRequest req;
    *req.mutable_device() = d;
    for (const std::string& p : mask) req.mutable_update_mask()->add_paths(p);
    req.set_generate_set_password(generate);
    adminpb::Device resp;
    return stub_->UpdateDevice(Ctx(token).get(), req, &resp);
  }
};

TEST_F(DeviceChangeLogTest, EveryWriteAppendsOneEntryPerDeviceWithItsRevision) {
  const std::string token = Login();
  ASSERT_TRUE(Create(token, Device("1001", "21001")).ok());
  adminpb::Device d = Device("1001", "21001");
  d.set_description("desk");
  ASSERT_TRUE(Update(token, d, {"description"}).ok());
  d.set_set_password("another-password");
  ASSERT_TRUE(Update(token, d, {"set_password"}).ok());
  ASSERT_TRUE(Update(token, d, {"set_password"}).ok()) << "the same password again";
  ASSERT_TRUE(Update(token, d, {}, true).ok());  // generated
  adminpb::DeleteDeviceRequest del;
  del.set_set_username("1001");
  adminpb::DeleteDeviceResponse out;
  ASSERT_TRUE(stub_->DeleteDevice(Ctx(token).get(), del, &out).ok());
  EXPECT_EQ(Changes(),
            (std::vector<std::string>{"1 created 1001 pw", "2 updated 1001", "3 updated 1001 pw",
                                      "4 updated 1001", "5 updated 1001 pw", "6 deleted 1001"}));
  EXPECT_EQ(Changes(4), (std::vector<std::string>{"5 updated 1001 pw", "6 deleted 1001"}));
}

TEST_F(DeviceChangeLogTest, AnImportIsOneRevisionAndSaysWhosePasswordChanged) {
  const std::string token = Login();
  adminpb::ImportDevicesRequest req;
  req.set_csv(
      "set_username,set_password,icp_username,icp_password\n"
      "1001,pw-aaaaaaaa,21001,ipw-aaaaaaaa\n"
      "1002,pw-bbbbbbbb,21002,ipw-bbbbbbbb\n");
  adminpb::ImportDevicesResponse resp;
  ASSERT_TRUE(stub_->ImportDevices(Ctx(token).get(), req, &resp).ok());
  req.set_csv(
      "set_username,set_password,icp_username,icp_password\n"
      "1001,pw-aaaaaaaa,21001,ipw-changed1\n"
      "1002,pw-changed2,21002,ipw-bbbbbbbb\n"
      "1003,pw-cccccccc,21003,ipw-cccccccc\n");
  req.set_replace_existing(true);
  ASSERT_TRUE(stub_->ImportDevices(Ctx(token).get(), req, &resp).ok());
  std::vector<std::string> changes = Changes();  // a revision's entries in no particular order
  std::sort(changes.begin(), changes.end());
  EXPECT_EQ(changes,
            (std::vector<std::string>{"1 created 1001 pw", "1 created 1002 pw", "2 created 1003 pw",
                                      "2 updated 1001", "2 updated 1002 pw"}));
}

TEST_F(DeviceChangeLogTest, ARefusedOrConflictingWriteAppendsNothing) {
  const std::string token = Login();
  ASSERT_TRUE(Create(token, Device("1001", "21001", "00085D0A0B0C")).ok());
  EXPECT_EQ(Create(token, Device("1002", "21001")).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Create(token, Device("1001", "21009")).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  adminpb::Device bad = Device("1003", "21003");
  bad.set_mac("zz");
  EXPECT_EQ(Create(token, bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Update(token, Device("1009", "21009"), {"description"}).error_code(),
            grpc::StatusCode::NOT_FOUND);
  adminpb::ImportDevicesRequest req;
  req.set_csv(
      "set_username,set_password,icp_username,icp_password,mac\n"
      "1004,pw-aaaaaaaa,21004,ipw-aaaaaaaa,\n"
      "1005,pw-bbbbbbbb,21005,ipw-bbbbbbbb,00085D0A0B0C\n");
  adminpb::ImportDevicesResponse resp;
  EXPECT_EQ(stub_->ImportDevices(Ctx(token).get(), req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  adminpb::DeleteDeviceRequest del;
  del.set_set_username("1009");
  adminpb::DeleteDeviceResponse out;
  EXPECT_EQ(stub_->DeleteDevice(Ctx(token).get(), del, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Changes(), (std::vector<std::string>{"1 created 1001 pw"}));
  absl::StatusOr<core::RedisReply> rev =
      redis_->client().Command({"GET", core::kDevicesRevisionKey});
  ASSERT_TRUE(rev.ok());
  EXPECT_EQ(rev->str, "1");
}

TEST_F(DeviceChangeLogTest, TheNewestEntriesAreKeptAndTheOldestRevisionWhole) {
  // A full log: revision 1 of two devices, then one device per revision up to 9999.
  std::vector<std::string> zadd = {"ZADD", core::kDeviceChangesKey};
  auto entry = [&](int rev, const std::string& user) {
    zadd.push_back(std::to_string(rev));
    zadd.push_back(absl::StrCat("{\"rev\":", rev, ",\"op\":\"updated\",\"user\":\"", user,
                                "\",\"pw\":false}"));
  };
  entry(1, "a");
  entry(1, "b");
  for (int rev = 2; rev <= 9999; ++rev) entry(rev, "a");
  ASSERT_TRUE(redis_->client().Command(zadd).ok());
  ASSERT_TRUE(redis_->client().Command({"SET", core::kDevicesRevisionKey, "9999"}).ok());
  ASSERT_EQ(redis_->client().Command({"ZCARD", core::kDeviceChangesKey})->integer,
            static_cast<long long>(core::kDeviceChangesKept));

  const std::string token = Login();
  ASSERT_TRUE(Create(token, Device("1001", "21001")).ok());
  absl::StatusOr<core::DeviceChangeLog> log = core::ReadDeviceChanges(redis_->client(), 9998, 100);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->revision, 10000);
  EXPECT_EQ(log->oldest, 2) << "both entries of revision 1 dropped";
  ASSERT_EQ(log->changes.size(), 2u);
  EXPECT_EQ(log->changes[1].set_username, "1001");
  EXPECT_EQ(redis_->client().Command({"ZCARD", core::kDeviceChangesKey})->integer, 9999);
  log = core::ReadDeviceChanges(redis_->client(), 0, 100);
  ASSERT_TRUE(log.ok());
  EXPECT_TRUE(log->lost);
  log = core::ReadDeviceChanges(redis_->client(), 1, 100);
  ASSERT_TRUE(log.ok());
  EXPECT_FALSE(log->lost);
}

// ---------------------------------------------------------------------------------------------
// Sync API consumers and tokens

class SyncAdminTest : public AdminServiceTest {
 protected:
  void SetUp() override {
    AdminServiceTest::SetUp();
    sync_ = std::make_unique<core::SyncStore>(redis_->client(), *box_);
    token_ = Login();
  }

  grpc::Status Add(const std::string& name, const std::string& id,
                   adminpb::AddSyncConsumerResponse* resp, std::vector<std::string> sources = {}) {
    adminpb::AddSyncConsumerRequest req;
    req.set_name(name);
    req.set_id(id);
    for (const std::string& s : sources) req.add_sources(s);
    return stub_->AddSyncConsumer(Ctx(token_).get(), req, resp);
  }

  // A temporary token as the sync service writes it.
  void Request(const std::string& token, const std::string& consumer) {
    core::SyncToken t;
    t.token = token;
    t.secret = "secret-of-" + token;
    t.consumer = consumer;
    t.source = "192.0.2.10";
    t.created = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
    t.expires = t.created + core::kSyncTemporaryTokenLife;
    ASSERT_TRUE(sync_->PutToken(t).ok());
  }

  std::vector<adminpb::SyncConsumer> Consumers() {
    adminpb::ListSyncConsumersResponse resp;
    grpc::Status s = stub_->ListSyncConsumers(Ctx(token_).get(), {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.consumers().begin(), resp.consumers().end()};
  }

  std::vector<adminpb::SyncToken> Tokens() {
    adminpb::ListSyncTokensResponse resp;
    grpc::Status s = stub_->ListSyncTokens(Ctx(token_).get(), {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.tokens().begin(), resp.tokens().end()};
  }

  std::unique_ptr<core::SyncStore> sync_;
  std::string token_;
};

TEST_F(SyncAdminTest, NothingWithoutASession) {
  adminpb::ListSyncConsumersResponse resp;
  EXPECT_EQ(stub_->ListSyncConsumers(Ctx("").get(), {}, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  adminpb::ApproveSyncTokenRequest req;
  req.set_token("t");
  adminpb::ApproveSyncTokenResponse out;
  EXPECT_EQ(stub_->ApproveSyncToken(Ctx("").get(), req, &out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(SyncAdminTest, AConsumerGetsAGeneratedSecretShownOnce) {
  adminpb::AddSyncConsumerResponse added;
  ASSERT_TRUE(Add("pbx1", "", &added, {"192.0.2.10"}).ok());
  EXPECT_EQ(added.consumer().id(), "pbx1") << "the id defaults to the name";
  EXPECT_EQ(added.secret().size(), core::kSyncConsumerSecretLength);
  absl::StatusOr<std::optional<core::SyncConsumer>> stored = sync_->ConsumerById("pbx1");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->secret, added.secret());
  EXPECT_EQ((*stored)->sources, std::vector<std::string>{"192.0.2.10"});
  EXPECT_FALSE(absl::StrContains(HashField(core::kSyncConsumersKey, "pbx1"), added.secret()));

  adminpb::AddSyncConsumerResponse other;
  ASSERT_TRUE(Add("pbx2", "MiVOAppSuite", &other).ok());
  EXPECT_NE(other.secret(), added.secret());
  std::vector<adminpb::SyncConsumer> all = Consumers();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].id(), "MiVOAppSuite");
  EXPECT_TRUE(all[1].enabled());
}

TEST_F(SyncAdminTest, BadConsumersAreRefusedNamingTheField) {
  adminpb::AddSyncConsumerResponse resp;
  ASSERT_TRUE(Add("forty", std::string(40, 'M'), &resp).ok());
  grpc::Status s = Add("forty-one", std::string(41, 'M'), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "id: 41 characters, at most 40");
  s = Add("bad name", "", &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "name: ")) << s.error_message();
  s = Add("pbx1", "", &resp, {"not-an-address"});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "sources: ")) << s.error_message();
  s = Add("other", std::string(40, 'M'), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "id: ")) << s.error_message();
  EXPECT_EQ(Consumers().size(), 1u);
}

TEST_F(SyncAdminTest, TheThreeLeggedSequenceAsTheAdminSeesIt) {
  adminpb::AddSyncConsumerResponse added;
  ASSERT_TRUE(Add("pbx1", "MiVOAppSuite", &added).ok());
  Request("temp1", "pbx1");
  Request("temp2", "pbx1");
  std::vector<adminpb::SyncToken> tokens = Tokens();
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0].kind(), "temporary");
  EXPECT_EQ(tokens[0].state(), "pending");
  EXPECT_EQ(tokens[0].consumer(), "pbx1");
  EXPECT_EQ(tokens[0].source(), "192.0.2.10");
  EXPECT_EQ(Consumers()[0].pending_tokens(), 2);

  adminpb::ApproveSyncTokenRequest approve;
  approve.set_token("temp1");
  adminpb::ApproveSyncTokenResponse approved;
  ASSERT_TRUE(stub_->ApproveSyncToken(Ctx(token_).get(), approve, &approved).ok());
  EXPECT_EQ(approved.verifier().size(), 10u);
  EXPECT_EQ(approved.verifier().find_first_not_of("23456789ABCDEFGHJKMNPQRSTUVWXYZ"),
            std::string::npos)
      << approved.verifier();
  EXPECT_EQ(approved.token().state(), "approved");
  absl::StatusOr<std::optional<core::SyncToken>> t = sync_->GetToken("temp1");
  ASSERT_TRUE(t.ok() && t->has_value());
  EXPECT_EQ((*t)->verifier, approved.verifier());
  grpc::Status again = stub_->ApproveSyncToken(Ctx(token_).get(), approve, &approved);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StartsWith(again.error_message(), "state: ")) << again.error_message();

  adminpb::RejectSyncTokenRequest reject;
  reject.set_token("temp2");
  adminpb::SyncToken rejected;
  ASSERT_TRUE(stub_->RejectSyncToken(Ctx(token_).get(), reject, &rejected).ok());
  EXPECT_EQ(rejected.state(), "rejected");

  // The iPBX exchanges temp1 (the sync service's part).
  core::SyncToken access;
  access.token = "access1";
  access.secret = "access-secret";
  access.kind = core::SyncTokenKind::kAccess;
  access.state = core::SyncTokenState::kActive;
  access.consumer = "pbx1";
  access.created = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  access.expires = access.created + core::kSyncAccessTokenLife;
  ASSERT_TRUE(sync_->ExchangeToken(**t, access).ok());
  EXPECT_EQ(Consumers()[0].active_tokens(), 1);
  EXPECT_EQ(Consumers()[0].pending_tokens(), 0);

  clock_.Advance(absl::Hours(24 * 30));
  token_ = Login();  // the session ended meanwhile
  adminpb::RenewSyncTokenRequest renew;
  renew.set_token("access1");
  adminpb::SyncToken renewed;
  ASSERT_TRUE(stub_->RenewSyncToken(Ctx(token_).get(), renew, &renewed).ok());
  EXPECT_EQ(renewed.expire_time_unix(),
            absl::ToUnixSeconds(clock_.Now() + core::kSyncAccessTokenLife));
  renew.set_token("temp1");
  EXPECT_EQ(stub_->RenewSyncToken(Ctx(token_).get(), renew, &renewed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  adminpb::RevokeSyncTokenRequest revoke;
  revoke.set_token("access1");
  adminpb::SyncToken revoked;
  ASSERT_TRUE(stub_->RevokeSyncToken(Ctx(token_).get(), revoke, &revoked).ok());
  EXPECT_EQ(revoked.state(), "revoked");
  revoke.set_token("nope");
  grpc::Status missing = stub_->RevokeSyncToken(Ctx(token_).get(), revoke, &revoked);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(absl::StartsWith(missing.error_message(), "token: ")) << missing.error_message();
  revoke.set_token("");
  EXPECT_EQ(stub_->RevokeSyncToken(Ctx(token_).get(), revoke, &revoked).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SyncAdminTest, ResetGivesANewSecretAndRevokesEveryToken) {
  adminpb::AddSyncConsumerResponse added;
  ASSERT_TRUE(Add("pbx1", "", &added).ok());
  Request("temp1", "pbx1");
  Request("temp2", "pbx1");
  adminpb::ResetSyncConsumerRequest req;
  req.set_name("pbx1");
  adminpb::ResetSyncConsumerResponse resp;
  ASSERT_TRUE(stub_->ResetSyncConsumer(Ctx(token_).get(), req, &resp).ok());
  EXPECT_EQ(resp.revoked_tokens(), 2);
  EXPECT_EQ(resp.secret().size(), core::kSyncConsumerSecretLength);
  EXPECT_NE(resp.secret(), added.secret());
  for (const adminpb::SyncToken& t : Tokens()) EXPECT_EQ(t.state(), "revoked") << t.token();
  absl::StatusOr<std::optional<core::SyncConsumer>> c = sync_->ConsumerByName("pbx1");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->secret, resp.secret());
  req.set_name("pbx9");
  EXPECT_EQ(stub_->ResetSyncConsumer(Ctx(token_).get(), req, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(SyncAdminTest, EnableDisableAndDelete) {
  adminpb::AddSyncConsumerResponse added;
  ASSERT_TRUE(Add("pbx1", "", &added).ok());
  Request("temp1", "pbx1");
  adminpb::SetSyncConsumerEnabledRequest en;
  en.set_name("pbx1");
  en.set_enabled(false);
  adminpb::SyncConsumer c;
  ASSERT_TRUE(stub_->SetSyncConsumerEnabled(Ctx(token_).get(), en, &c).ok());
  EXPECT_FALSE(c.enabled());
  EXPECT_FALSE(Consumers()[0].enabled());
  en.set_enabled(true);
  ASSERT_TRUE(stub_->SetSyncConsumerEnabled(Ctx(token_).get(), en, &c).ok());
  EXPECT_TRUE(c.enabled());
  en.set_name("pbx9");
  EXPECT_EQ(stub_->SetSyncConsumerEnabled(Ctx(token_).get(), en, &c).error_code(),
            grpc::StatusCode::NOT_FOUND);

  const std::vector<std::string> before = Keys();
  adminpb::DeleteSyncConsumerRequest del;
  del.set_name("pbx1");
  adminpb::DeleteSyncConsumerResponse out;
  ASSERT_TRUE(stub_->DeleteSyncConsumer(Ctx(token_).get(), del, &out).ok());
  for (const std::string& k : Keys()) {
    EXPECT_FALSE(absl::StartsWith(k, "rwg:sync:")) << k;
  }
  EXPECT_EQ(stub_->DeleteSyncConsumer(Ctx(token_).get(), del, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace rwg::control
