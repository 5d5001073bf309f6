#include "services/sip_edge/sofia_log.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rwg::sip_edge {
namespace {

using Lines = std::vector<std::string>;

TEST(SofiaLogLinesTest, LinesWrittenInPiecesComeOutWhole) {
  std::string pending;
  EXPECT_EQ(SofiaLogLines(pending, "tport_wakeup(0x1): "), Lines{});
  EXPECT_EQ(SofiaLogLines(pending, "error\r\nnta: x\nnta: "),
            (Lines{"tport_wakeup(0x1): error", "nta: x"}));
  EXPECT_EQ(pending, "nta: ");
  EXPECT_EQ(SofiaLogLines(pending, "y\n"), Lines{"nta: y"});
  EXPECT_EQ(pending, "");
}

TEST(SofiaLogLinesTest, LongLinesAreCut) {
  std::string pending;
  const Lines lines = SofiaLogLines(pending, std::string(100000, 'a') + "\nb\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].size(), 4096u);
  EXPECT_EQ(lines[1], "b");
}

}  // namespace
}  // namespace rwg::sip_edge
