// tma server|csv|check|deploy|deployment|events|inventory: the deployment API of the tma service
// (rwg.tma.v1, --tma-server): download servers, the Remote Worker CSV, deployments of the
// phones' files and the inventory of deployed phones (seed §5.7, §6.3-6.5; docs/tma.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "rwg/tma/v1/tma.pb.h"
#include "tools/rwgctl/command_line.h"

namespace rwg::rwgctl {

void RegisterTma(CommandLine& cli);

// The flags of `tma server add` and `tma server modify`. `given` names the flags given on the
// command line by the field they set: "kind", "address", "port", "directory", "login",
// "password" (--password-file or --password-stdin), "sites", "ca_file".
struct TmaServerFlags {
  std::string name, kind, address, directory, login, password_file, ca_file;
  int64_t port = 0;
  bool password_stdin = false;
  std::vector<std::string> sites;
  std::vector<std::string> given;

  bool Given(absl::string_view field) const;
};

// `tma server add`'s request, checked before any call (ArgumentError naming the flag): a kind
// that is not local, ftp or ftps, a port outside 1-65535, --address missing for ftp and ftps,
// no password source for ftp and ftps (--password-file or --password-stdin), address, port or
// directory for a local server, --ca-file but for ftps. The password is read then (an
// unreadable --password-file: an error naming it).
absl::StatusOr<tma::v1::AddServerRequest> AddServerRequestOf(const TmaServerFlags& flags);

// `tma server modify`'s request: the fields given and the update mask naming them (the kind is
// refused: it cannot change), checked as for add; nothing given is refused.
absl::StatusOr<tma::v1::UpdateServerRequest> UpdateServerRequestOf(const TmaServerFlags& flags);

// The system data flags of `tma check` and `tma deploy`.
struct TmaSystemFlags {
  std::string proxy, registrar, https_server, https_path, keyboard_script;
  tma::v1::SystemData ToProto() const;
};

// One file `tma deploy` sends after the header.
struct DeployFile {
  std::string path;  // as given
  std::string name;  // its base name, as written on the download server
  uint64_t size = 0;
  std::string role;  // "global", "firmware", "certificate", "other"
};

// The flags of `tma deploy`'s files.
struct DeployFileFlags {
  std::string global;
  std::vector<std::string> firmware, certificates, others;
};

// The files to send, in the order given (global, firmware, certificates, others); each must be
// a regular file that can be read, its base name made of [A-Za-z0-9._-] and used once. The
// first that is not is an error naming its flag and path, before any call.
absl::StatusOr<std::vector<DeployFile>> DeployFilesOf(const DeployFileFlags& flags);

// The live progress line of a deployment on a terminal `width` columns wide, e.g.
// "[#####...............] 120/5000 files  0800A1B2C3D4.cfg": a bar of 20 cells (10 under 60
// columns), the counts, the file being written. Cut to width - 1 columns so that the cursor
// never wraps; a width of 0 or less cuts nothing.
std::string ProgressBarLine(int64_t done, int64_t total, absl::string_view current, int width);

// The same without the bar, for progress written to a file or pipe: "120/5000 files  NAME".
std::string ProgressText(int64_t done, int64_t total, absl::string_view current);

// When plain progress lines are written: the first, then at most one a second.
class ProgressThrottle {
 public:
  bool Due(absl::Time now) {
    if (now - last_ < absl::Seconds(1)) return false;
    last_ = now;
    return true;
  }

 private:
  absl::Time last_ = absl::InfinitePast();
};

// Whether `tma inventory delete` goes ahead: with --yes it does; without, it asks on a
// terminal and is refused elsewhere (ArgumentError).
enum class DeleteConfirmation { kProceed, kAsk };
absl::StatusOr<DeleteConfirmation> DeleteConfirmationOf(bool yes, bool terminal);

// The filter of `tma inventory` and `tma inventory delete`; `state` is "", "deployed",
// "fetched" or "connected".
struct InventoryFlags {
  std::string site, device, state;
  std::vector<std::string> macs;
  bool all = false;
};
absl::StatusOr<tma::v1::InventoryFilter> InventoryFilterOf(const InventoryFlags& flags);
// The delete request: a filter or --all, not both, not neither.
absl::StatusOr<tma::v1::DeleteInventoryRequest> DeleteInventoryRequestOf(
    const InventoryFlags& flags);

// Enum values as people read them: SERVER_KIND_FTPS is "ftps", DEPLOYMENT_STATE_RUNNING
// "running", PHONE_STATE_FETCHED "fetched"; the unspecified value "-".
std::string KindName(tma::v1::ServerKind kind);
std::string StateName(tma::v1::DeploymentState state);
std::string StateName(tma::v1::PhoneState state);

Table ServersTable(const tma::v1::ListServersResponse& resp);
// ROW COLUMN LEVEL MESSAGE; row 0 and an empty column are "-".
Table ProblemsTable(const std::vector<const tma::v1::CsvProblem*>& problems);
Table DeploymentsTable(const tma::v1::ListDeploymentsResponse& resp);
FieldRows DeploymentFields(const tma::v1::Deployment& d);
Table EventsTable(const std::vector<const tma::v1::Event*>& events);
Table InventoryTable(const tma::v1::ListInventoryResponse& resp);

}  // namespace rwg::rwgctl
