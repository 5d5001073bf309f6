// The provisioning store target against a real FileStore service (in-process gRPC server on
// loopback, plaintext and TLS).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/core/random.h"
#include "services/provisioning/store_service.h"
#include "services/tma/target.h"

namespace rwg::tma {
namespace {

namespace fs = std::filesystem;

constexpr char kToken[] = "store-target-test-token-0123456789";

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Binary(size_t n, unsigned seed = 7) {
  std::string s(n, '\0');
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(i < 256 ? i : (x >> 24));
  }
  return s;
}

::testing::AssertionResult Same(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got.size() << " bytes, " << want.size() << " expected";
}

std::vector<std::string> OnDisk(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class StoreTargetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("rwg-store-target-" + core::RandomHex(core::Random::System(), 6));
    fs::create_directories(dir_ / "files");
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    fs::remove_all(dir_);
  }

  // The store service on 127.0.0.1, with TLS when `tls`; its largest file is 1 MiB.
  void Serve(bool tls = false) {
    service_ = std::make_unique<provisioning::StoreServiceImpl>((dir_ / "files").string(), kToken,
                                                                core::Random::System(), 1 << 20);
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (tls) {
      const std::string cmd = absl::StrCat(
          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
          "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout ",
          (dir_ / "key.pem").string(), " -out ", (dir_ / "cert.pem").string(), " 2>/dev/null");
      ASSERT_EQ(std::system(cmd.c_str()), 0);  // NOLINT(cert-env33-c): a fixed command
      grpc::SslServerCredentialsOptions o;
      o.pem_key_cert_pairs.push_back({Slurp(dir_ / "key.pem"), Slurp(dir_ / "cert.pem")});
      creds = grpc::SslServerCredentials(o);
    }
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", creds, &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  StoreTargetOptions Options() const {
    StoreTargetOptions o;
    o.address = absl::StrCat("127.0.0.1:", port_);
    o.token = kToken;
    o.timeout = absl::Seconds(10);
    return o;
  }

  fs::path files() const { return dir_ / "files"; }

  fs::path dir_;
  int port_ = 0;
  std::unique_ptr<provisioning::StoreServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(StoreTargetTest, PutGetListDeleteByteForByte) {
  Serve();
  auto t = NewStoreTarget(Options());
  const std::string binary = Binary(300 * 1024 + 5);  // several 64 KiB chunks
  ASSERT_TRUE(t->Put("6867i.st", binary).ok());
  ASSERT_TRUE(t->Put("empty.cfg", "").ok());
  ASSERT_TRUE(t->Put("0800a1b2c3d4.cfg", "sip line1 user name: 1001\n").ok());
  EXPECT_TRUE(Same(Slurp(files() / "6867i.st"), binary));
  EXPECT_EQ(fs::file_size(files() / "empty.cfg"), 0u);
  // The store keeps a MAC file under the name phones ask for.
  EXPECT_EQ(Slurp(files() / "0800A1B2C3D4.cfg"), "sip line1 user name: 1001\n");

  absl::StatusOr<std::string> got = t->Get("6867i.st");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(Same(*got, binary));
  got = t->Get("empty.cfg");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "");
  got = t->Get("0800a1b2c3d4.cfg");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "sip line1 user name: 1001\n");
  EXPECT_EQ(t->Get("absent.cfg").status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<std::vector<RemoteFile>> list = t->List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].name, "0800A1B2C3D4.cfg");
  EXPECT_EQ((*list)[1].name, "6867i.st");
  EXPECT_EQ((*list)[1].size, binary.size());
  EXPECT_EQ((*list)[2].name, "empty.cfg");
  EXPECT_EQ((*list)[2].size, 0u);

  // Replacing: the new content, whole.
  ASSERT_TRUE(t->Put("6867i.st", "v2").ok());
  EXPECT_EQ(Slurp(files() / "6867i.st"), "v2");

  ASSERT_TRUE(t->Delete("6867i.st").ok());
  EXPECT_TRUE(t->Delete("6867i.st").ok());  // not there: done as well
  EXPECT_EQ(OnDisk(files()), (std::vector<std::string>{"0800A1B2C3D4.cfg", "empty.cfg"}));
}

TEST_F(StoreTargetTest, ARefusedPutLeavesTheOldFile) {
  Serve();
  auto t = NewStoreTarget(Options());
  ASSERT_TRUE(t->Put("6867i.st", "old").ok());
  absl::Status s = t->Put("6867i.st", Binary((1 << 20) + 1));  // over the store's largest
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(Slurp(files() / "6867i.st"), "old");
  EXPECT_EQ(OnDisk(files()), std::vector<std::string>{"6867i.st"});
}

TEST_F(StoreTargetTest, AWrongTokenIsPermissionDeniedWithoutTheToken) {
  Serve();
  StoreTargetOptions o = Options();
  o.token = "wrong-token-wrong-token-wrong";
  auto t = NewStoreTarget(o);
  absl::Status s = t->Put("a.cfg", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_FALSE(absl::StrContains(s.message(), o.token)) << s;
  EXPECT_EQ(t->Get("a.cfg").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(t->List().status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(t->Delete("a.cfg").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(OnDisk(files()).empty());
}

TEST_F(StoreTargetTest, AStoppedServiceIsUnavailable) {
  Serve();
  auto t = NewStoreTarget(Options());
  ASSERT_TRUE(t->Put("a.cfg", "x").ok());
  server_->Shutdown();
  server_.reset();
  absl::Status s = t->Put("a.cfg", "y");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(t->Get("a.cfg").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(t->List().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Slurp(files() / "a.cfg"), "x");
}

TEST_F(StoreTargetTest, TlsWithTheStoresCa) {
  Serve(/*tls=*/true);
  StoreTargetOptions o = Options();
  o.ca_file = (dir_ / "cert.pem").string();
  auto t = NewStoreTarget(o);
  absl::Status s = t->Put("a.cfg", "over tls");
  ASSERT_TRUE(s.ok()) << s;
  absl::StatusOr<std::string> got = t->Get("a.cfg");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "over tls");
  // Plaintext to a TLS port, and a CA file that is not there: refused.
  EXPECT_EQ(NewStoreTarget(Options())->Put("b.cfg", "x").code(), absl::StatusCode::kUnavailable);
  o.ca_file = (dir_ / "absent.pem").string();
  EXPECT_EQ(NewStoreTarget(o)->Put("b.cfg", "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(OnDisk(files()), std::vector<std::string>{"a.cfg"});
}

TEST_F(StoreTargetTest, BadNamesAreRefusedBeforeTheNetwork) {
  StoreTargetOptions o;
  o.address = "127.0.0.1:1";  // nothing there: a call that went out would be UNAVAILABLE
  o.token = kToken;
  auto t = NewStoreTarget(o);
  for (const std::string& name : std::vector<std::string>{"", ".hidden", "../etc/passwd", "a/b.cfg",
                                                          "a b.cfg", std::string(256, 'a')}) {
    EXPECT_EQ(t->Put(name, "x").code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_EQ(t->Get(name).status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_EQ(t->Delete(name).code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

}  // namespace
}  // namespace rwg::tma
