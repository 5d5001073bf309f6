#include "services/provisioning/request_path.h"

#include <gtest/gtest.h>

#include <string>

namespace rwg::provisioning {
namespace {

TEST(RequestPathTest, FilesOfTheStore) {
  auto p = ParseRequestPath("/0123abcd/ftp_67xxi/aastra.cfg");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->hash, "0123abcd");
  EXPECT_EQ(p->kind, RequestPath::Kind::kFile);
  EXPECT_EQ(p->file, "aastra.cfg");
  p = ParseRequestPath("/h/ftp_67xxi/6867i.st");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->file, "6867i.st");
}

TEST(RequestPathTest, MacFileNamesAreUpperCase) {
  auto p = ParseRequestPath("/h/ftp_67xxi/0800a1b2c3d4.cfg");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->file, "0800A1B2C3D4.cfg");
  EXPECT_EQ(StoreName("0800A1B2C3D4.CFG"), "0800A1B2C3D4.cfg");
  EXPECT_EQ(StoreName("startup.cfg"), "startup.cfg");
  EXPECT_EQ(StoreName("0800a1b2c3dz.cfg"), "0800a1b2c3dz.cfg");  // not hex: not a MAC
}

TEST(RequestPathTest, OtherPathsUnderTheHashAreProxied) {
  auto p = ParseRequestPath("/h/omm.mghc/?key=20&na=1234");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kind, RequestPath::Kind::kProxy);
  p = ParseRequestPath("/h/scripts/keyboard.xml");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->kind, RequestPath::Kind::kProxy);
}

TEST(RequestPathTest, HostileTargetsAreRefused) {
  struct Case {
    const char* target;
    absl::StatusCode code;
  };
  const Case cases[] = {
      {"/h/ftp_67xxi/../../etc/passwd", absl::StatusCode::kNotFound},
      {"/h/ftp_67xxi/%2e%2e/secret.key", absl::StatusCode::kNotFound},
      {"/h/ftp_67xxi/..%2fsecret.key", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/a%2Fb.cfg", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/a%5cb.cfg", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/a\\b.cfg", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/a%00.cfg", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/a%0a.cfg", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/a%zz.cfg", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/a%4", absl::StatusCode::kInvalidArgument},
      {"/h/ftp_67xxi/.hidden", absl::StatusCode::kNotFound},
      {"/h/ftp_67xxi/sub/dir.cfg", absl::StatusCode::kNotFound},
      {"/h/ftp_67xxi/", absl::StatusCode::kNotFound},
      {"/h/ftp_67xxi", absl::StatusCode::kNotFound},
      {"/h/ftp_67xxi/a.cfg?x=1", absl::StatusCode::kNotFound},
      {"/h//ftp_67xxi/a.cfg", absl::StatusCode::kNotFound},
      {"/h/ftp_67xxi/a b.cfg", absl::StatusCode::kNotFound},
      {"/h", absl::StatusCode::kNotFound},
      {"h/ftp_67xxi/a.cfg", absl::StatusCode::kInvalidArgument},
      {"", absl::StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    auto p = ParseRequestPath(c.target);
    EXPECT_EQ(p.status().code(), c.code) << c.target << ": " << p.status();
  }
  const std::string longest = "/h/ftp_67xxi/" + std::string(kMaxTarget, 'a');
  EXPECT_EQ(ParseRequestPath(longest).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RequestPathTest, LogsNeverShowTheHash) {
  EXPECT_EQ(RedactHash("/s3cr3t/ftp_67xxi/aastra.cfg"), "/<hash>/ftp_67xxi/aastra.cfg");
  EXPECT_EQ(RedactHash("/s3cr3t?x"), "/<hash>?x");
  EXPECT_EQ(RedactHash("/s3cr3t"), "/<hash>");
  EXPECT_EQ(RedactHash("garbage"), "<unparsed>");
}

TEST(RequestPathTest, MacOfPerPhoneFiles) {
  EXPECT_EQ(MacOfFile("0800A1B2C3D4.cfg"), "0800A1B2C3D4");
  EXPECT_EQ(MacOfFile("0800a1b2c3d4.cfg"), "0800A1B2C3D4");
  EXPECT_EQ(MacOfFile("0800A1B2C3D4.tuz"), "0800A1B2C3D4");
  EXPECT_EQ(MacOfFile("0800A1B2C3D4-local.cfg"), "0800A1B2C3D4");
  for (const char* other :
       {"aastra.cfg", "startup.cfg", "6867i.cfg", "security.tuz", "6869i.st", "CA_Mitel.pem",
        "0800A1B2C3D4", "0800A1B2C3.cfg", "0800A1B2C3G4.cfg", "0800A1B2C3D4E5.cfg", ""}) {
    EXPECT_EQ(MacOfFile(other), "") << other;
  }
}

TEST(RequestPathTest, MacOfPhonesConfigurationFiles) {
  EXPECT_EQ(MacOfConfigFile("0800A1B2C3D4.cfg"), "0800A1B2C3D4");
  // A request for the lower-case name has the store's name.
  absl::StatusOr<RequestPath> p = ParseRequestPath("/h/ftp_67xxi/0800a1b2c3d4.CFG");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(MacOfConfigFile(p->file), "0800A1B2C3D4");
  for (const char* other :
       {"0800A1B2C3D4.tuz", "0800A1B2C3D4-local.cfg", "0800a1b2c3d4.cfg", "0800A1B2C3D4.CFG",
        "aastra.cfg", "6867i.cfg", "0800A1B2C3G4.cfg", "0800A1B2C3D4E5.cfg", "0800A1B2C3D4", ""}) {
    EXPECT_EQ(MacOfConfigFile(other), "") << other;
  }
}

}  // namespace
}  // namespace rwg::provisioning
