// hash show|generate|regenerate|import: the provisioning hash key in phones' download paths.
#pragma once

#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterHash(CommandLine& cli);

// The key, its download path and when it was made; the server's warning, if any, on stderr.
void PrintHash(Printer& printer, const admin::v1::HashKey& h);

}  // namespace rwg::rwgctl
