// The file store API through a real gRPC server and client on loopback.
#include "services/provisioning/store_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/escaping.h"
#include "services/core/random.h"

namespace rwg::provisioning {
namespace {

constexpr char kToken[] = "store-test-token-0123456789";

std::string Sha(const std::string& s) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), md);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), sizeof(md)));
}

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class StoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("rwg-store-" + core::RandomHex(core::Random::System(), 6));
    std::filesystem::create_directory(dir_);
    service_ =
        std::make_unique<StoreServiceImpl>(dir_.string(), kToken, core::Random::System(), 1 << 20);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    stub_ = storepb::FileStore::NewStub(channel);
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const char* token = kToken) {
    auto c = std::make_unique<grpc::ClientContext>();
    if (token != nullptr) c->AddMetadata("authorization", std::string("Bearer ") + token);
    return c;
  }

  grpc::Status Put(const std::string& name, const std::string& content, const std::string& sha,
                   uint64_t size, storepb::FileInfo* out, size_t chunk = 4096,
                   const char* token = kToken) {
    auto ctx = Ctx(token);
    auto w = stub_->Put(ctx.get(), out);
    storepb::PutRequest h;
    h.mutable_header()->set_name(name);
    h.mutable_header()->set_sha256(sha);
    h.mutable_header()->set_size(size);
    w->Write(h);
    for (size_t i = 0; i < content.size(); i += chunk) {
      storepb::PutRequest c;
      c.set_chunk(content.substr(i, chunk));
      if (!w->Write(c)) break;
    }
    w->WritesDone();
    return w->Finish();
  }

  // Get's chunks, each checked to be at most 64 KiB.
  grpc::Status Get(const std::string& name, std::string* out, size_t* chunks = nullptr,
                   const char* token = kToken) {
    auto ctx = Ctx(token);
    storepb::GetRequest req;
    req.set_name(name);
    auto r = stub_->Get(ctx.get(), req);
    out->clear();
    size_t n = 0;
    for (storepb::GetResponse msg; r->Read(&msg);) {
      EXPECT_LE(msg.chunk().size(), 64u * 1024);
      out->append(msg.chunk());
      ++n;
    }
    if (chunks != nullptr) *chunks = n;
    return r->Finish();
  }

  // Names in the store directory (temporary files included).
  std::vector<std::string> OnDisk() {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      out.push_back(e.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<StoreServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<storepb::FileStore::Stub> stub_;
};

TEST_F(StoreServiceTest, PutStatListDelete) {
  std::string firmware(300 * 1024 + 7, '\0');
  for (size_t i = 0; i < firmware.size(); ++i) firmware[i] = static_cast<char>(i * 31 + 7);
  storepb::FileInfo info;
  ASSERT_TRUE(Put("6867i.st", firmware, Sha(firmware), firmware.size(), &info).ok());
  EXPECT_EQ(info.name(), "6867i.st");
  EXPECT_EQ(info.size(), firmware.size());
  EXPECT_EQ(info.sha256(), Sha(firmware));
  EXPECT_EQ(Slurp(dir_ / "6867i.st"), firmware);
  // A MAC file is stored under the name phones' requests are read as; no checksum needed.
  ASSERT_TRUE(Put("0800a1b2c3d4.cfg", "sip line1 user name: 1001\n", "", 0, &info).ok());
  EXPECT_EQ(info.name(), "0800A1B2C3D4.cfg");
  // Replacing a file: the new content, whole.
  ASSERT_TRUE(Put("6867i.st", "v2", "", 2, &info).ok());
  EXPECT_EQ(Slurp(dir_ / "6867i.st"), "v2");

  storepb::StatRequest sr;
  sr.set_name("0800A1B2C3D4.cfg");
  auto ctx = Ctx();
  ASSERT_TRUE(stub_->Stat(ctx.get(), sr, &info).ok());
  EXPECT_EQ(info.sha256(), Sha("sip line1 user name: 1001\n"));
  EXPECT_GT(info.modified_unix_ms(), 0);

  storepb::ListResponse list;
  ctx = Ctx();
  ASSERT_TRUE(stub_->List(ctx.get(), storepb::ListRequest(), &list).ok());
  ASSERT_EQ(list.files_size(), 2);
  EXPECT_EQ(list.files(0).name(), "0800A1B2C3D4.cfg");
  EXPECT_EQ(list.files(1).name(), "6867i.st");
  EXPECT_EQ(list.files(1).size(), 2u);

  storepb::DeleteRequest dr;
  dr.set_name("6867i.st");
  storepb::DeleteResponse del;
  ctx = Ctx();
  ASSERT_TRUE(stub_->Delete(ctx.get(), dr, &del).ok());
  EXPECT_TRUE(del.deleted());
  ctx = Ctx();
  ASSERT_TRUE(stub_->Delete(ctx.get(), dr, &del).ok());
  EXPECT_FALSE(del.deleted());
  sr.set_name("6867i.st");
  ctx = Ctx();
  EXPECT_EQ(stub_->Stat(ctx.get(), sr, &info).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(OnDisk(), std::vector<std::string>{"0800A1B2C3D4.cfg"});
}

TEST_F(StoreServiceTest, GetStreamsTheContentInChunks) {
  std::string firmware(200 * 1024 + 3, '\0');
  for (size_t i = 0; i < firmware.size(); ++i) firmware[i] = static_cast<char>(i * 131 + 1);
  storepb::FileInfo info;
  ASSERT_TRUE(Put("6867i.st", firmware, "", 0, &info).ok());
  ASSERT_TRUE(Put("0800a1b2c3d4.cfg", "mac file\n", "", 0, &info).ok());
  ASSERT_TRUE(Put("empty.cfg", "", "", 0, &info).ok());
  std::string got;
  size_t chunks = 0;
  ASSERT_TRUE(Get("6867i.st", &got, &chunks).ok());
  EXPECT_EQ(got, firmware);
  EXPECT_EQ(chunks, 4u);
  // A MAC file is found under either case, as for a put.
  ASSERT_TRUE(Get("0800a1b2c3d4.cfg", &got).ok());
  EXPECT_EQ(got, "mac file\n");
  ASSERT_TRUE(Get("empty.cfg", &got, &chunks).ok());
  EXPECT_EQ(got, "");
  EXPECT_EQ(chunks, 0u);

  grpc::Status s = Get("absent.cfg", &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("absent.cfg"), std::string::npos) << s.error_message();
  for (const char* name : {"../etc/passwd", ".hidden", "a/b.cfg", ""}) {
    s = Get(name, &got);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_NE(s.error_message().find("name"), std::string::npos) << s.error_message();
  }
  // A directory is not a file.
  std::filesystem::create_directory(dir_ / "subdir");
  EXPECT_EQ(Get("subdir", &got).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get("6867i.st", &got, nullptr, "wrong-token-wrong-token").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(got.empty());
}

TEST_F(StoreServiceTest, AFailedPutLeavesTheOldFileAndNothingElse) {
  storepb::FileInfo info;
  ASSERT_TRUE(Put("aastra.cfg", "old\n", "", 0, &info).ok());
  const std::string content(10000, 'x');
  // Wrong checksum, wrong size, too big: refused, the old file untouched, no leftovers.
  grpc::Status s = Put("aastra.cfg", content, Sha("something else"), 0, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(s.error_message().find("header.sha256"), std::string::npos) << s.error_message();
  s = Put("aastra.cfg", content, "", content.size() + 1, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(s.error_message().find("header.size"), std::string::npos) << s.error_message();
  s = Put("aastra.cfg", std::string((1 << 20) + 1, 'y'), "", 0, &info, 64 * 1024);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(Slurp(dir_ / "aastra.cfg"), "old\n");
  EXPECT_EQ(OnDisk(), std::vector<std::string>{"aastra.cfg"});
}

TEST_F(StoreServiceTest, BadNamesAndHeadersAreRefusedNamingTheField) {
  storepb::FileInfo info;
  for (const char* name : {"../etc/passwd", ".hidden", "a/b.cfg", "", "a b.cfg", "x\\y"}) {
    grpc::Status s = Put(name, "x", "", 0, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_NE(s.error_message().find("header.name"), std::string::npos) << s.error_message();
  }
  grpc::Status s = Put("a.cfg", "x", "not-hex", 0, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("header.sha256"), std::string::npos);
  // Content before any header.
  auto ctx = Ctx();
  auto w = stub_->Put(ctx.get(), &info);
  storepb::PutRequest c;
  c.set_chunk("data");
  w->Write(c);
  w->WritesDone();
  EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  storepb::StatRequest sr;
  sr.set_name("../secret");
  ctx = Ctx();
  EXPECT_EQ(stub_->Stat(ctx.get(), sr, &info).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(OnDisk().empty());
}

TEST_F(StoreServiceTest, EveryCallNeedsTheToken) {
  storepb::FileInfo info;
  EXPECT_EQ(Put("a.cfg", "x", "", 0, &info, 4096, nullptr).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Put("a.cfg", "x", "", 0, &info, 4096, "wrong-token-wrong-token").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  storepb::ListResponse list;
  auto ctx = Ctx(nullptr);
  EXPECT_EQ(stub_->List(ctx.get(), storepb::ListRequest(), &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(OnDisk().empty());
}

}  // namespace
}  // namespace rwg::provisioning
