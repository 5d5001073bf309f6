// Inside the sync API (api.h), shared by its three files: api.cc (routing, the checks every
// request goes through, long polls), api_tokens.cc (the OAuth legs and the token expiry
// gauge) and api_devices.cc (device reads and writes, the change feed).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/control/device_writes.h"
#include "services/control/store.h"
#include "services/core/sync_store.h"
#include "services/sync/api.h"
#include "services/sync/devices.h"
#include "services/sync/oauth1.h"
#include "services/sync/replay_guard.h"

namespace rwg::sync {
namespace api_internal {

using core::SyncConsumer;
using core::SyncToken;
using core::SyncTokenKind;
using core::SyncTokenState;

// The endpoints, also the values of the metrics' endpoint label.
enum class Endpoint {
  kRequestToken,
  kAccessToken,
  kRenew,
  kDevices,
  kDevicesCsv,
  kChanges,
  kDeviceCreate,
  kDeviceUpdate,
  kDeviceDelete
};

inline constexpr const char* kEndpointNames[] = {
    "request_token", "access_token",  "renew",         "devices",      "devices_mbg_csv",
    "changes",       "device_create", "device_update", "device_delete"};

// What checking a request found: the consumer, and the token it was signed with.
struct Caller {
  SyncConsumer consumer;
  std::optional<SyncToken> token;
  Parameters params;
};

// Answers of every endpoint.
HttpResponse Json(int status, const nlohmann::json& body);
HttpResponse JsonError(int status, const std::string& message);
HttpResponse Form(const std::vector<std::pair<std::string, std::string>>& fields);
// The OAuth problem `status` carries, as an answer: 401 (403 for an address the consumer may
// not call from) with WWW-Authenticate and the problem form-encoded in the body.
HttpResponse Refusal(const std::string& realm, const absl::Status& status, int http_status);
// `length` letters and digits from `rng`.
std::string RandomToken(core::Random& rng, size_t length);
std::string Rfc3339(absl::Time t);
// The value of `name` in a query string (decoded), if present.
std::optional<std::string> QueryValue(absl::string_view query, absl::string_view name);

}  // namespace api_internal

using namespace api_internal;  // NOLINT(google-build-using-namespace): the files of one class

class SyncApi::Impl {
 public:
  Impl(SyncApiOptions options, core::RedisClient& redis, const core::SecretBox& box,
       core::Clock& clock, core::Random& rng, prometheus::Registry& registry);

  void Start() {
    absl::MutexLock lock(&mu_);
    stop_ = false;
    poller_ = std::thread([this] { PollLoop(); });
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      stop_ = true;
    }
    if (poller_.joinable()) poller_.join();
  }

  void Handle(HttpRequest request, const Respond& respond);
  void RefreshTokenExpiry();

 private:
  struct Waiter {
    std::string consumer;
    int64_t since = 0;
    size_t limit = 0;
    absl::Time deadline;
    Respond respond;
  };

  // Answers and counts.
  void Answer(Endpoint e, const Respond& respond, HttpResponse r);
  HttpResponse Fail(const absl::Status& s);

  absl::StatusOr<Caller> Authenticate(Endpoint e, const HttpRequest& request,
                                      absl::string_view path, absl::string_view query);
  absl::Status CheckSource(const SyncConsumer& c, const std::string& source);

  HttpResponse RequestToken(const Caller& caller, const HttpRequest& request);
  HttpResponse AccessToken(const Caller& caller);
  HttpResponse Renew(const Caller& caller);
  HttpResponse Devices(absl::string_view query);
  HttpResponse DevicesCsv();
  // The iPBX declaring a device: created from the form's fields, changed (the fields given),
  // deleted; the admin API's rules (control::DeviceWrites).
  HttpResponse WriteDevice(Endpoint e, const Caller& caller, const std::string& set_username);
  // The answer to a changes request now; nullopt when there is nothing yet and it may wait.
  std::optional<HttpResponse> Changes(int64_t since, size_t limit, bool final_answer);
  void PollLoop();

  SyncApiOptions options_;
  core::RedisClient& redis_;
  core::Clock& clock_;
  core::Random& rng_;
  core::SyncStore store_;
  ReplayGuard replay_;
  DeviceReader devices_;
  control::RedisControlStore control_store_;
  control::DeviceWrites writes_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& refusals_;
  prometheus::Family<prometheus::Gauge>& expiry_;
  prometheus::Gauge& waiting_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::thread poller_;

  // The iPBX's host resolved (the default source of a consumer), kept a minute.
  absl::Mutex icp_mu_;
  std::string icp_host_ ABSL_GUARDED_BY(icp_mu_);
  std::vector<std::string> icp_addresses_ ABSL_GUARDED_BY(icp_mu_);
  absl::Time icp_resolved_ ABSL_GUARDED_BY(icp_mu_) = absl::InfinitePast();

  absl::Mutex expiry_mu_;
  std::map<std::string, prometheus::Gauge*> expiry_gauges_ ABSL_GUARDED_BY(expiry_mu_);
};

}  // namespace rwg::sync
