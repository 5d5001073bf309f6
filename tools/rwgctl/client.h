// The connection to an rwg gRPC API (control's admin API, or a media relay's) and the one way
// rwgctl calls it: a context with the --timeout deadline and the session token, the call, and
// its status as an absl::Status (errors.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <typeindex>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/rwgctl/errors.h"

namespace rwg::rwgctl {

// The global options (command_line.cc registers them).
struct Options {
  std::string server = "127.0.0.1:50051";
  std::string ca_cert;
  bool insecure = false;
  std::string token_file;
  std::string output = "table";
  double timeout = 30;
};

// Whether a call carries "authorization: Bearer <token>" (RWG_TOKEN, else the token file).
enum class Auth { kNone, kToken };

class Client {
 public:
  explicit Client(const Options& options) : options_(options) {}

  // The channel, made on first use (TLS unless --insecure; --ca-cert read then).
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel();

  // The stub of a generated service (e.g. rwg::admin::v1::AdminService::Stub) on the channel.
  template <typename Stub>
  absl::StatusOr<Stub*> Get() {
    std::shared_ptr<void>& slot = stubs_[std::type_index(typeid(Stub))];
    if (slot == nullptr) {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = Channel();
      if (!channel.ok()) return channel.status();
      slot = std::make_shared<Stub>(*channel);
    }
    return static_cast<Stub*>(slot.get());
  }

  // A context with the deadline (--timeout from now) and, with Auth::kToken, the token.
  std::unique_ptr<grpc::ClientContext> NewContext(Auth auth) const;

  // Calls a unary RPC, e.g. Call(&AdminService::Stub::GetConfig, request, &config).
  template <typename Stub, typename Request, typename Response>
  absl::Status Call(grpc::Status (Stub::*rpc)(grpc::ClientContext*, const Request&, Response*),
                    const std::type_identity_t<Request>& request, Response* response,
                    Auth auth = Auth::kToken) {
    std::unique_ptr<grpc::ClientContext> context = NewContext(auth);
    absl::StatusOr<Stub*> stub = Get<Stub>();
    if (!stub.ok()) return stub.status();
    return RpcError(((*stub)->*rpc)(context.get(), request, response));
  }

  // --token-file, else DefaultTokenFile().
  std::string TokenFile() const;

 private:
  const Options& options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::map<std::type_index, std::shared_ptr<void>> stubs_;
};

}  // namespace rwg::rwgctl
