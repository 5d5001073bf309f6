#include "services/sip_edge/in_flight.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace rwg::sip_edge {
namespace {

struct Context {
  int id;
  std::string method;
  std::shared_ptr<int> held;  // shows when a context is freed
};

TEST(InFlightTest, ContextsLiveUntilRemoved) {
  InFlight<Context> table;
  auto held = std::make_shared<int>(0);
  Context* a = table.Add(1, "MESSAGE", held);
  Context* b = table.Add(2, "NOTIFY", held);
  ASSERT_NE(a, b);
  EXPECT_EQ(a->method, "MESSAGE");
  EXPECT_EQ(b->id, 2);
  EXPECT_EQ(held.use_count(), 3);
  table.Remove(a);
  EXPECT_EQ(held.use_count(), 2);
  EXPECT_EQ(table.size(), 1u);
  table.Remove(a);  // already gone: nothing happens
  EXPECT_EQ(b->method, "NOTIFY");
}

TEST(InFlightTest, ClearFreesWhatNoCallbackEnded) {
  auto held = std::make_shared<int>(0);
  {
    InFlight<Context> table;
    table.Add(1, "INVITE", held);
    table.Add(2, "INVITE", held);
    table.Clear();
    EXPECT_EQ(held.use_count(), 1);
    table.Add(3, "INVITE", held);
  }
  EXPECT_EQ(held.use_count(), 1);  // the table's end frees the rest
}

}  // namespace
}  // namespace rwg::sip_edge
