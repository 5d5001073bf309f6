// The connection to an rwg gRPC API (control's admin API, a media relay's, the tma or the ott
// service's)
// and the one way rwgctl calls it: a context with the --timeout deadline and the session token, the
// call, and its status as an absl::Status (errors.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <typeindex>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/rwgctl/errors.h"

namespace rwg::rwgctl {

// The global options (command_line.cc registers them).
struct Options {
  std::string server = "127.0.0.1:50051";
  std::string tma_server = "127.0.0.1:50056";  // the tma service (`rwgctl tma ...`)
  std::string ott_server = "127.0.0.1:50057";  // the ott service (`rwgctl ott ...`)
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
  // A client of --server; with `address`, of that address (same TLS options and token).
  explicit Client(const Options& options) : Client(options, options.server) {}
  Client(const Options& options, std::string address)
      : options_(options), address_(std::move(address)) {}

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
  // The same without a deadline: for streams that last as long as what they carry (an upload,
  // a deployment being watched).
  std::unique_ptr<grpc::ClientContext> NewStreamContext(Auth auth) const;

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
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::map<std::type_index, std::shared_ptr<void>> stubs_;
};

}  // namespace rwg::rwgctl
