// health, services: what any gRPC server of rwg answers without a session (grpc.health.v1 and
// server reflection).
#pragma once

#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterServer(CommandLine& cli);

}  // namespace rwg::rwgctl
