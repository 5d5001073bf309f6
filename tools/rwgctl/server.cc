#include "tools/rwgctl/server.h"

#include <algorithm>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace rwg::rwgctl {
namespace {

namespace healthpb = ::grpc::health::v1;
namespace reflpb = ::grpc::reflection::v1alpha;

// Prints the serving status; anything but SERVING is a failure (exit 1, no further line).
absl::Status Health(Context& c) {
  healthpb::HealthCheckResponse resp;
  absl::Status s = c.client.Call(&healthpb::Health::Stub::Check, healthpb::HealthCheckRequest(),
                                 &resp, Auth::kNone);
  if (!s.ok()) return s;
  c.printer.out() << healthpb::HealthCheckResponse::ServingStatus_Name(resp.status()) << "\n";
  if (resp.status() != healthpb::HealthCheckResponse::SERVING) return QuietFailure();
  return absl::OkStatus();
}

// The services the server lists through reflection, sorted, one a line.
absl::Status Services(Context& c) {
  std::unique_ptr<grpc::ClientContext> context = c.client.NewContext(Auth::kNone);
  absl::StatusOr<reflpb::ServerReflection::Stub*> stub =
      c.client.Get<reflpb::ServerReflection::Stub>();
  if (!stub.ok()) return stub.status();
  auto stream = (*stub)->ServerReflectionInfo(context.get());
  reflpb::ServerReflectionRequest req;
  req.set_list_services("");
  stream->Write(req);
  stream->WritesDone();
  reflpb::ServerReflectionResponse resp;
  std::vector<std::string> names;
  while (stream->Read(&resp)) {
    for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  }
  if (absl::Status s = RpcError(stream->Finish()); !s.ok()) return s;
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) c.printer.out() << n << "\n";
  return absl::OkStatus();
}

}  // namespace

void RegisterServer(CommandLine& cli) {
  cli.On(cli.app().add_subcommand("health", "ask the server's grpc.health.v1 service"), Health);
  cli.On(cli.app().add_subcommand("services",
                                  "list the gRPC services the server offers (server reflection)"),
         Services);
}

}  // namespace rwg::rwgctl
