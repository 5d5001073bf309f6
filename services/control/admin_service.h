// rwg.admin.v1.AdminService on the control store.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "rwg/admin/v1/admin.grpc.pb.h"
#include "services/control/auth.h"
#include "services/control/device_writes.h"
#include "services/control/store.h"
#include "services/core/bans.h"
#include "services/core/crypto.h"
#include "services/core/emergency.h"
#include "services/core/registrations.h"
#include "services/core/sync_store.h"

namespace rwg::control {

// Counters of the login guard's events: rwg_control_login_refusals_total{reason="busy"|
// "source_locked"|"user_locked"} and rwg_control_login_lockouts_total{scope="source"|"user"}.
class LoginMetrics {
 public:
  explicit LoginMetrics(prometheus::Registry& registry);
  void Count(LoginEvent e);

 private:
  prometheus::Family<prometheus::Counter>& refusals_;
  prometheus::Family<prometheus::Counter>& lockouts_;
  prometheus::Counter& busy_;
  prometheus::Counter& source_locked_;
  prometheus::Counter& user_locked_;
  prometheus::Counter& source_lockouts_;
  prometheus::Counter& user_lockouts_;
};

// A call from the record a sip-edge instance keeps in Redis (core::DecodeCallRecord), as
// ListCalls/GetCall show it: its id the record's "id", else (none or empty) `id`, the key's.
// DataLoss for a damaged record (not a JSON object, a field of the wrong type, naming it).
absl::StatusOr<admin::v1::Call> CallFromJson(std::string_view json, const std::string& id);

class AdminServiceImpl final : public admin::v1::AdminService::Service {
 public:
  AdminServiceImpl(RedisControlStore& store, core::RedisClient& redis, Authenticator& auth,
                   core::SecretBox& box, core::Clock& clock, core::Random& rng,
                   prometheus::Registry& registry);

  // Writes the default configuration unless one exists (first start).
  absl::Status EnsureConfig(const std::string& public_name);

  grpc::Status Login(grpc::ServerContext*, const admin::v1::LoginRequest*,
                     admin::v1::LoginResponse*) override;
  grpc::Status Logout(grpc::ServerContext*, const admin::v1::LogoutRequest*,
                      admin::v1::LogoutResponse*) override;
  grpc::Status ChangePassword(grpc::ServerContext*, const admin::v1::ChangePasswordRequest*,
                              admin::v1::ChangePasswordResponse*) override;
  grpc::Status GetConfig(grpc::ServerContext*, const admin::v1::GetConfigRequest*,
                         admin::v1::GatewayConfig*) override;
  grpc::Status UpdateConfig(grpc::ServerContext*, const admin::v1::UpdateConfigRequest*,
                            admin::v1::UpdateConfigResponse*) override;
  grpc::Status CreateDevice(grpc::ServerContext*, const admin::v1::CreateDeviceRequest*,
                            admin::v1::Device*) override;
  grpc::Status GetDevice(grpc::ServerContext*, const admin::v1::GetDeviceRequest*,
                         admin::v1::Device*) override;
  grpc::Status UpdateDevice(grpc::ServerContext*, const admin::v1::UpdateDeviceRequest*,
                            admin::v1::Device*) override;
  grpc::Status DeleteDevice(grpc::ServerContext*, const admin::v1::DeleteDeviceRequest*,
                            admin::v1::DeleteDeviceResponse*) override;
  grpc::Status ListDevices(grpc::ServerContext*, const admin::v1::ListDevicesRequest*,
                           admin::v1::ListDevicesResponse*) override;
  grpc::Status ImportDevices(grpc::ServerContext*, const admin::v1::ImportDevicesRequest*,
                             admin::v1::ImportDevicesResponse*) override;
  grpc::Status ExportDevices(grpc::ServerContext*, const admin::v1::ExportDevicesRequest*,
                             admin::v1::ExportDevicesResponse*) override;
  grpc::Status ListRegistrations(grpc::ServerContext*, const admin::v1::ListRegistrationsRequest*,
                                 admin::v1::ListRegistrationsResponse*) override;
  grpc::Status GetRegistration(grpc::ServerContext*, const admin::v1::GetRegistrationRequest*,
                               admin::v1::Registration*) override;
  grpc::Status ListBans(grpc::ServerContext*, const admin::v1::ListBansRequest*,
                        admin::v1::ListBansResponse*) override;
  grpc::Status DeleteBan(grpc::ServerContext*, const admin::v1::DeleteBanRequest*,
                         admin::v1::DeleteBanResponse*) override;
  grpc::Status ListCalls(grpc::ServerContext*, const admin::v1::ListCallsRequest*,
                         admin::v1::ListCallsResponse*) override;
  grpc::Status GetCall(grpc::ServerContext*, const admin::v1::GetCallRequest*,
                       admin::v1::Call*) override;
  grpc::Status HangupCall(grpc::ServerContext*, const admin::v1::HangupCallRequest*,
                          admin::v1::HangupCallResponse*) override;
  grpc::Status SetEmergencyRoute(grpc::ServerContext*, const admin::v1::SetEmergencyRouteRequest*,
                                 admin::v1::EmergencyRoute*) override;
  grpc::Status ListEmergencyRoutes(grpc::ServerContext*,
                                   const admin::v1::ListEmergencyRoutesRequest*,
                                   admin::v1::ListEmergencyRoutesResponse*) override;
  grpc::Status DeleteEmergencyRoute(grpc::ServerContext*,
                                    const admin::v1::DeleteEmergencyRouteRequest*,
                                    admin::v1::DeleteEmergencyRouteResponse*) override;
  grpc::Status ResolveEmergency(grpc::ServerContext*, const admin::v1::ResolveEmergencyRequest*,
                                admin::v1::ResolveEmergencyResponse*) override;
  grpc::Status GetHashKey(grpc::ServerContext*, const admin::v1::GetHashKeyRequest*,
                          admin::v1::HashKey*) override;
  grpc::Status GenerateHashKey(grpc::ServerContext*, const admin::v1::GenerateHashKeyRequest*,
                               admin::v1::HashKey*) override;
  grpc::Status RegenerateHashKey(grpc::ServerContext*, const admin::v1::RegenerateHashKeyRequest*,
                                 admin::v1::HashKey*) override;
  grpc::Status ImportHashKey(grpc::ServerContext*, const admin::v1::ImportHashKeyRequest*,
                             admin::v1::HashKey*) override;
  grpc::Status AddSyncConsumer(grpc::ServerContext*, const admin::v1::AddSyncConsumerRequest*,
                               admin::v1::AddSyncConsumerResponse*) override;
  grpc::Status ListSyncConsumers(grpc::ServerContext*, const admin::v1::ListSyncConsumersRequest*,
                                 admin::v1::ListSyncConsumersResponse*) override;
  grpc::Status SetSyncConsumerEnabled(grpc::ServerContext*,
                                      const admin::v1::SetSyncConsumerEnabledRequest*,
                                      admin::v1::SyncConsumer*) override;
  grpc::Status SetSyncConsumerCallback(grpc::ServerContext*,
                                       const admin::v1::SetSyncConsumerCallbackRequest*,
                                       admin::v1::SyncConsumer*) override;
  grpc::Status ResetSyncConsumer(grpc::ServerContext*, const admin::v1::ResetSyncConsumerRequest*,
                                 admin::v1::ResetSyncConsumerResponse*) override;
  grpc::Status DeleteSyncConsumer(grpc::ServerContext*, const admin::v1::DeleteSyncConsumerRequest*,
                                  admin::v1::DeleteSyncConsumerResponse*) override;
  grpc::Status ListSyncTokens(grpc::ServerContext*, const admin::v1::ListSyncTokensRequest*,
                              admin::v1::ListSyncTokensResponse*) override;
  grpc::Status ApproveSyncToken(grpc::ServerContext*, const admin::v1::ApproveSyncTokenRequest*,
                                admin::v1::ApproveSyncTokenResponse*) override;
  grpc::Status RejectSyncToken(grpc::ServerContext*, const admin::v1::RejectSyncTokenRequest*,
                               admin::v1::SyncToken*) override;
  grpc::Status RenewSyncToken(grpc::ServerContext*, const admin::v1::RenewSyncTokenRequest*,
                              admin::v1::SyncToken*) override;
  grpc::Status RevokeSyncToken(grpc::ServerContext*, const admin::v1::RevokeSyncTokenRequest*,
                               admin::v1::SyncToken*) override;

 private:
  // Authenticates (unless `public_rpc`), runs `fn`, counts and logs the outcome. Whatever
  // throws is answered INTERNAL, logged and counted (rpc_guard.h).
  grpc::Status Run(const char* method, grpc::ServerContext* ctx, bool public_rpc,
                   const std::function<absl::Status(std::string& user)>& fn);

  absl::StatusOr<admin::v1::GatewayConfig> LoadConfig(std::string* raw);
  absl::Status SealDevice(admin::v1::Device& d) const;
  absl::Status OpenDevice(admin::v1::Device& d, bool show_secrets) const;
  absl::StatusOr<admin::v1::HashKey> LoadHash();
  absl::StatusOr<std::optional<admin::v1::Call>> LoadCall(const std::string& id);
  // A call from its record (nil: ended since); DataLoss for a damaged record.
  static absl::StatusOr<std::optional<admin::v1::Call>> CallFromRecord(const core::RedisReply& r,
                                                                       const std::string& id);
  absl::StatusOr<admin::v1::HashKey> StoreHash(const std::string& key, bool must_be_new,
                                               const char* action, const std::string& user);

  RedisControlStore& store_;
  core::BindingStore registrations_;
  core::BanStore bans_;
  core::EmergencyStore emergency_;
  core::SyncStore sync_;
  core::RedisClient& redis_;
  Authenticator& auth_;
  core::SecretBox& box_;
  core::Clock& clock_;
  core::Random& rng_;
  DeviceWrites writes_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Counter& login_failures_;
  prometheus::Family<prometheus::Counter>& exceptions_;
};

}  // namespace rwg::control
