#include "services/sip_edge/guard.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <stdexcept>

namespace rwg::sip_edge {
namespace {

class GuardTest : public ::testing::Test {
 protected:
  void SetUp() override { SetGuardCounter(&counter_); }
  void TearDown() override { SetGuardCounter(nullptr); }
  prometheus::Registry registry_;
  prometheus::Counter& counter_ =
      prometheus::BuildCounter().Name("guarded_total").Register(registry_).Add({});
};

TEST_F(GuardTest, WhatTheBodyReturnsPassesThrough) {
  EXPECT_EQ(Guard("test", 500, [] { return 200; }), 200);
  EXPECT_EQ(counter_.Value(), 0);
}

TEST_F(GuardTest, AThrowingBodyGivesTheFallbackAndIsCounted) {
  EXPECT_EQ(Guard("test", 500, []() -> int { throw std::runtime_error("bad bytes"); }), 500);
  EXPECT_EQ(Guard("test", 0, []() -> int { throw 42; }), 0);
  bool after = false;
  Guard("test", [] { throw std::out_of_range("index"); });
  after = true;
  EXPECT_TRUE(after);
  EXPECT_EQ(counter_.Value(), 3);
}

}  // namespace
}  // namespace rwg::sip_edge
