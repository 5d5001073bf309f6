// login, logout, passwd: the admin session whose token rwgctl keeps in the token file.
#pragma once

#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterSession(CommandLine& cli);

}  // namespace rwg::rwgctl
