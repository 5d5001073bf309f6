// registration list|show: phones registered through the SIP edge.
#pragma once

#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterRegistration(CommandLine& cli);

// `registration list`: one row per registration.
Table RegistrationsTable(const admin::v1::ListRegistrationsResponse& resp);

// `registration show`: one registration in full.
FieldRows RegistrationFields(const admin::v1::Registration& r);

}  // namespace rwg::rwgctl
