// rwg.tma.v1 in process, with control's admin API beside it (logins, devices, the hash key),
// a real redis-server, and download servers kept in memory.
#include "services/tma/service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/control/admin_service.h"
#include "services/core/keys.h"
#include "services/tma/phone_file.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::tma {
namespace {

namespace adminpb = ::rwg::admin::v1;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

struct Shelf {
  absl::Mutex mu;
  std::map<std::string, std::string> files ABSL_GUARDED_BY(mu);
};

class ShelfTarget final : public Target {
 public:
  explicit ShelfTarget(Shelf& s) : s_(s) {}
  absl::Status Put(const std::string& name, std::string_view content) override {
    absl::MutexLock lock(&s_.mu);
    s_.files[name] = std::string(content);
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
    for (const auto& [n, c] : s_.files) out.push_back({n, c.size()});
    return out;
  }

 private:
  Shelf& s_;
};

class TmaServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    control_ = std::make_unique<control::RedisControlStore>(redis_->client());
    auth_ = std::make_unique<control::Authenticator>(
        *control_, *control_, clock_, core::Random::System(), absl::Hours(1),
        control::LoginLimits{}, nullptr,
        [](const std::string& password, const std::string& hash) { return hash == password; });
    box_ = *core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
    admin_ = std::make_unique<control::AdminServiceImpl>(*control_, redis_->client(), *auth_, *box_,
                                                         clock_, core::Random::System(), registry_);
    ASSERT_TRUE(admin_->EnsureConfig("rwg.example.com").ok());
    ASSERT_TRUE(control_->CreateAdmin("admin", "s3cret-pw").ok());
    store_ = std::make_unique<TmaStore>(redis_->client(), *box_, clock_);
    TargetFactory targets = [this](const pb::Server&) -> std::unique_ptr<Target> {
      return std::make_unique<ShelfTarget>(shelf_);
    };
    RunnerOptions ro;
    ro.owner = "test";
    runner_ = std::make_unique<Runner>(*store_, targets, ro, registry_);
    service_ = std::make_unique<TmaServiceImpl>(*store_, *runner_, targets, *control_, *auth_,
                                                redis_->client(), *box_, clock_,
                                                core::Random::System(), registry_);
    grpc::ServerBuilder b;
    b.RegisterService(admin_.get());
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = server_->InProcessChannel(grpc::ChannelArguments());
    admin_stub_ = adminpb::AdminService::NewStub(channel);
    stub_ = pb::TmaService::NewStub(channel);
    adminpb::LoginRequest login;
    login.set_username("admin");
    login.set_password("s3cret-pw");
    adminpb::LoginResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(admin_stub_->Login(&ctx, login, &resp).ok());
    token_ = resp.token();
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::unique_ptr<grpc::ClientContext> Ctx(bool authenticated = true) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (authenticated) ctx->AddMetadata("authorization", "Bearer " + token_);
    return ctx;
  }

  void Device(const std::string& user, const std::string& mac, const std::string& site) {
    adminpb::CreateDeviceRequest req;
    req.mutable_device()->set_set_username(user);
    req.mutable_device()->set_set_password("set-" + user + "-pw");
    req.mutable_device()->set_icp_username("2" + user);
    req.mutable_device()->set_icp_password("icp-" + user + "-pw");
    req.mutable_device()->set_mac(mac);
    req.mutable_device()->set_site(site);
    adminpb::Device resp;
    grpc::Status s = admin_stub_->CreateDevice(Ctx().get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  std::string Hash() {
    adminpb::HashKey resp;
    grpc::Status s = admin_stub_->GenerateHashKey(Ctx().get(), {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.key();
  }

  grpc::Status AddServer(const pb::Server& s) {
    pb::AddServerRequest req;
    *req.mutable_server() = s;
    pb::Server resp;
    return stub_->AddServer(Ctx().get(), req, &resp);
  }

  grpc::Status Deploy(const std::string& csv, pb::Deployment* out,
                      const std::vector<std::pair<pb::FileStart, std::string>>& files = {}) {
    auto ctx = Ctx();
    auto writer = stub_->CreateDeployment(ctx.get(), out);
    pb::CreateDeploymentRequest m;
    m.mutable_header()->set_server("shelf");
    m.mutable_header()->set_csv(csv);
    writer->Write(m);
    for (const auto& [start, content] : files) {
      pb::CreateDeploymentRequest f;
      *f.mutable_file() = start;
      writer->Write(f);
      pb::CreateDeploymentRequest c;
      c.set_chunk(content);
      if (!content.empty()) writer->Write(c);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::vector<std::string> Keys(const std::string& prefix) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<std::string>> keys = redis_->Keys();
    if (!keys.ok()) return out;
    for (const std::string& k : *keys) {
      if (k.rfind(prefix, 0) == 0) out.push_back(k);
    }
    return out;
  }

  core::ManualClock clock_;
  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<control::RedisControlStore> control_;
  std::unique_ptr<control::Authenticator> auth_;
  std::unique_ptr<core::SecretBox> box_;
  prometheus::Registry registry_;
  std::unique_ptr<control::AdminServiceImpl> admin_;
  std::unique_ptr<TmaStore> store_;
  Shelf shelf_;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<TmaServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<adminpb::AdminService::Stub> admin_stub_;
  std::unique_ptr<pb::TmaService::Stub> stub_;
  std::string token_;
};

pb::Server LocalServer(const std::vector<std::string>& sites = {}) {
  pb::Server s;
  s.set_name("shelf");
  s.set_kind(pb::SERVER_KIND_LOCAL);
  for (const std::string& site : sites) s.add_sites(site);
  return s;
}

TEST_F(TmaServiceTest, EveryCallNeedsAnAdminToken) {
  pb::ListServersResponse resp;
  grpc::Status s = stub_->ListServers(Ctx(false).get(), {}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer not-a-token");
  EXPECT_EQ(stub_->ListServers(ctx.get(), {}, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TmaServiceTest, ServersAreCheckedFieldByField) {
  struct Case {
    std::function<void(pb::Server&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](pb::Server& s) { s.set_name("bad name"); }, "name"},
      {[](pb::Server& s) { s.set_kind(pb::SERVER_KIND_UNSPECIFIED); }, "kind"},
      {[](pb::Server& s) { s.set_address(""); }, "address"},
      {[](pb::Server& s) { s.set_address("host/evil"); }, "address"},
      {[](pb::Server& s) { s.set_port(70000); }, "port"},
      {[](pb::Server& s) { s.set_directory("relative"); }, "directory"},
      {[](pb::Server& s) { s.set_directory("/a/../etc"); }, "directory"},
      {[](pb::Server& s) { s.set_password("line\nbreak"); }, "password"},
      {[](pb::Server& s) { s.set_ca_file("/etc/ca.pem"); }, "ca_file"},  // plain ftp
      {[](pb::Server& s) {
         s.add_sites("a");
         s.add_sites("a");
       },
       "sites"},
  };
  for (const Case& c : cases) {
    pb::Server s;
    s.set_name("ftp1");
    s.set_kind(pb::SERVER_KIND_FTP);
    s.set_address("ftp.example.com");
    c.edit(s);
    grpc::Status st = AddServer(s);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(st.error_message().rfind(c.field + ":", 0), 0u) << st.error_message();
  }
  pb::Server local = LocalServer();
  local.set_address("1.2.3.4");
  EXPECT_EQ(AddServer(local).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Keys("rwg:tma").empty());

  pb::Server ok;
  ok.set_name("ftp1");
  ok.set_kind(pb::SERVER_KIND_FTPS);
  ok.set_address("ftp.example.com");
  ok.set_password("pw-1");
  ASSERT_TRUE(AddServer(ok).ok());
  EXPECT_EQ(AddServer(ok).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  pb::ListServersResponse list;
  ASSERT_TRUE(stub_->ListServers(Ctx().get(), {}, &list).ok());
  ASSERT_EQ(list.servers_size(), 1);
  EXPECT_EQ(list.servers(0).port(), 21u);
  EXPECT_EQ(list.servers(0).directory(), "/");
  EXPECT_EQ(list.servers(0).login(), "mngt_ftp_67xxi");
  EXPECT_TRUE(list.servers(0).password().empty());
  EXPECT_TRUE(list.servers(0).has_password());

  pb::UpdateServerRequest up;
  up.mutable_server()->set_name("ftp1");
  up.mutable_server()->set_port(2121);
  up.add_update_mask("port");
  pb::Server after;
  ASSERT_TRUE(stub_->UpdateServer(Ctx().get(), up, &after).ok());
  EXPECT_EQ(after.port(), 2121u);
  EXPECT_TRUE(after.has_password());  // kept
  up.add_update_mask("name");
  EXPECT_EQ(stub_->UpdateServer(Ctx().get(), up, &after).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(TmaServiceTest, ABadCsvIsRefusedWithEveryRowNamedAndNothingStored) {
  Device("1001", "0800A1000001", "paris");
  Hash();
  ASSERT_TRUE(AddServer(LocalServer()).ok());
  const std::string csv =
      "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\n"
      "08:00:A1:00:00:01,1001,1001,set-1001-pw\n"
      "zz:00:A1:00:00:02,1001,1001,set-1001-pw\n"
      "0800A1000003,nobody,nobody,x\n";
  pb::Deployment d;
  grpc::Status s = Deploy(csv, &d);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("nothing deployed"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("row 3"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("row 4"), std::string::npos) << s.error_message();
  EXPECT_EQ(s.error_message().find("\nrow 2"), std::string::npos) << s.error_message();
  EXPECT_TRUE(Keys("rwg:tma:dep").empty());
  absl::MutexLock lock(&shelf_.mu);
  EXPECT_TRUE(shelf_.files.empty());
}

TEST_F(TmaServiceTest, ADeploymentWritesEachPhonesFileAndTheFilesGiven) {
  Device("1001", "0800A1000001", "paris");
  Device("1002", "0800A1000002", "lyon");
  const std::string hash = Hash();
  ASSERT_TRUE(AddServer(LocalServer({"paris"})).ok());
  pb::ExportCsvRequest ex;
  ex.set_site("paris");
  pb::ExportCsvResponse csv;
  ASSERT_TRUE(stub_->ExportCsv(Ctx().get(), ex, &csv).ok());
  pb::FileStart cert;
  cert.set_name("CA_Mitel.pem");
  cert.set_role("certificate");
  cert.set_size(5);
  pb::Deployment d;
  grpc::Status s = Deploy(csv.csv(), &d, {{cert, "CERT\n"}});
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_PENDING);
  EXPECT_EQ(d.files_total(), 2);
  EXPECT_EQ(d.phones(), 1);
  ASSERT_TRUE(*runner_->RunOne(d.id()));
  pb::GetDeploymentRequest get;
  get.set_id(d.id());
  ASSERT_TRUE(stub_->GetDeployment(Ctx().get(), get, &d).ok());
  EXPECT_EQ(d.state(), pb::DEPLOYMENT_STATE_COMPLETED);
  absl::MutexLock lock(&shelf_.mu);
  ASSERT_EQ(shelf_.files.size(), 2u);
  EXPECT_EQ(shelf_.files["CA_Mitel.pem"], "CERT\n");
  absl::StatusOr<std::vector<Param>> params = ParsePhoneFile(shelf_.files["0800A1000001.cfg"]);
  ASSERT_TRUE(params.ok()) << params.status();
  std::map<std::string, std::string> p;
  for (const Param& x : *params) p[x.name] = x.value;
  EXPECT_EQ(p["sip line1 user name"], "1001");
  EXPECT_EQ(p["sip line1 password"], "set-1001-pw");
  EXPECT_EQ(p["https path"], hash + "/ftp_67xxi");
  EXPECT_EQ(p["sip proxy ip"], "rwg.example.com");
  EXPECT_EQ(p["sips trusted certificates"], "CA_Mitel.pem");
}

TEST_F(TmaServiceTest, OnlyTheDevicesTheCsvNamesAreRead) {
  Device("1001", "0800A1000001", "paris");
  Device("1002", "0800A1000002", "lyon");
  Device("1003", "0800A1000003", "paris");
  Hash();
  ASSERT_TRUE(AddServer(LocalServer({"paris"})).ok());
  // Other devices' records are damaged: a deployment that does not name them goes on.
  absl::StatusOr<core::RedisReply> rec = redis_->client().Command({"HGET", "rwg:devices", "1003"});
  ASSERT_TRUE(rec.ok() && !rec->is_nil());
  nlohmann::json j = nlohmann::json::parse(rec->str);
  std::string sealed = j["set_password"].get<std::string>();  // "v1:" and base64
  char& c = sealed[sealed.size() / 2];
  c = c == 'A' ? 'B' : 'A';
  j["set_password"] = sealed;
  ASSERT_TRUE(redis_->client().Command({"HSET", "rwg:devices", "1003", j.dump()}).ok());
  // And one is not even JSON any more.
  Device("1004", "0800A1000004", "paris");
  ASSERT_TRUE(redis_->client().Command({"HSET", "rwg:devices", "1004", "{\"set_pass"}).ok());

  const std::string header =
      "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\n";
  pb::Deployment d;
  grpc::Status s = Deploy(header +
                              "08:00:A1:00:00:01,1001,1001,set-1001-pw\n"
                              "08:00:A1:00:00:02,1002,1002,wrong\n",
                          &d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(d.phones(), 2);
  // What was read of each device is what the check and the warnings say: 1002's password and
  // site.
  std::vector<std::string> warnings;
  for (const pb::CsvProblem& w : d.warnings()) warnings.push_back(w.message());
  EXPECT_THAT(warnings,
              UnorderedElementsAre(HasSubstr("set-side password of the device '1002'"),
                                   HasSubstr("device 1002 is of site \"lyon\", which server "
                                             "shelf does not serve")));

  // Naming it fails the deployment with the device and field named, and stores nothing more.
  const size_t deployments = Keys("rwg:tma:dep").size();
  s = Deploy(header + "08:00:A1:00:00:03,1003,1003,set-1003-pw\n", &d);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("device record 1003, set_password"));
  EXPECT_THAT(s.error_message(), HasSubstr("does not authenticate"));
  EXPECT_EQ(Keys("rwg:tma:dep").size(), deployments);
  pb::CheckCsvRequest check;
  check.set_csv(header + "08:00:A1:00:00:03,1003,1003,set-1003-pw\n");
  pb::CheckCsvResponse checked;
  s = stub_->CheckCsv(Ctx().get(), check, &checked);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
}

TEST_F(TmaServiceTest, FilesMustBeWhatTheyAnnounce) {
  Device("1001", "0800A1000001", "paris");
  Hash();
  ASSERT_TRUE(AddServer(LocalServer()).ok());
  const std::string csv =
      "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\n"
      "0800A1000001,1001,1001,set-1001-pw\n";
  pb::FileStart f;
  f.set_name("6867i.st");
  f.set_role("firmware");
  f.set_size(10);
  pb::Deployment d;
  EXPECT_EQ(Deploy(csv, &d, {{f, "short"}}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  f.set_name("../etc/passwd");
  f.set_size(5);
  EXPECT_EQ(Deploy(csv, &d, {{f, "12345"}}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  f.set_name("0800A1000001.cfg");  // the phone's own file
  f.set_role("other");
  EXPECT_EQ(Deploy(csv, &d, {{f, "12345"}}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  f.set_name("aastra.cfg");
  f.set_role("firmware ");
  EXPECT_EQ(Deploy(csv, &d, {{f, "12345"}}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Keys("rwg:tma:dep").empty());
}

TEST_F(TmaServiceTest, DeploymentIdsAreCheckedBeforeTheyBecomeKeys) {
  pb::Deployment d;
  for (const std::string id : {"", "0123456789abcdef:plan", "0123456789ABCDEF", "x"}) {
    pb::GetDeploymentRequest get;
    get.set_id(id);
    grpc::Status s = stub_->GetDeployment(Ctx().get(), get, &d);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << id;
    EXPECT_EQ(s.error_message().rfind("id:", 0), 0u) << s.error_message();
    pb::ResumeDeploymentRequest resume;
    resume.set_id(id);
    EXPECT_EQ(stub_->ResumeDeployment(Ctx().get(), resume, &d).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  pb::GetDeploymentRequest absent;
  absent.set_id("0123456789abcdef");
  EXPECT_EQ(stub_->GetDeployment(Ctx().get(), absent, &d).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(TmaServiceTest, InventoryDeleteNeedsAFilterOrAll) {
  pb::DeleteInventoryRequest req;
  pb::DeleteInventoryResponse resp;
  EXPECT_EQ(stub_->DeleteInventory(Ctx().get(), req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  req.mutable_filter()->add_macs("not-a-mac");
  grpc::Status s = stub_->DeleteInventory(Ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("macs:", 0), 0u) << s.error_message();
}

}  // namespace
}  // namespace rwg::tma
