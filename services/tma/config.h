// The options of `tma` beyond those every service shares (core/service_main.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "services/core/options.h"

namespace rwg::tma {

struct Config {
  // rwg's provisioning store (download servers of kind local).
  std::string store_address;
  std::string store_token_file;
  std::string store_ca_file;
  int parallel_transfers = 4;
  int lease_seconds = 30;
  int ftp_connect_timeout_seconds = 10;
  int ftp_transfer_timeout_seconds = 120;
  int max_file_mib = 128;

  void Register(core::Options& options);
  // Errors name the option.
  absl::Status Validate() const;
};

}  // namespace rwg::tma
