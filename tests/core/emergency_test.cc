#include "services/core/emergency.h"

#include <gtest/gtest.h>

namespace rwg::core {
namespace {

TEST(EmergencyTest, TheNearestLocationWinsThenTheFallback) {
  const std::vector<EmergencyRoute> routes = {{"FR/Paris", "112", "0145000112", ""},
                                              {"FR", "112", "0100000112", ""},
                                              {"FR", "18", "0100000018", ""},
                                              {"*", "112", "112", ""}};
  auto dial = [&](const char* location, const char* number) {
    std::optional<EmergencyRoute> r = ResolveEmergency(routes, location, number);
    return r ? r->dial : std::string("none");
  };
  EXPECT_EQ(dial("FR/Paris", "112"), "0145000112");
  EXPECT_EQ(dial("FR/Paris/15e/Floor 3", "112"), "0145000112");
  EXPECT_EQ(dial("FR/Lyon", "112"), "0100000112");
  EXPECT_EQ(dial("FR/Paris", "18"), "0100000018");
  EXPECT_EQ(dial("DE/Berlin", "112"), "112");
  EXPECT_EQ(dial("", "112"), "112") << "a device without a location takes the fallback";
  EXPECT_EQ(dial("DE/Berlin", "18"), "none");
  EXPECT_EQ(dial("FR/Paris", "1120"), "none") << "numbers match whole";
}

TEST(EmergencyTest, BadRoutesNameEveryField) {
  EmergencyRoute ok{" FR/Paris ", " 112 ", "+33145000112", "desk"};
  EXPECT_TRUE(NormalizeEmergencyRoute(ok).empty());
  EXPECT_EQ(ok.location, "FR/Paris");
  EXPECT_EQ(ok.number, "112");
  EmergencyRoute star{"*", "*112#", "0", ""};
  EXPECT_TRUE(NormalizeEmergencyRoute(star).empty());

  EmergencyRoute bad{"FR//Paris", "11a", "01+23", std::string(300, 'x')};
  auto errs = NormalizeEmergencyRoute(bad);
  std::vector<std::string> fields;
  for (const auto& e : errs) fields.push_back(e.first);
  EXPECT_EQ(fields, (std::vector<std::string>{"location", "number", "dial", "description"}));
  for (const char* loc : {"", "/FR", "FR/", "FR/Pa\\ris", "FR/Pa;ris"}) {
    EmergencyRoute r{loc, "112", "112", ""};
    auto e = NormalizeEmergencyRoute(r);
    ASSERT_EQ(e.size(), 1u) << loc;
    EXPECT_EQ(e[0].first, "location") << loc;
  }
  EmergencyRoute long_number{"FR", "1234567890123456", "112", ""};
  EXPECT_EQ(NormalizeEmergencyRoute(long_number).size(), 1u);
  EmergencyRoute ctl{"FR", "112", "112", "line\nbreak"};
  EXPECT_EQ(NormalizeEmergencyRoute(ctl).size(), 1u);
}

}  // namespace
}  // namespace rwg::core
