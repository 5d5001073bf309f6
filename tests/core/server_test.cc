// The gRPC server every service runs (core::ServiceHost): its request threads are bounded.
#include "services/core/server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "rwg/relay/v1/relay.grpc.pb.h"
#include "services/core/options.h"
#include "tests/testing/wait.h"

namespace rwg::core {
namespace {

namespace pb = ::rwg::relay::v1;

int Threads() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// --grpc-max-threads (and RWG_GRPC_MAX_THREADS) within 8..4096; outside, a refusal naming it.
absl::Status ParseFlags(ServerFlags& flags, std::vector<std::string> args) {
  Options o("svc", "test");
  flags.Register(o);
  args.insert(args.begin(), "svc");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  int code = 0;
  return o.Parse(static_cast<int>(argv.size()), argv.data(), &code);
}

TEST(ServerFlagsTest, RequestThreadsAreBoundedToASaneRange) {
  unsetenv("RWG_GRPC_MAX_THREADS");
  ServerFlags flags;
  ASSERT_TRUE(ParseFlags(flags, {}).ok());
  EXPECT_EQ(flags.grpc_max_threads, 256);
  ASSERT_TRUE(ParseFlags(flags, {"--grpc-max-threads", "8"}).ok());
  EXPECT_EQ(flags.grpc_max_threads, 8);
  ASSERT_TRUE(ParseFlags(flags, {"--grpc-max-threads", "4096"}).ok());
  EXPECT_EQ(flags.grpc_max_threads, 4096);
  for (const char* bad : {"7", "4097", "0", "-1", "many", "99999999999"}) {
    ServerFlags f;
    const absl::Status s = ParseFlags(f, {"--grpc-max-threads", bad});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("grpc-max-threads"), absl::string_view::npos) << s;
  }
  setenv("RWG_GRPC_MAX_THREADS", "64", 1);
  ServerFlags from_env;
  EXPECT_TRUE(ParseFlags(from_env, {}).ok());
  EXPECT_EQ(from_env.grpc_max_threads, 64);
  setenv("RWG_GRPC_MAX_THREADS", "5", 1);
  EXPECT_FALSE(ParseFlags(from_env, {}).ok());
  unsetenv("RWG_GRPC_MAX_THREADS");
}

// A gauge's value in the host's registry (-1 when absent).
double Gauge(ServiceHost& host, const std::string& name) {
  for (const prometheus::MetricFamily& f : host.registry().Collect()) {
    if (f.name == name && !f.metric.empty()) return f.metric[0].gauge.value;
  }
  return -1;
}

// A service whose Allocate waits until released: a relay slower than its callers.
class SlowRelay final : public pb::RelayService::Service {
 public:
  grpc::Status Allocate(grpc::ServerContext*, const pb::AllocateRequest*, pb::Session*) override {
    ++waiting_;
    release_.WaitForNotificationWithTimeout(absl::Seconds(30));
    --waiting_;
    return grpc::Status::OK;
  }
  void Release() { release_.Notify(); }
  int waiting() const { return waiting_.load(); }

 private:
  absl::Notification release_;
  std::atomic<int> waiting_{0};
};

TEST(ServiceHostTest, RequestThreadsAreBoundedWhenRequestsPileUp) {
  ServerFlags flags;
  flags.grpc_listen = "127.0.0.1:0";
  flags.metrics_listen = "127.0.0.1:0";
  flags.grpc_max_threads = 64;
  ServiceHost host("server-test", flags);
  SlowRelay relay;
  ASSERT_TRUE(host.Start({&relay}).ok());
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", host.grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = pb::RelayService::NewStub(channel);
  const int before = Threads();

  // 2,000 requests at once, far more than the bound.
  constexpr int kRequests = 2000;
  struct Call {
    grpc::ClientContext ctx;
    pb::AllocateRequest request;
    pb::Session session;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::atomic<int> done{0};
  for (int i = 0; i < kRequests; ++i) {
    auto c = std::make_unique<Call>();
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    Call* raw = c.get();
    stub->async()->Allocate(&raw->ctx, &raw->request, &raw->session, [raw, &done](grpc::Status s) {
      raw->status = std::move(s);
      ++done;
    });
    calls.push_back(std::move(c));
  }
  // The server takes what it can; the rest are refused at once.
  ASSERT_TRUE(testing::Eventually([&] { return relay.waiting() + done.load() >= kRequests; },
                                  absl::Seconds(30)))
      << relay.waiting() << " waiting, " << done.load() << " answered";
  const int during = Threads();
  // The gauge of requests being handled says so, against its bound.
  EXPECT_EQ(Gauge(host, "rwg_grpc_requests_in_flight"), relay.waiting());
  EXPECT_EQ(Gauge(host, "rwg_grpc_max_threads"), 64);
  EXPECT_LE(relay.waiting(), 64);
  EXPECT_GT(relay.waiting(), 8) << "requests are still handled side by side";
  EXPECT_LT(during - before, 64 + 64) << before << " threads before, " << during << " during";
  relay.Release();
  ASSERT_TRUE(testing::Eventually([&] { return done.load() == kRequests; }, absl::Seconds(30)));
  int ok = 0;
  int refused = 0;
  for (const auto& c : calls) {
    if (c->status.ok()) ++ok;
    if (c->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
  }
  EXPECT_GT(ok, 8);
  EXPECT_EQ(ok + refused, kRequests) << "every request answered or refused, none lost";
  // The server still serves.
  grpc::ClientContext ctx;
  pb::Session session;
  EXPECT_TRUE(stub->Allocate(&ctx, pb::AllocateRequest(), &session).ok());
  EXPECT_TRUE(testing::Eventually([&] { return Gauge(host, "rwg_grpc_requests_in_flight") == 0; },
                                  absl::Seconds(10)))
      << Gauge(host, "rwg_grpc_requests_in_flight") << " still counted";
}

}  // namespace
}  // namespace rwg::core
