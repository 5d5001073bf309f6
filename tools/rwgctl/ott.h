// ott domain|service|account: the OTT access API of the ott service (rwg.ott.v1, --ott-server):
// the FQDNs remote workers reach the iPBX's web applications by, the paths each service lets
// through, and the accounts that open the admin paths (seed §9.2; docs/ott.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rwg/ott/v1/ott.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterOtt(CommandLine& cli);

// The flags of `ott domain add` and `ott domain update`. `given` names the flags given on the
// command line: "service", "backend", "backend_tls", "backend_ca", "backend_server_name",
// "disabled", "enable", "disable", "user_paths", "admin_paths", "common_paths".
struct OttDomainFlags {
  std::string fqdn, service, backend, backend_ca, backend_server_name;
  bool backend_tls = false, disabled = false, enable = false, disable = false;
  std::vector<std::string> user_paths, admin_paths, common_paths;
  std::vector<std::string> given;

  bool Given(absl::string_view flag) const;
};

// "user-portal" -> SERVICE_USER_PORTAL, ...; an unknown name is an error naming --service.
absl::StatusOr<ott::v1::Service> ServiceOf(absl::string_view name);
// SERVICE_USER_PORTAL -> "user-portal", ...; the unspecified value "-".
std::string ServiceName(ott::v1::Service service);

// "HOST:PORT", "HOST" (the port the scheme implies), "[IPv6]:PORT" or "[IPv6]": the backend's
// host and port; anything else is an error naming --backend.
absl::Status ParseBackendAddress(absl::string_view address, ott::v1::Backend* backend);

// `ott domain add`'s request, checked before any call (ArgumentError naming the flag):
// --service and --backend are required, --backend-ca and --backend-server-name need
// --backend-tls, --enable/--disable are update's (add has --disabled), every path starts with
// '/' ('' stands for no path).
absl::StatusOr<ott::v1::AddDomainRequest> AddDomainRequestOf(const OttDomainFlags& flags);

// Whether `ott domain update` needs the domain as it is to build its request: a backend flag
// without --backend (the other backend fields are kept), or some of the path lists (the lists
// not given are kept).
bool UpdateNeedsCurrent(const OttDomainFlags& flags);

// `ott domain update`'s request: the update mask names what the flags change ("service",
// "backend", "enabled", "paths"); `current` is the domain as listed (required when
// UpdateNeedsCurrent). --backend replaces the whole backend (TLS off unless --backend-tls);
// without it --backend-tls, --backend-ca and --backend-server-name change the current one.
// A path list given replaces that list ('' alone empties it); when all three lists end empty
// the service's defaults apply. Nothing given is refused.
absl::StatusOr<ott::v1::UpdateDomainRequest> UpdateDomainRequestOf(const OttDomainFlags& flags,
                                                                   const ott::v1::Domain* current);

// The flags of `ott account add` and `ott account update`. `given` as for domains:
// "password" (--password-file or --password-stdin), "disabled", "enable", "disable", "unlock".
struct OttAccountFlags {
  std::string name, password_file;
  bool password_stdin = false, disabled = false, enable = false, disable = false, unlock = false;
  std::vector<std::string> given;

  bool Given(absl::string_view flag) const;
};

// `ott account add`'s request: a password (the first line of --password-file, or a line of
// standard input with --password-stdin; 12 to 256 bytes) is required. Checked before any call.
absl::StatusOr<ott::v1::AddAccountRequest> AddAccountRequestOf(const OttAccountFlags& flags);
// `ott account update`'s request: "password", "enabled", "unlock" in the mask as given;
// nothing given is refused.
absl::StatusOr<ott::v1::UpdateAccountRequest> UpdateAccountRequestOf(const OttAccountFlags& flags);

// A backend as people read it: "https://host:port" or "http://host:port" (the port the scheme
// implies when 0).
std::string BackendUrl(const ott::v1::Backend& backend);

// FQDN SERVICE BACKEND CA FILE SERVER NAME STATE CERTIFICATE PATHS UPDATED.
Table DomainsTable(const ott::v1::ListDomainsResponse& resp);
// SERVICE USER PATHS ADMIN PATHS COMMON PATHS DESCRIPTION.
Table ServicesTable(const ott::v1::ListServicesResponse& resp);
// NAME STATE LOCKED UNTIL LAST LOGIN UPDATED.
Table AccountsTable(const ott::v1::ListAccountsResponse& resp, int64_t now_unix);

}  // namespace rwg::rwgctl
