// RequestHandler's notes of phones' fetches, with the hash key read from a private
// redis-server: a GET of a phone's <MAC>.cfg answered with the file (200, 206, 304; either
// case of the name) is noted with the requester's address, nothing else is (a HEAD, another
// file, a 404, a 416, a wrong hash); the state's thread writes the notes.
#include "services/provisioning/request_handler.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <boost/beast/http/verb.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "services/core/crypto.h"
#include "services/core/json.h"
#include "services/core/keys.h"
#include "services/core/random.h"
#include "services/provisioning/fetch_recorder.h"
#include "services/provisioning/state.h"
#include "tests/testing/scratch_redis.h"

namespace rwg::provisioning {
namespace {

namespace http = boost::beast::http;

constexpr char kHash[] = "3f7a0c1d9e2b4a6f8c0d1e2f3a4b5c6d";
constexpr char kMac[] = "0800A1B2C3D4";
constexpr char kPhone[] = "198.51.100.7";

class RequestHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ScratchRedis>> r = testing::ScratchRedis::Start();
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = *std::move(r);
    box_ = *core::SecretBox::Create(std::string(32, 'k'), core::Random::System());
    ASSERT_TRUE(
        redis_->client()
            .Command({"SET", core::kHashKey,
                      core::JsonDump({{"create_time", 1}, {"key", box_->Seal(kHash, "hash")}})})
            .ok());
    dir_ = std::filesystem::temp_directory_path() /
           ("rwg-prov-handler-" + core::RandomHex(core::Random::System(), 6));
    std::filesystem::create_directories(dir_);
    for (const char* name : {"0800A1B2C3D4.cfg", "0800A1B2C3D4.tuz", "aastra.cfg"}) {
      std::ofstream(dir_ / name) << "sip line1 user name: 1001\n";
    }
    options_.store_dir = dir_;
    options_.access_log = false;
    recorder_ = std::make_unique<FetchRecorder>(redis_->client(), clock_, registry_);
    state_ = std::make_unique<SharedState>(redis_->client(), *box_, clock_, "test",
                                           SharedState::kMaxBans, recorder_.get());
  }

  void TearDown() override {
    if (handler_ != nullptr) handler_->CloseStore();
    if (state_ != nullptr) state_->Stop();
    std::filesystem::remove_all(dir_);
  }

  // Starts the state (the hash key read; written again every `period`) and the handler.
  void Start(absl::Duration period) {
    ASSERT_TRUE(state_->Start(period).ok());
    handler_ = std::make_unique<RequestHandler>(options_, *state_, clock_, registry_);
    ASSERT_TRUE(handler_->OpenStore().ok());
  }

  Answer Handle(http::verb method, const std::string& file,
                const std::vector<std::pair<http::field, std::string>>& headers = {},
                const std::string& hash = kHash) {
    Request req{method, "/" + hash + "/ftp_67xxi/" + file, 11};
    req.set(http::field::host, "localhost");
    for (const auto& [f, v] : headers) req.set(f, v);
    return handler_->Handle(req, kPhone, kPhone);
  }

  std::string Raw(const std::string& mac) {
    absl::StatusOr<core::RedisReply> r =
        redis_->client().Command({"HGET", core::kPhoneFetchesKey, mac});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && !r->is_nil() ? r->str : "<nil>";
  }

  std::unique_ptr<testing::ScratchRedis> redis_;
  std::unique_ptr<core::SecretBox> box_;
  std::filesystem::path dir_;
  ServerOptions options_;
  core::ManualClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<FetchRecorder> recorder_;
  std::unique_ptr<SharedState> state_;
  std::unique_ptr<RequestHandler> handler_;
};

TEST_F(RequestHandlerTest, AGetOfAPhonesFileAnsweredWithItIsNoted) {
  Start(absl::Hours(1));  // no refresh during the test: the notes stay in memory
  const std::vector<core::PhoneFetch> noted = {{kMac, clock_.Now(), kPhone}};
  Answer a = Handle(http::verb::get, "0800A1B2C3D4.cfg");
  ASSERT_EQ(a.status, http::status::ok);
  EXPECT_EQ(recorder_->Pending(), noted);
  const std::string etag = a.entry->etag;
  ASSERT_TRUE(recorder_->Flush().ok());

  // The lower-case name is the same file.
  EXPECT_EQ(Handle(http::verb::get, "0800a1b2c3d4.cfg").status, http::status::ok);
  EXPECT_EQ(recorder_->Pending(), noted);
  ASSERT_TRUE(recorder_->Flush().ok());

  EXPECT_EQ(Handle(http::verb::get, kMac + std::string(".cfg"), {{http::field::range, "bytes=0-3"}})
                .status,
            http::status::partial_content);
  EXPECT_EQ(recorder_->Pending(), noted);
  ASSERT_TRUE(recorder_->Flush().ok());

  EXPECT_EQ(
      Handle(http::verb::get, "0800A1B2C3D4.cfg", {{http::field::if_none_match, etag}}).status,
      http::status::not_modified);
  EXPECT_EQ(recorder_->Pending(), noted);
  ASSERT_TRUE(recorder_->Flush().ok());
  EXPECT_EQ(Raw(kMac), "1800000000000,198.51.100.7");
}

TEST_F(RequestHandlerTest, NothingElseIsNoted) {
  Start(absl::Hours(1));
  struct Case {
    http::verb method;
    std::string file;
    std::vector<std::pair<http::field, std::string>> headers;
    std::string hash;
    http::status status;
  };
  const std::vector<Case> cases = {
      {http::verb::head, "0800A1B2C3D4.cfg", {}, kHash, http::status::ok},  // not a fetch
      {http::verb::get, "aastra.cfg", {}, kHash, http::status::ok},
      {http::verb::get, "0800A1B2C3D4.tuz", {}, kHash, http::status::ok},
      {http::verb::get, "0800FFFFFFFF.cfg", {}, kHash, http::status::not_found},
      {http::verb::get,
       "0800A1B2C3D4.cfg",
       {{http::field::range, "bytes=9999-"}},
       kHash,
       http::status::range_not_satisfiable},
      {http::verb::get, "0800A1B2C3D4.cfg", {}, "wrong", http::status::not_found},
      {http::verb::post, "0800A1B2C3D4.cfg", {}, kHash, http::status::method_not_allowed},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Handle(c.method, c.file, c.headers, c.hash).status, c.status) << c.file;
    EXPECT_TRUE(recorder_->Pending().empty()) << c.file;
  }
  ASSERT_TRUE(recorder_->Flush().ok());
  EXPECT_EQ(*redis_->Keys(), std::vector<std::string>{core::kHashKey});
}

TEST_F(RequestHandlerTest, TheStatesThreadWritesTheNotes) {
  Start(absl::Milliseconds(100));
  ASSERT_EQ(Handle(http::verb::get, "0800A1B2C3D4.cfg").status, http::status::ok);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Raw(kMac) == "<nil>" && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(Raw(kMac), "1800000000000,198.51.100.7");
  EXPECT_TRUE(recorder_->Pending().empty());
}

TEST_F(RequestHandlerTest, StoppingTheStateWritesTheLastNotes) {
  Start(absl::Hours(1));
  ASSERT_EQ(Handle(http::verb::get, "0800A1B2C3D4.cfg").status, http::status::ok);
  EXPECT_EQ(Raw(kMac), "<nil>");
  state_->Stop();
  EXPECT_EQ(Raw(kMac), "1800000000000,198.51.100.7");
}

}  // namespace
}  // namespace rwg::provisioning
