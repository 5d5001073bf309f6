#include "services/core/calls.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace rwg::core {
namespace {

constexpr char kReplacement[] = "\xef\xbf\xbd";  // U+FFFD

// A record as sip-edge's Calls::Save wrote it before the codec was in core (an outbound call,
// answered, with its relay session): records of that format are in Redis, and other
// instances write them.
constexpr char kSavedRecord[] =
    R"({"answered_unix":1800000007,"device":"1001","direction":"outbound",)"
    R"("icp":{"call_id":"3848276298220188511@203.0.113.20","cseq":2,"local_tag":"a73kszlfl",)"
    R"("local_uri":"<sip:21001@ipbx.example.com>","remote_tag":"6d1b0c",)"
    R"("remote_target":"<sip:+33123456789@203.0.113.20:5060>",)"
    R"("remote_uri":"<sip:+33123456789@ipbx.example.com>","route":["<sip:203.0.113.20;lr>"]},)"
    R"("icp_username":"21001","id":"c-7f3a9b2e","instance":"edge-0","number":"+33123456789",)"
    R"("relay":{"grpc":"10.0.0.5:7001","id":"r-5c2d0e","instance":"relay-1"},)"
    R"("set":{"call_id":"a84b4c76e66710@198.51.100.7","cseq":2,"local_tag":"1928301774",)"
    R"("local_uri":"<sip:1001@gw.example.net>","remote_tag":"e5f1a2",)"
    R"("remote_target":"<sip:1001@198.51.100.7:40123;transport=tls>",)"
    R"("remote_uri":"<sip:+33123456789@gw.example.net>","route":[]},)"
    R"("started_unix":1800000000,"state":"confirmed"})";

CallRecord FullRecord() {
  CallRecord r;
  r.id = "c-1";
  r.instance = "edge-1";
  r.direction = "inbound";
  r.device = "1002";
  r.icp_username = "21002";
  r.number = "0612345678";
  r.state = "early";
  r.started_unix = 1'800'000'100;
  r.answered_unix = 0;
  r.set = {"set-1", "<sip:0612345678@gw.example.net>", "b1c2d3", "<sip:1002@gw.example.net>",
           "",      "<sip:1002@198.51.100.7:5060>",    {},       1};
  r.icp = {"icp-1",
           "<sip:21002@ipbx.example.com>",
           "x9y8",
           "<sip:0612345678@ipbx.example.com>",
           "z7w6",
           "<sip:0612345678@203.0.113.20:5060>",
           {"<sip:203.0.113.20;lr>", "<sip:203.0.113.21;lr>"},
           4'294'967'295u};
  r.relay = CallRelayRecord{"r-1", "relay-0", "10.0.0.5:7001"};
  return r;
}

TEST(CallRecordTest, RoundTrips) {
  const CallRecord r = FullRecord();
  absl::StatusOr<CallRecord> back = DecodeCallRecord(EncodeCallRecord(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);

  CallRecord no_relay = r;
  no_relay.relay.reset();
  EXPECT_EQ(EncodeCallRecord(no_relay).find("relay"), std::string::npos);
  back = DecodeCallRecord(EncodeCallRecord(no_relay));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, no_relay);
}

TEST(CallRecordTest, ReadsAndWritesTheRecordsSipEdgeSaved) {
  absl::StatusOr<CallRecord> r = DecodeCallRecord(kSavedRecord);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, "c-7f3a9b2e");
  EXPECT_EQ(r->instance, "edge-0");
  EXPECT_EQ(r->direction, "outbound");
  EXPECT_EQ(r->device, "1001");
  EXPECT_EQ(r->icp_username, "21001");
  EXPECT_EQ(r->number, "+33123456789");
  EXPECT_EQ(r->state, "confirmed");
  EXPECT_EQ(r->started_unix, 1'800'000'000);
  EXPECT_EQ(r->answered_unix, 1'800'000'007);
  EXPECT_EQ(r->icp.call_id, "3848276298220188511@203.0.113.20");
  EXPECT_EQ(r->icp.local_tag, "a73kszlfl");
  EXPECT_EQ(r->icp.remote_tag, "6d1b0c");
  EXPECT_EQ(r->icp.remote_target, "<sip:+33123456789@203.0.113.20:5060>");
  EXPECT_EQ(r->icp.route, std::vector<std::string>{"<sip:203.0.113.20;lr>"});
  EXPECT_EQ(r->icp.cseq, 2u);
  EXPECT_EQ(r->set.local_uri, "<sip:1001@gw.example.net>");
  EXPECT_EQ(r->set.remote_uri, "<sip:+33123456789@gw.example.net>");
  EXPECT_TRUE(r->set.route.empty());
  ASSERT_TRUE(r->relay.has_value());
  EXPECT_EQ(*r->relay, (CallRelayRecord{"r-5c2d0e", "relay-1", "10.0.0.5:7001"}));
  // Written again, byte for byte the same: instances of either version read each other's.
  EXPECT_EQ(EncodeCallRecord(*r), kSavedRecord);
}

TEST(CallRecordTest, MissingFieldsAreTheirDefaultsUnknownOnesIgnored) {
  absl::StatusOr<CallRecord> r =
      DecodeCallRecord(R"({"state":"setup","set":{"cseq":7},"future":{"x":[1]}})");
  ASSERT_TRUE(r.ok()) << r.status();
  CallRecord want;
  want.state = "setup";
  want.set.cseq = 7;
  EXPECT_EQ(*r, want);
  r = DecodeCallRecord("{}");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, CallRecord{});
  // A fraction is cut off.
  r = DecodeCallRecord(R"({"started_unix":1800000000.75})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->started_unix, 1'800'000'000);
}

TEST(CallRecordTest, DamagedRecordsAreDataLossNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not a JSON object"},
      {"[]", "not a JSON object"},
      {"null", "not a JSON object"},
      {"{\"id\":", "not a JSON object"},
      {R"({"id":7})", "id: not a string"},
      {R"({"id":null})", "id: not a string"},
      {R"({"instance":["edge-0"]})", "instance: not a string"},
      {R"({"started_unix":"1"})", "started_unix: not a number"},
      {R"({"answered_unix":1e99})", "answered_unix: out of range"},
      {R"({"relay":{"id":[]}})", "relay.id: not a string"},
      {R"({"relay":5})", "relay: not an object"},
      {R"({"set":{"call_id":false}})", "set.call_id: not a string"},
      {R"({"set":"x"})", "set: not an object"},
      {R"({"icp":{"cseq":-1}})", "icp.cseq: out of range"},
      {R"({"icp":{"cseq":4294967296}})", "icp.cseq: out of range"},
      {R"({"icp":{"route":"<sip:a>"}})", "icp.route: not an array"},
      {R"({"set":{"route":["<sip:a>",1]}})", "set.route[1]: not a string"},
  };
  for (const auto& [json, field] : cases) {
    absl::StatusOr<CallRecord> r = DecodeCallRecord(json);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << json;
    EXPECT_EQ(r.status().message(), "call record: " + field) << json;
  }
}

TEST(CallRecordTest, BytesThatAreNotUtf8AndHugeValuesDoNotBreakIt) {
  // The phone's Call-ID and display name as they came: Latin-1, stray bytes.
  CallRecord r = FullRecord();
  r.set.call_id = "\xff\xfe@192.0.2.7";
  r.set.remote_uri = "\"M\xfcller\" <sip:1001@rwg.test>";
  r.icp.route = {"<sip:\xff>"};
  absl::StatusOr<CallRecord> back = DecodeCallRecord(EncodeCallRecord(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->set.call_id, std::string(kReplacement) + kReplacement + "@192.0.2.7");
  EXPECT_EQ(back->set.remote_uri, std::string("\"M") + kReplacement + "ller\" <sip:1001@rwg.test>");
  EXPECT_EQ(back->icp.route[0], std::string("<sip:") + kReplacement + ">");
  // Raw bytes that are not UTF-8 in the text itself: not JSON.
  EXPECT_EQ(DecodeCallRecord("{\"id\":\"\xff\"}").status().code(), absl::StatusCode::kDataLoss);

  r = FullRecord();
  r.number = std::string(4 << 20, '9');
  r.icp.route = std::vector<std::string>(10'000, "<sip:203.0.113.20;lr>");
  back = DecodeCallRecord(EncodeCallRecord(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);

  const std::string deep = "{\"x\":" + std::string(100'000, '[') + std::string(100'000, ']') + "}";
  EXPECT_TRUE(DecodeCallRecord(deep).ok());
  EXPECT_FALSE(DecodeCallRecord(R"({"started_unix":1e400})").ok());
  EXPECT_FALSE(DecodeCallRecord(R"({"started_unix":-1e19})").ok());
}

TEST(CallRecordOwnerTest, TheInstanceEvenOfADamagedRecord) {
  EXPECT_EQ(CallRecordOwner(kSavedRecord), "edge-0");
  EXPECT_EQ(CallRecordOwner(R"({"instance":"edge-2","set":{"cseq":"x"}})"), "edge-2");
  EXPECT_EQ(CallRecordOwner(R"({"instance":7})"), "");
  EXPECT_EQ(CallRecordOwner("not json"), "");
  EXPECT_EQ(CallRecordOwner("[]"), "");
}

}  // namespace
}  // namespace rwg::core
