// device add|get|list|update|delete|import|export: the SIP devices (phones) control knows.
#pragma once

#include <vector>

#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterDevice(CommandLine& cli);

// `device list`: one row per device; the passwords only with `secrets`.
Table DevicesTable(const std::vector<admin::v1::Device>& devices, bool secrets);

// `device get`: every field; passwords only with `secrets`, "_time_unix" fields as times.
FieldRows DeviceFields(const admin::v1::Device& device, bool secrets);

}  // namespace rwg::rwgctl
