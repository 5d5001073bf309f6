#include "services/sip_edge/media_relays.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace rwg::sip_edge {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

std::string Beat(const std::string& grpc, int sessions, int free, int64_t seen,
                 bool draining = false) {
  return "{\"grpc\":\"" + grpc +
         "\",\"media\":\"10.0.0.1\",\"sessions\":" + std::to_string(sessions) +
         ",\"ports_free\":" + std::to_string(free) +
         ",\"ports_used\":0,\"draining\":" + (draining ? "true" : "false") +
         ",\"seen\":" + std::to_string(seen) + "}";
}

TEST(PickRelayTest, TheInstanceWithFewestSessions) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<std::pair<std::string, std::string>> rows = {
      {"relay-a", Beat("10.0.0.1:7000", 40, 900, now)},
      {"relay-b", Beat("10.0.0.2:7000", 12, 900, now)},
      {"relay-c", Beat("10.0.0.3:7000", 30, 900, now)}};
  auto pick = PickRelay(rows, kNow, absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "relay-b");
  EXPECT_EQ(pick->grpc, "10.0.0.2:7000");
}

TEST(PickRelayTest, EqualLoadGoesToMorePortsFree) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  auto pick = PickRelay({{"a", Beat("h:1", 5, 100, now)}, {"b", Beat("h:2", 5, 800, now)}}, kNow,
                        absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "b");
}

TEST(PickRelayTest, StaleDrainingFullAndStartingInstancesAreSkipped) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<std::pair<std::string, std::string>> rows = {
      {"stale", Beat("h:1", 0, 900, now - 60)},
      {"draining", Beat("h:2", 0, 900, now, true)},
      {"full", Beat("h:3", 0, 2, now)},
      {"starting", Beat("h:0", 0, 900, now)},
      {"broken", "{not json"},
      {"ok", Beat("h:5", 99, 10, now)}};
  auto pick = PickRelay(rows, kNow, absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "ok");
  rows.pop_back();
  EXPECT_FALSE(PickRelay(rows, kNow, absl::Seconds(15)).has_value());
}

TEST(PickRelayTest, FieldsOfTheWrongTypeAreSkippedNotFatal) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<std::pair<std::string, std::string>> rows = {
      {"odd", R"({"grpc":7,"sessions":"many","ports_free":[],"seen":"today"})"},
      {"ok", Beat("h:5", 1, 10, now)}};
  auto pick = PickRelay(rows, kNow, absl::Seconds(15));
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->name, "ok");
}

TEST(PickRelayTest, SessionsPlacedBetweenReadsSpreadAndFillInstancesUp) {
  // What the edge does between two reads of the heartbeats: each session placed counts on
  // the instance that took it.
  const int64_t now = absl::ToUnixSeconds(kNow);
  std::vector<RelayCandidate> c = UsableRelays(
      {{"a", Beat("h:1", 10, 8, now)}, {"b", Beat("h:2", 11, 100, now)}}, kNow, absl::Seconds(15));
  ASSERT_EQ(c.size(), 2u);
  std::vector<std::string> placed;
  for (int i = 0; i < 5; ++i) {
    RelayCandidate* pick = LeastLoaded(c);
    ASSERT_NE(pick, nullptr);
    placed.push_back(pick->instance.name);
    ++pick->sessions;
    pick->ports_free -= 4;
  }
  // a (10 sessions) first; then b and a alternate until a has no ports left (8 = two sessions).
  EXPECT_EQ(placed, (std::vector<std::string>{"a", "b", "a", "b", "b"}));
  c[1].ports_free = 3;
  EXPECT_EQ(LeastLoaded(c), nullptr);
}

}  // namespace
}  // namespace rwg::sip_edge
