#include "services/tma/config.h"

#include "services/core/service_main.h"

namespace rwg::tma {

using core::OptionError;

void Config::Register(core::Options& o) {
  o.Add("store-address", store_address,
        "host:port of provisioning's file store API (rwg.provisioning.v1), where servers of kind "
        "local are written");
  o.Add("store-token-file", store_token_file, "file holding the file store API's token");
  o.Add("store-ca-file", store_ca_file,
        "PEM CA the file store API's certificate must chain to (TLS); plaintext when empty");
  o.Add("parallel-transfers", parallel_transfers,
        "connections to a download server a deployment writes through at once");
  o.Add("lease-seconds", lease_seconds,
        "a deployment whose instance stopped renewing its lease this long is carried on by "
        "another");
  o.Add("ftp-connect-timeout-seconds", ftp_connect_timeout_seconds,
        "an FTP server must accept the connection and the login within this");
  o.Add("ftp-transfer-timeout-seconds", ftp_transfer_timeout_seconds,
        "one file must be written to an FTP server within this");
  o.Add("max-file-mib", max_file_mib, "largest file a deployment takes besides the CSV (MiB)");
}

absl::Status Config::Validate() const {
  if (!store_address.empty() && store_token_file.empty()) {
    return OptionError("store-token-file", "required with --store-address");
  }
  if (parallel_transfers < 1 || parallel_transfers > 32) {
    return OptionError("parallel-transfers", "between 1 and 32");
  }
  if (lease_seconds < 3 || lease_seconds > 3600) {
    return OptionError("lease-seconds", "between 3 and 3600");
  }
  if (ftp_connect_timeout_seconds < 1 || ftp_connect_timeout_seconds > 300) {
    return OptionError("ftp-connect-timeout-seconds", "between 1 and 300");
  }
  if (ftp_transfer_timeout_seconds < 1 || ftp_transfer_timeout_seconds > 3600) {
    return OptionError("ftp-transfer-timeout-seconds", "between 1 and 3600");
  }
  if (max_file_mib < 1 || max_file_mib > 400) {
    return OptionError("max-file-mib", "between 1 and 400");
  }
  return absl::OkStatus();
}

}  // namespace rwg::tma
