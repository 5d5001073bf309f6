#include "services/core/crypto.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace rwg::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Key() { return std::string(32, '\x42'); }

TEST(SecretBoxTest, SealThenOpenRoundTrips) {
  auto box = SecretBox::Create(Key(), Random::System());
  ASSERT_TRUE(box.ok());
  std::string sealed = (*box)->Seal("p@ss w0rd", "device:1001:set_password");
  EXPECT_THAT(sealed, HasSubstr("v1:"));
  EXPECT_THAT(sealed, Not(HasSubstr("p@ss")));
  auto opened = (*box)->Open(sealed, "device:1001:set_password");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "p@ss w0rd");
}

TEST(SecretBoxTest, SameSecretSealsDifferentlyEachTime) {
  auto box = SecretBox::Create(Key(), Random::System());
  EXPECT_NE((*box)->Seal("x", "c"), (*box)->Seal("x", "c"));
}

TEST(SecretBoxTest, WrongContextFails) {
  auto box = SecretBox::Create(Key(), Random::System());
  std::string sealed = (*box)->Seal("secret", "device:1001:set_password");
  auto opened = (*box)->Open(sealed, "device:1002:set_password");
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
}

TEST(SecretBoxTest, WrongKeyFails) {
  auto a = SecretBox::Create(Key(), Random::System());
  auto b = SecretBox::Create(std::string(32, '\x43'), Random::System());
  auto opened = (*b)->Open((*a)->Seal("secret", "c"), "c");
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("wrong secret key"));
}

TEST(SecretBoxTest, TamperedCiphertextFails) {
  auto box = SecretBox::Create(Key(), Random::System());
  std::string sealed = (*box)->Seal("secret-value", "c");
  sealed[sealed.size() - 5] = sealed[sealed.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE((*box)->Open(sealed, "c").ok());
  EXPECT_FALSE((*box)->Open("v1:", "c").ok());
  EXPECT_FALSE((*box)->Open("plain", "c").ok());
}

TEST(SecretBoxTest, RejectsShortKey) {
  auto box = SecretBox::Create("short", Random::System());
  EXPECT_EQ(box.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SecretBoxTest, LoadsHexKeyFile) {
  std::string path = ::testing::TempDir() + "/key.hex";
  std::ofstream(path) << std::string(64, 'a') << "\n";
  auto key = SecretBox::LoadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, std::string(32, '\xaa'));
  std::ofstream(path, std::ios::trunc) << "not a key";
  EXPECT_EQ(SecretBox::LoadKeyFile(path).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SecretBox::LoadKeyFile(path + ".missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(PasswordHashTest, VerifiesRightPasswordOnly) {
  ScryptParams fast{10, 8, 1};
  auto hash = HashPassword("correct horse", Random::System(), fast);
  ASSERT_TRUE(hash.ok());
  EXPECT_THAT(*hash, HasSubstr("scrypt$10$8$1$"));
  EXPECT_THAT(*hash, Not(HasSubstr("correct")));
  EXPECT_TRUE(VerifyPassword("correct horse", *hash));
  EXPECT_FALSE(VerifyPassword("correct horsE", *hash));
  EXPECT_FALSE(VerifyPassword("", *hash));
}

TEST(PasswordHashTest, SaltsEachHash) {
  ScryptParams fast{10, 8, 1};
  EXPECT_NE(*HashPassword("pw", Random::System(), fast),
            *HashPassword("pw", Random::System(), fast));
}

TEST(PasswordHashTest, MalformedHashNeverVerifies) {
  EXPECT_FALSE(VerifyPassword("pw", ""));
  EXPECT_FALSE(VerifyPassword("pw", "scrypt$10$8$1$xx"));
  EXPECT_FALSE(VerifyPassword("pw", "scrypt$40$8$1$AAAA$AAAA"));  // absurd cost refused
  EXPECT_FALSE(VerifyPassword("pw", "md5$abc"));
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(RandomTest, HexAndPasswordShapes) {
  std::string h = RandomHex(Random::System(), 16);
  EXPECT_EQ(h.size(), 32u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(h, RandomHex(Random::System(), 16));
  std::string p = RandomPassword(Random::System(), 16);
  EXPECT_EQ(p.size(), 16u);
  EXPECT_EQ(p.find_first_of("01lIO "), std::string::npos);
}

}  // namespace
}  // namespace rwg::core
