// The admin service as a unit: served in-process (no network) over a private redis-server,
// called through its generated stub as rwgctl calls it. What an administrator relies on:
// nothing without a session, bad input refused whole with the field named, secrets sealed at
// rest, every record written and removed completely.
#include "services/control/admin_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "services/core/keys.h"
#include "services/core/registrations.h"
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

}  // namespace
}  // namespace rwg::control
