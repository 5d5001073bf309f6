#include "services/sip_edge/sip_methods.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"

namespace rwg::sip_edge {
namespace {

TEST(MethodLabelTest, KnownMethodsKeepTheirName) {
  for (const char* m : {"ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS",
                        "PRACK", "PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE"}) {
    EXPECT_STREQ(MethodLabel(m), m);
  }
}

TEST(MethodLabelTest, AnythingElseIsOther) {
  for (const char* m : {"", "FOO", "invite", "INVITEX", "REGISTE", "\xff", "OPTIONS "}) {
    EXPECT_STREQ(MethodLabel(m), "other") << m;
  }
  std::set<std::string> labels;
  for (int i = 0; i < 3000; ++i) labels.insert(MethodLabel(absl::StrCat("M", i)));
  EXPECT_EQ(labels, std::set<std::string>{"other"});
}

}  // namespace
}  // namespace rwg::sip_edge
