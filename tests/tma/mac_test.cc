#include "services/tma/mac.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace rwg::tma {
namespace {

using ::testing::HasSubstr;

std::string Error(std::string_view text) {
  absl::StatusOr<std::string> mac = NormalizeMac(text);
  EXPECT_FALSE(mac.ok()) << text << " accepted as " << *mac;
  if (mac.ok()) return "";
  EXPECT_EQ(mac.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(mac.status().message());
}

TEST(NormalizeMacTest, AcceptsTheCommonSpellings) {
  for (const char* text :
       {"08:00:a1:b2:c3:d4", "08-00-A1-B2-C3-D4", "0800.a1b2.c3d4", "0800A1B2C3D4", "0800a1b2c3d4",
        "08:00:A1:b2:C3:d4", "  08:00:a1:b2:c3:d4\t", "0800:a1b2:c3d4", "08.00.a1.b2.c3.d4"}) {
    absl::StatusOr<std::string> mac = NormalizeMac(text);
    ASSERT_TRUE(mac.ok()) << text << ": " << mac.status();
    EXPECT_EQ(*mac, "0800A1B2C3D4") << text;
  }
}

TEST(NormalizeMacTest, RefusesEmpty) {
  EXPECT_THAT(Error(""), HasSubstr("empty"));
  EXPECT_THAT(Error("   "), HasSubstr("empty"));
}

TEST(NormalizeMacTest, RefusesTheWrongNumberOfDigits) {
  EXPECT_THAT(Error("0800A1B2C3D"), HasSubstr("has 11 hexadecimal digits, not 12"));
  EXPECT_THAT(Error("0800A1B2C3D4E"), HasSubstr("more than 12 hexadecimal digits"));
  EXPECT_THAT(Error("08:00:a1:b2:c3"), HasSubstr("has 10 hexadecimal digits"));
  EXPECT_THAT(Error(std::string(200, 'a')), HasSubstr("more than 12"));
}

TEST(NormalizeMacTest, RefusesCharactersThatAreNotHex) {
  EXPECT_THAT(Error("08:00:a1:b2:c3:g4"), HasSubstr("character 16 ('g') is not a hexadecimal"));
  EXPECT_THAT(Error("0800 A1B2C3D4"), HasSubstr("character 5 (' ')"));
  // Bytes that are not printable are shown escaped, never as they are.
  const std::string message = Error("0800A1B2C3\xC3\xA9");
  EXPECT_THAT(message, HasSubstr("\\xc3"));
  EXPECT_EQ(message.find('\xC3'), std::string::npos);
}

TEST(NormalizeMacTest, RefusesMixedSeparators) {
  EXPECT_THAT(Error("08:00-a1:b2:c3:d4"), HasSubstr("mixes the separators ':' and '-'"));
  EXPECT_THAT(Error("0800.a1b2:c3d4"), HasSubstr("mixes the separators '.' and ':'"));
}

TEST(NormalizeMacTest, RefusesMisplacedSeparators) {
  for (const char* text : {"080:0a1:b2c:3d4", "08:00a1:b2:c3:d4", ":0800a1b2c3d4",
                           "0800a1b2c3d4:", "08::00:a1:b2:c3d4", "0800a1.b2c3d4"}) {
    EXPECT_THAT(Error(text), HasSubstr("6 groups of 2 or 3 groups of 4")) << text;
  }
}

TEST(NormalizeMacTest, RefusesAddressesNoDeviceHas) {
  EXPECT_THAT(Error("00:00:00:00:00:00"), HasSubstr("000000000000 is not a device's"));
  EXPECT_THAT(Error("ff:ff:ff:ff:ff:ff"), HasSubstr("broadcast"));
  EXPECT_THAT(Error("01:00:5e:00:00:01"), HasSubstr("01005E000001 is a multicast"));
  EXPECT_THAT(Error("33:33:00:00:00:01"), HasSubstr("multicast"));
  EXPECT_THAT(Error("0F0000000001"), HasSubstr("multicast"));
  // Locally administered (second bit) is a device's address.
  EXPECT_TRUE(NormalizeMac("02:00:00:00:00:01").ok());
  EXPECT_TRUE(NormalizeMac("0E0000000001").ok());
}

}  // namespace
}  // namespace rwg::tma
