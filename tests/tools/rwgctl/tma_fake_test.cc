// `rwgctl tma ...` against a fake TmaService on a port of its own: what is sent (the streamed
// deployment, the token, the filters), what is printed and the exit codes.
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
#include "rwg/tma/v1/tma.grpc.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
namespace tmapb = ::rwg::tma::v1;

struct ReceivedFile {
  tmapb::FileStart start;
  std::string content;
  std::vector<size_t> chunks;
};

class FakeTma final : public tmapb::TmaService::Service {
 public:
  // What the fake was sent; read once the command has returned.
  std::mutex mu;
  std::vector<std::string> authorizations;
  tmapb::DeploymentHeader header;
  std::vector<ReceivedFile> files;
  std::vector<tmapb::ListEventsRequest> event_requests;
  tmapb::DeleteInventoryRequest deleted;
  tmapb::Server added;
  // How deployments end: "" completes them, else they fail with this error.
  std::string failure;

  grpc::Status AddServer(grpc::ServerContext* ctx, const tmapb::AddServerRequest* req,
                         tmapb::Server* resp) override {
    Saw(ctx);
    std::lock_guard lock(mu);
    added = req->server();
    *resp = req->server();
    resp->clear_password();
    resp->set_has_password(true);
    return grpc::Status::OK;
  }

  grpc::Status CreateDeployment(grpc::ServerContext* ctx,
                                grpc::ServerReader<tmapb::CreateDeploymentRequest>* reader,
                                tmapb::Deployment* resp) override {
    Saw(ctx);
    std::lock_guard lock(mu);
    tmapb::CreateDeploymentRequest part;
    while (reader->Read(&part)) {
      if (part.has_header()) {
        header = part.header();
      } else if (part.has_file()) {
        files.push_back({part.file(), "", {}});
      } else if (!files.empty()) {
        files.back().content += part.chunk();
        files.back().chunks.push_back(part.chunk().size());
      }
    }
    if (header.csv() == "bad\n") {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "row 2, column MAC ADDRESS: '0800' is 4 hex digits, not 12"};
    }
    resp->set_id("d-1");
    resp->set_server(header.server());
    resp->set_state(tmapb::DEPLOYMENT_STATE_PENDING);
    resp->set_phones(2);
    resp->set_files_total(static_cast<int32_t>(files.size()) + 2);
    tmapb::CsvProblem* w = resp->add_warnings();
    w->set_row(3);
    w->set_warning(true);
    w->set_message("device 2002 has another MAC");
    return grpc::Status::OK;
  }

  grpc::Status WatchDeployment(grpc::ServerContext* ctx, const tmapb::WatchDeploymentRequest* req,
                               grpc::ServerWriter<tmapb::Deployment>* writer) override {
    Saw(ctx);
    tmapb::Deployment d;
    d.set_id(req->id());
    d.set_state(tmapb::DEPLOYMENT_STATE_RUNNING);
    d.set_files_total(4);
    for (int done = 0; done < 4; ++done) {
      d.set_files_done(done);
      d.set_current_file(done == 0 ? "0800A1B2C3D4.cfg" : "0800A1B2C3D5.cfg");
      writer->Write(d);
    }
    std::lock_guard lock(mu);
    d.set_current_file("");
    if (failure.empty()) {
      d.set_files_done(4);
      d.set_state(tmapb::DEPLOYMENT_STATE_COMPLETED);
    } else {
      d.set_state(tmapb::DEPLOYMENT_STATE_FAILED);
      d.set_error(failure);
    }
    writer->Write(d);
    return grpc::Status::OK;
  }

  grpc::Status ListEvents(grpc::ServerContext* ctx, const tmapb::ListEventsRequest* req,
                          tmapb::ListEventsResponse* resp) override {
    Saw(ctx);
    std::lock_guard lock(mu);
    event_requests.push_back(*req);
    for (uint64_t seq = req->after_seq() + 1; seq <= 5 && resp->events_size() < req->limit();
         ++seq) {
      tmapb::Event* e = resp->add_events();
      e->set_seq(seq);
      e->set_deployment("d-1");
      e->set_action("file.written");
      e->set_file("f" + std::to_string(seq) + ".cfg");
    }
    return grpc::Status::OK;
  }

  grpc::Status DeleteInventory(grpc::ServerContext* ctx, const tmapb::DeleteInventoryRequest* req,
                               tmapb::DeleteInventoryResponse* resp) override {
    Saw(ctx);
    std::lock_guard lock(mu);
    deleted = *req;
    resp->set_deleted(3);
    return grpc::Status::OK;
  }

 private:
  void Saw(grpc::ServerContext* ctx) {
    std::lock_guard lock(mu);
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

class RwgctlTmaFake : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    address_ = "127.0.0.1:" + std::to_string(port);
    std::string pattern =
        (std::filesystem::temp_directory_path() / "rwgctl-tma-fake-XXXXXX").string();
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
    for (const char* env :
         {"RWG_SERVER", "RWG_TMA_SERVER", "RWG_CA_CERT", "RWG_INSECURE", "RWG_TOKEN_FILE"}) {
      unsetenv(env);
    }
    setenv("RWG_TOKEN", "admin-token", 1);
    args.insert(args.begin(), {"rwgctl", "--insecure", "--tma-server", address_.c_str()});
    std::ostringstream out, err;
    int code = rwgctl::Run(static_cast<int>(args.size()), args.data(), out, err);
    return {code, out.str(), err.str()};
  }

  FakeTma fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_, dir_;
};

TEST_F(RwgctlTmaFake, DeployStreamsTheHeaderThenEachFileIn64KiBChunksAndWatches) {
  const std::string csv = Write("rw.csv", "MAC ADDRESS,...\n");
  const std::string firmware = Write("6867i.st", std::string(150000, 'f'));
  const std::string ca = Write("CA_Mitel.pem", "pem");
  const std::string global = Write("aastra.cfg", "");
  Result r = Run({"tma", "deploy", "--server", "rw-ftp", "--csv", csv.c_str(), "--firmware",
                  firmware.c_str(), "--certificate", ca.c_str(), "--global", global.c_str(),
                  "--proxy", "sip.example.com", "--description", "Paris"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Deployment completed\n");
  // Plain progress lines (not a terminal): the first, then at most one a second, and the last.
  EXPECT_THAT(r.err, HasSubstr("warning: row 3: device 2002 has another MAC\n"));
  EXPECT_THAT(r.err, HasSubstr("deployment d-1: 2 phone(s), 5 file(s)\n"));
  EXPECT_THAT(r.err, HasSubstr("0/4 files  0800A1B2C3D4.cfg\n"));
  EXPECT_THAT(r.err, ::testing::EndsWith("4/4 files\n"));
  EXPECT_THAT(r.err, Not(HasSubstr("\r")));

  std::lock_guard lock(fake_.mu);
  EXPECT_EQ(fake_.header.server(), "rw-ftp");
  EXPECT_EQ(fake_.header.csv(), "MAC ADDRESS,...\n");
  EXPECT_EQ(fake_.header.global_file(), "aastra.cfg");
  EXPECT_EQ(fake_.header.system().sip_proxy_ip(), "sip.example.com");
  EXPECT_EQ(fake_.header.description(), "Paris");
  ASSERT_EQ(fake_.files.size(), 3u);
  EXPECT_EQ(fake_.files[0].start.name(), "aastra.cfg");
  EXPECT_EQ(fake_.files[0].start.role(), "global");
  EXPECT_EQ(fake_.files[0].start.size(), 0u);
  EXPECT_TRUE(fake_.files[0].chunks.empty());
  EXPECT_EQ(fake_.files[1].start.name(), "6867i.st");
  EXPECT_EQ(fake_.files[1].start.role(), "firmware");
  EXPECT_EQ(fake_.files[1].start.size(), 150000u);
  EXPECT_THAT(fake_.files[1].chunks, ElementsAre(65536u, 65536u, 18928u));
  EXPECT_EQ(fake_.files[1].content, std::string(150000, 'f'));
  EXPECT_EQ(fake_.files[2].start.name(), "CA_Mitel.pem");
  EXPECT_EQ(fake_.files[2].start.role(), "certificate");
  EXPECT_EQ(fake_.files[2].content, "pem");
  for (const std::string& a : fake_.authorizations) EXPECT_EQ(a, "Bearer admin-token");
}

TEST_F(RwgctlTmaFake, AFailedDeploymentSaysWhyAndExitsOne) {
  {
    std::lock_guard lock(fake_.mu);
    fake_.failure = "rw-ftp: 550 permission denied writing 0800A1B2C3D5.cfg";
  }
  const std::string csv = Write("rw.csv", "MAC ADDRESS,...\n");
  Result r = Run({"tma", "deploy", "--server", "rw-ftp", "--csv", csv.c_str()});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "Deployment failed: rw-ftp: 550 permission denied writing 0800A1B2C3D5.cfg\n");
  EXPECT_THAT(r.err, Not(HasSubstr("rwgctl:")));

  r = Run({"-o", "json", "tma", "deployment", "watch", "d-1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("\"state\": \"DEPLOYMENT_STATE_FAILED\""));
}

TEST_F(RwgctlTmaFake, ABadCsvIsAnArgumentErrorWithTheServersMessage) {
  const std::string csv = Write("rw.csv", "bad\n");
  Result r = Run({"tma", "deploy", "--server", "rw-ftp", "--csv", csv.c_str()});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: row 2, column MAC ADDRESS: '0800' is 4 hex digits, not 12\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(RwgctlTmaFake, DetachedDeploymentsAreNotWatched) {
  const std::string csv = Write("rw.csv", "MAC ADDRESS,...\n");
  Result r = Run({"tma", "deploy", "--server", "local", "--csv", csv.c_str(), "--detach"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "deployment d-1 started: 2 phone(s), 2 file(s)\n");
  EXPECT_THAT(r.err, Not(HasSubstr("files")));
}

TEST_F(RwgctlTmaFake, EventsArePagedAfterTheLastSeq) {
  Result r = Run({"tma", "events", "--deployment", "d-1", "--limit", "3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("f3.cfg"));
  EXPECT_THAT(r.out, Not(HasSubstr("f4.cfg")));
  r = Run({"tma", "events"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("f5.cfg"));
  std::lock_guard lock(fake_.mu);
  ASSERT_EQ(fake_.event_requests.size(), 2u);
  EXPECT_EQ(fake_.event_requests[0].deployment(), "d-1");
  EXPECT_EQ(fake_.event_requests[0].limit(), 3);
  EXPECT_EQ(fake_.event_requests[1].after_seq(), 0u);
  EXPECT_EQ(fake_.event_requests[1].limit(), 1000);
}

TEST_F(RwgctlTmaFake, InventoryDeleteWithYesSendsTheFilter) {
  Result r =
      Run({"tma", "inventory", "delete", "--site", "Paris", "--mac", "0800A1B2C3D4", "--yes"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "3 phone(s) deleted\n");
  std::lock_guard lock(fake_.mu);
  EXPECT_EQ(fake_.deleted.filter().site(), "Paris");
  EXPECT_THAT(fake_.deleted.filter().macs(), ElementsAre("0800A1B2C3D4"));
  EXPECT_FALSE(fake_.deleted.all());
}

TEST_F(RwgctlTmaFake, ServerAddSendsThePasswordFromItsFile) {
  const std::string pw = Write("pw", "ftp-secret\n");
  Result r = Run({"tma", "server", "add", "rw-ftp", "--kind", "ftps", "--address", "192.0.2.21",
                  "--site", "Paris", "--password-file", pw.c_str()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "server rw-ftp added\n");
  std::lock_guard lock(fake_.mu);
  EXPECT_EQ(fake_.added.kind(), tmapb::SERVER_KIND_FTPS);
  EXPECT_EQ(fake_.added.password(), "ftp-secret");
  EXPECT_THAT(fake_.added.sites(), ElementsAre("Paris"));
}

}  // namespace
}  // namespace rwg::rwgctl
