// `rwgctl ott ...` against a fake OttService on a port of its own: what is sent (the domain, the
// update mask, the password, the token), what is printed and the exit codes.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rwg/ott/v1/ott.grpc.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace ottpb = ::rwg::ott::v1;

class FakeOtt final : public ottpb::OttService::Service {
 public:
  // What the fake was sent and holds; read once the command has returned.
  std::mutex mu;
  std::vector<std::string> authorizations;
  std::vector<std::string> calls;
  ottpb::ListDomainsResponse domains;
  ottpb::UpdateDomainRequest updated;
  ottpb::Account account;
  ottpb::UpdateAccountRequest account_update;

  grpc::Status AddDomain(grpc::ServerContext* ctx, const ottpb::AddDomainRequest* req,
                         ottpb::Domain* resp) override {
    Saw(ctx, "AddDomain");
    std::lock_guard lock(mu);
    for (const ottpb::Domain& d : domains.domains()) {
      if (d.fqdn() == req->domain().fqdn()) {
        return {grpc::StatusCode::ALREADY_EXISTS, "domain " + d.fqdn() + " exists"};
      }
    }
    *resp = req->domain();
    *domains.add_domains() = *resp;
    return grpc::Status::OK;
  }

  grpc::Status UpdateDomain(grpc::ServerContext* ctx, const ottpb::UpdateDomainRequest* req,
                            ottpb::Domain* resp) override {
    Saw(ctx, "UpdateDomain");
    std::lock_guard lock(mu);
    updated = *req;
    *resp = req->domain();
    return grpc::Status::OK;
  }

  grpc::Status DeleteDomain(grpc::ServerContext* ctx, const ottpb::DeleteDomainRequest* req,
                            ottpb::DeleteDomainResponse* /*resp*/) override {
    Saw(ctx, "DeleteDomain " + req->fqdn());
    return grpc::Status::OK;
  }

  grpc::Status ListDomains(grpc::ServerContext* ctx, const ottpb::ListDomainsRequest* /*req*/,
                           ottpb::ListDomainsResponse* resp) override {
    Saw(ctx, "ListDomains");
    std::lock_guard lock(mu);
    *resp = domains;
    return grpc::Status::OK;
  }

  grpc::Status ListServices(grpc::ServerContext* ctx, const ottpb::ListServicesRequest* /*req*/,
                            ottpb::ListServicesResponse* resp) override {
    Saw(ctx, "ListServices");
    ottpb::ServiceInfo* s = resp->add_services();
    s->set_service(ottpb::SERVICE_USER_PORTAL);
    s->set_name("user-portal");
    s->mutable_default_paths()->add_user("/userportal/");
    return grpc::Status::OK;
  }

  grpc::Status AddAccount(grpc::ServerContext* ctx, const ottpb::AddAccountRequest* req,
                          ottpb::Account* resp) override {
    Saw(ctx, "AddAccount");
    std::lock_guard lock(mu);
    account = req->account();
    *resp = req->account();
    resp->clear_password();
    return grpc::Status::OK;
  }

  grpc::Status UpdateAccount(grpc::ServerContext* ctx, const ottpb::UpdateAccountRequest* req,
                             ottpb::Account* resp) override {
    Saw(ctx, "UpdateAccount");
    std::lock_guard lock(mu);
    account_update = *req;
    resp->set_name(req->account().name());
    return grpc::Status::OK;
  }

  grpc::Status ListAccounts(grpc::ServerContext* ctx, const ottpb::ListAccountsRequest* /*req*/,
                            ottpb::ListAccountsResponse* resp) override {
    Saw(ctx, "ListAccounts");
    ottpb::Account* a = resp->add_accounts();
    a->set_name("alice");
    a->set_enabled(true);
    return grpc::Status::OK;
  }

 private:
  void Saw(grpc::ServerContext* ctx, const std::string& call) {
    std::lock_guard lock(mu);
    calls.push_back(call);
    auto it = ctx->client_metadata().find("authorization");
    authorizations.emplace_back(it == ctx->client_metadata().end()
                                    ? ""
                                    : std::string(it->second.data(), it->second.size()));
  }
};

struct Result {
  int code;
  std::string out, err;
};

class RwgctlOttFake : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    address_ = "127.0.0.1:" + std::to_string(port);
    std::string pattern =
        (std::filesystem::temp_directory_path() / "rwgctl-ott-fake-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  std::string Write(const std::string& name, const std::string& content) {
    std::string p = dir_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }

  Result Run(std::vector<const char*> args) {
    for (const char* env : {"RWG_SERVER", "RWG_TMA_SERVER", "RWG_OTT_SERVER", "RWG_CA_CERT",
                            "RWG_INSECURE", "RWG_TOKEN_FILE"}) {
      unsetenv(env);
    }
    setenv("RWG_TOKEN", "admin-token", 1);
    // --server and --tma-server point nowhere: only --ott-server answers.
    args.insert(args.begin(), {"rwgctl", "--insecure", "-s", "127.0.0.1:1", "--tma-server",
                               "127.0.0.1:1", "--ott-server", address_.c_str()});
    std::ostringstream out, err;
    int code = rwgctl::Run(static_cast<int>(args.size()), args.data(), out, err);
    return {code, out.str(), err.str()};
  }

  FakeOtt fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_, dir_;
};

TEST_F(RwgctlOttFake, DomainAddSendsTheDomainWithTheToken) {
  Result r = Run({"ott", "domain", "add", "portal.example.com", "--service", "user-portal",
                  "--backend", "manager.lan:443", "--backend-tls", "--backend-ca",
                  "/etc/rwg/manager-ca.pem", "--user-path", "/userportal/", "--user-path", "/ws/"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "domain portal.example.com added\n");
  EXPECT_THAT(r.err, HasSubstr("warning: no certificate for portal.example.com"));
  r = Run({"ott", "domain", "add", "portal.example.com", "--service", "user-portal", "--backend",
           "manager.lan:443"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "rwgctl: ALREADY_EXISTS: domain portal.example.com exists\n");

  r = Run({"ott", "domain", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("portal.example.com  user-portal  https://manager.lan:443"));
  r = Run({"-o", "json", "ott", "domain", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"ca_file\": \"/etc/rwg/manager-ca.pem\""));

  std::lock_guard lock(fake_.mu);
  ASSERT_EQ(fake_.domains.domains_size(), 1);
  const ottpb::Domain& d = fake_.domains.domains(0);
  EXPECT_EQ(d.service(), ottpb::SERVICE_USER_PORTAL);
  EXPECT_TRUE(d.backend().tls());
  EXPECT_TRUE(d.enabled());
  EXPECT_THAT(d.paths().user(), ElementsAre("/userportal/", "/ws/"));
  for (const std::string& a : fake_.authorizations) EXPECT_EQ(a, "Bearer admin-token");
}

TEST_F(RwgctlOttFake, DomainUpdateWithSomeListsKeepsTheOthers) {
  {
    std::lock_guard lock(fake_.mu);
    ottpb::Domain* d = fake_.domains.add_domains();
    d->set_fqdn("portal.example.com");
    d->mutable_backend()->set_host("manager.lan");
    d->mutable_paths()->add_admin("/admin/");
  }
  Result r = Run({"ott", "domain", "update", "Portal.example.com", "--user-path", "/userportal/",
                  "--common-path", "/favicon.ico", "--disable"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "domain portal.example.com updated\n");
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_THAT(fake_.calls, ElementsAre("ListDomains", "UpdateDomain"));
    EXPECT_THAT(fake_.updated.update_mask(), ElementsAre("enabled", "paths"));
    EXPECT_EQ(fake_.updated.domain().fqdn(), "portal.example.com");
    EXPECT_FALSE(fake_.updated.domain().enabled());
    EXPECT_THAT(fake_.updated.domain().paths().admin(), ElementsAre("/admin/"));
    EXPECT_THAT(fake_.updated.domain().paths().user(), ElementsAre("/userportal/"));
    fake_.calls.clear();
  }
  // Only --disable: no need to read the domain first.
  r = Run({"ott", "domain", "update", "portal.example.com", "--disable"});
  EXPECT_EQ(r.code, 0) << r.err;
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_THAT(fake_.calls, ElementsAre("UpdateDomain"));
  }
  r = Run({"ott", "domain", "update", "nowhere.example.com", "--backend-tls"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "rwgctl: no domain nowhere.example.com\n");
}

TEST_F(RwgctlOttFake, DomainDeleteAndServiceList) {
  Result r = Run({"ott", "domain", "delete", "portal.example.com"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "domain portal.example.com deleted\n");
  r = Run({"ott", "service", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("user-portal  /userportal/"));
  std::lock_guard lock(fake_.mu);
  EXPECT_THAT(fake_.calls, ElementsAre("DeleteDomain portal.example.com", "ListServices"));
}

TEST_F(RwgctlOttFake, AccountsWithThePasswordFromAFile) {
  const std::string pw = Write("pw", "correct horse battery\n");
  Result r = Run({"ott", "account", "add", "alice", "--password-file", pw.c_str()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "account alice added\n");
  r = Run({"ott", "account", "update", "alice", "--unlock"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "account alice updated\n");
  r = Run({"ott", "account", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("alice  enabled"));
  // A password is never an argument.
  r = Run({"ott", "account", "add", "bob", "--password", "correct horse battery"});
  EXPECT_EQ(r.code, 2);
  std::lock_guard lock(fake_.mu);
  EXPECT_EQ(fake_.account.name(), "alice");
  EXPECT_EQ(fake_.account.password(), "correct horse battery");
  EXPECT_TRUE(fake_.account.enabled());
  EXPECT_THAT(fake_.account_update.update_mask(), ElementsAre("unlock"));
}

}  // namespace
}  // namespace rwg::rwgctl
