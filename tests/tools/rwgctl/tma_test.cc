// `rwgctl tma ...`: the checks made before any call, the requests built from the flags, the
// tables and the progress line. No tma service is needed.
#include "tools/rwgctl/tma.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/rwgctl/errors.h"

namespace rwg::rwgctl {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;
namespace tmapb = ::rwg::tma::v1;

// A directory of the test's own, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rwgctl-tma-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string Write(const std::string& name, const std::string& content) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TmaServerFlags FtpServer(const std::string& password_file) {
  TmaServerFlags f;
  f.name = "rw-ftp";
  f.kind = "ftp";
  f.address = "192.0.2.21";
  f.password_file = password_file;
  f.sites = {"Paris", "Lyon"};
  f.given = {"kind", "address", "password", "sites"};
  return f;
}

TEST(RwgctlTmaServer, AddBuildsTheServerWithThePasswordFromItsFile) {
  TempDir dir;
  TmaServerFlags f = FtpServer(dir.Write("pw", "s3cret pass\nignored\n"));
  absl::StatusOr<tmapb::AddServerRequest> req = AddServerRequestOf(f);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->server().name(), "rw-ftp");
  EXPECT_EQ(req->server().kind(), tmapb::SERVER_KIND_FTP);
  EXPECT_EQ(req->server().address(), "192.0.2.21");
  EXPECT_EQ(req->server().port(), 0u) << "the server's default, 21";
  EXPECT_EQ(req->server().password(), "s3cret pass");
  EXPECT_THAT(req->server().sites(), ElementsAre("Paris", "Lyon"));
}

TEST(RwgctlTmaServer, AddRefusesBadValuesNamingTheFlag) {
  TempDir dir;
  const std::string pw = dir.Write("pw", "secret\n");
  auto message = [](const TmaServerFlags& f) {
    absl::Status s = AddServerRequestOf(f).status();
    EXPECT_EQ(OutcomeOf(s).exit_code, 2) << s;
    return std::string(s.message());
  };
  TmaServerFlags f = FtpServer(pw);
  f.kind = "sftp";
  EXPECT_EQ(message(f), "--kind: 'sftp' is not local, ftp or ftps");
  f = FtpServer(pw);
  f.given.push_back("port");
  for (int64_t port : {0, -1, 65536}) {
    f.port = port;
    EXPECT_EQ(message(f), "--port: " + std::to_string(port) + " is not a port (1-65535)");
  }
  f.port = 2121;
  EXPECT_TRUE(AddServerRequestOf(f).ok());
  f = FtpServer("");
  f.given = {"kind", "address"};
  EXPECT_EQ(message(f), "an ftp server needs a password: --password-file FILE or --password-stdin");
  f = FtpServer(pw);
  f.password_stdin = true;
  EXPECT_EQ(message(f), "--password-file and --password-stdin: give one");
  f = FtpServer(pw);
  f.address.clear();
  f.given = {"kind", "password"};
  EXPECT_EQ(message(f), "--address: required for an ftp server");
  f = FtpServer(pw);
  f.ca_file = "/etc/rwg/ca.pem";
  f.given.push_back("ca_file");
  EXPECT_EQ(message(f), "--ca-file: for an ftps server only");
  f.kind = "ftps";
  EXPECT_TRUE(AddServerRequestOf(f).ok());
  f = FtpServer("");
  f.given = {};
  EXPECT_EQ(message(f), "--kind is required (local, ftp or ftps)");
}

TEST(RwgctlTmaServer, LocalServersHaveNoAddressAndNeedNoPassword) {
  TmaServerFlags f;
  f.name = "local";
  f.kind = "local";
  f.given = {"kind"};
  absl::StatusOr<tmapb::AddServerRequest> req = AddServerRequestOf(f);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->server().kind(), tmapb::SERVER_KIND_LOCAL);
  f.address = "192.0.2.1";
  f.given.push_back("address");
  EXPECT_EQ(AddServerRequestOf(f).status().message(), "--address: not for a local server");
}

TEST(RwgctlTmaServer, AnUnreadablePasswordFileIsNamed) {
  TmaServerFlags f = FtpServer("/nonexistent/pw");
  absl::Status s = AddServerRequestOf(f).status();
  EXPECT_EQ(OutcomeOf(s).exit_code, 1);
  EXPECT_EQ(s.message(), "--password-file: cannot read /nonexistent/pw");
  TempDir dir;
  f = FtpServer(dir.Write("empty", "\n"));
  EXPECT_EQ(AddServerRequestOf(f).status().message(), "--password-file: the password is empty");
}

TEST(RwgctlTmaServer, ModifyMasksTheFieldsGiven) {
  TempDir dir;
  TmaServerFlags f;
  f.name = "rw-ftp";
  f.port = 2121;
  f.login = "rw";
  f.password_file = dir.Write("pw", "new\n");
  f.given = {"port", "login", "password"};
  absl::StatusOr<tmapb::UpdateServerRequest> req = UpdateServerRequestOf(f);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->update_mask(), ElementsAre("port", "login", "password"));
  EXPECT_EQ(req->server().name(), "rw-ftp");
  EXPECT_EQ(req->server().port(), 2121u);
  EXPECT_EQ(req->server().password(), "new");

  f = TmaServerFlags();
  f.name = "rw-ftp";
  f.sites = {""};  // --site '': no sites
  f.given = {"sites"};
  req = UpdateServerRequestOf(f);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->update_mask(), ElementsAre("sites"));
  EXPECT_TRUE(req->server().sites().empty());

  f.given = {};
  EXPECT_THAT(std::string(UpdateServerRequestOf(f).status().message()),
              StartsWith("nothing to change: give --address"));
  f.given = {"kind"};
  EXPECT_EQ(UpdateServerRequestOf(f).status().message(),
            "--kind: a server's kind cannot change (delete it and add it again)");
  f.given = {"port"};
  f.port = 65536;
  EXPECT_EQ(OutcomeOf(UpdateServerRequestOf(f).status()).exit_code, 2);
}

TEST(RwgctlTmaDeploy, FilesAreSentInOrderByBaseNameAndRole) {
  TempDir dir;
  DeployFileFlags flags;
  flags.global = dir.Write("aastra.cfg", "global");
  flags.firmware = {dir.Write("6867i.st", std::string(70000, 'f'))};
  flags.certificates = {dir.Write("CA_Mitel.pem", "pem")};
  flags.others = {dir.Write("empty.txt", "")};
  absl::StatusOr<std::vector<DeployFile>> files = DeployFilesOf(flags);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 4u);
  EXPECT_EQ((*files)[0].name, "aastra.cfg");
  EXPECT_EQ((*files)[0].role, "global");
  EXPECT_EQ((*files)[1].name, "6867i.st");
  EXPECT_EQ((*files)[1].size, 70000u);
  EXPECT_EQ((*files)[1].role, "firmware");
  EXPECT_EQ((*files)[2].role, "certificate");
  EXPECT_EQ((*files)[3].role, "other");
  EXPECT_EQ((*files)[3].size, 0u);
  EXPECT_EQ((*files)[3].path, dir.path() + "/empty.txt");
}

TEST(RwgctlTmaDeploy, AMissingOrUnreadableFileIsNamedBeforeAnyCall) {
  TempDir dir;
  DeployFileFlags flags;
  flags.certificates = {dir.Write("CA_Mitel.pem", "pem"), dir.path() + "/missing.pem"};
  absl::Status s = DeployFilesOf(flags).status();
  EXPECT_EQ(s.message(),
            "--certificate: cannot read " + dir.path() + "/missing.pem: No such file or directory");
  EXPECT_EQ(OutcomeOf(s).exit_code, 1);

  flags = DeployFileFlags();
  flags.firmware = {dir.path()};
  EXPECT_EQ(DeployFilesOf(flags).status().message(),
            "--firmware: " + dir.path() + " is not a regular file");

  if (geteuid() != 0) {  // root reads whatever the mode
    const std::string locked = dir.Write("locked.st", "x");
    std::filesystem::permissions(locked, std::filesystem::perms::none);
    flags.firmware = {locked};
    EXPECT_EQ(DeployFilesOf(flags).status().message(),
              "--firmware: cannot read " + locked + ": Permission denied");
  }
}

TEST(RwgctlTmaDeploy, NamesMustSuitTheServerAndBeUnique) {
  TempDir dir;
  DeployFileFlags flags;
  flags.others = {dir.Write("my file.txt", "x")};
  absl::Status s = DeployFilesOf(flags).status();
  EXPECT_EQ(OutcomeOf(s).exit_code, 2);
  EXPECT_THAT(std::string(s.message()), StartsWith("--file: 'my file.txt': a file's name"));
  std::filesystem::create_directory(dir.path() + "/other");
  flags.others = {dir.Write("a.pem", "1"), dir.Write("other/a.pem", "2")};
  EXPECT_EQ(DeployFilesOf(flags).status().message(), "--file: 'a.pem': another file has this name");
}

TEST(RwgctlTmaProgress, TheBarFillsWithTheFilesDone) {
  EXPECT_EQ(ProgressBarLine(0, 5000, "", 80), "[....................] 0/5000 files");
  EXPECT_EQ(ProgressBarLine(120, 5000, "0800A1B2C3D4.cfg", 80),
            "[....................] 120/5000 files  0800A1B2C3D4.cfg");
  EXPECT_EQ(ProgressBarLine(2500, 5000, "0800A1B2C3D4.cfg", 80),
            "[##########..........] 2500/5000 files  0800A1B2C3D4.cfg");
  EXPECT_EQ(ProgressBarLine(5000, 5000, "", 80), "[####################] 5000/5000 files");
  // Narrow terminals: ten cells, and the line stops one column short of the edge.
  EXPECT_EQ(ProgressBarLine(5, 10, "0800A1B2C3D4.cfg", 59),
            "[#####.....] 5/10 files  0800A1B2C3D4.cfg");
  EXPECT_EQ(ProgressBarLine(5, 10, "0800A1B2C3D4.cfg", 20), "[#####.....] 5/10 f");
  // Unknown width: nothing cut. Nothing to do yet, or more done than planned: no overflow.
  EXPECT_EQ(ProgressBarLine(0, 0, "", 0), "[....................] 0/0 files");
  EXPECT_EQ(ProgressBarLine(7, 5, "", 0), "[####################] 7/5 files");
}

TEST(RwgctlTmaProgress, PlainLinesAtMostOneASecond) {
  EXPECT_EQ(ProgressText(120, 5000, "0800A1B2C3D4.cfg"), "120/5000 files  0800A1B2C3D4.cfg");
  EXPECT_EQ(ProgressText(5000, 5000, ""), "5000/5000 files");
  ProgressThrottle throttle;
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  EXPECT_TRUE(throttle.Due(t0));
  EXPECT_FALSE(throttle.Due(t0 + absl::Milliseconds(999)));
  EXPECT_TRUE(throttle.Due(t0 + absl::Seconds(1)));
  EXPECT_FALSE(throttle.Due(t0 + absl::Milliseconds(1500)));
}

TEST(RwgctlTmaInventory, FiltersAndWhatDeleteNeeds) {
  InventoryFlags f;
  f.site = "Paris";
  f.macs = {"08:00:0f:a1:b2:c3"};
  f.state = "fetched";
  absl::StatusOr<tmapb::InventoryFilter> filter = InventoryFilterOf(f);
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(filter->state(), tmapb::PHONE_STATE_FETCHED);
  EXPECT_THAT(filter->macs(), ElementsAre("08:00:0f:a1:b2:c3"));
  f.state = "lost";
  EXPECT_EQ(InventoryFilterOf(f).status().message(),
            "--state: 'lost' is not deployed, fetched or connected");

  InventoryFlags none;
  absl::Status s = DeleteInventoryRequestOf(none).status();
  EXPECT_EQ(OutcomeOf(s).exit_code, 2);
  EXPECT_EQ(s.message(), "which phones? give --mac, --site, --device, --state, or --all");
  none.all = true;
  absl::StatusOr<tmapb::DeleteInventoryRequest> all = DeleteInventoryRequestOf(none);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->all());
  none.device = "2001";
  EXPECT_EQ(DeleteInventoryRequestOf(none).status().message(),
            "--all: not with --mac, --site, --device or --state");
  InventoryFlags device;
  device.device = "2001";
  EXPECT_FALSE(DeleteInventoryRequestOf(device)->all());
}

TEST(RwgctlTmaInventory, DeleteAsksOnATerminalAndIsRefusedElsewhere) {
  EXPECT_EQ(*DeleteConfirmationOf(true, false), DeleteConfirmation::kProceed);
  EXPECT_EQ(*DeleteConfirmationOf(true, true), DeleteConfirmation::kProceed);
  EXPECT_EQ(*DeleteConfirmationOf(false, true), DeleteConfirmation::kAsk);
  absl::Status s = DeleteConfirmationOf(false, false).status();
  EXPECT_EQ(OutcomeOf(s).exit_code, 2);
  EXPECT_EQ(s.message(), "not on a terminal, no one to confirm: add --yes to delete");
}

TEST(RwgctlTmaTables, Servers) {
  tmapb::ListServersResponse resp;
  tmapb::Server* local = resp.add_servers();
  local->set_name("local");
  local->set_kind(tmapb::SERVER_KIND_LOCAL);
  tmapb::Server* ftp = resp.add_servers();
  ftp->set_name("rw-ftp");
  ftp->set_kind(tmapb::SERVER_KIND_FTPS);
  ftp->set_address("192.0.2.21");
  ftp->set_has_password(true);
  ftp->add_sites("Paris");
  ftp->add_sites("Lyon");
  ftp->set_update_time_unix(1700000000);
  EXPECT_EQ(RenderTable(ServersTable(resp)),
            "NAME    KIND   ADDRESS     PORT  DIRECTORY  LOGIN           PASSWORD  SITES       "
            "CA FILE  UPDATED\n"
            "local   local  -           -     -          mngt_ftp_67xxi  -         -           "
            "-        -\n"
            "rw-ftp  ftps   192.0.2.21  21    /          mngt_ftp_67xxi  set       Paris,Lyon  "
            "-        2023-11-14 22:13:20 UTC\n");
}

TEST(RwgctlTmaTables, CsvProblems) {
  tmapb::CsvProblem file, cell;
  file.set_message("no rows");
  cell.set_row(3);
  cell.set_column("MAC ADDRESS");
  cell.set_message("'0800' is 4 hex digits, not 12");
  tmapb::CsvProblem warning = cell;
  warning.set_row(4);
  warning.set_column("");
  warning.set_warning(true);
  warning.set_message("device 2001 has another MAC");
  EXPECT_EQ(RenderTable(ProblemsTable({&file, &cell, &warning})),
            "ROW  COLUMN       LEVEL    MESSAGE\n"
            "-    -            error    no rows\n"
            "3    MAC ADDRESS  error    '0800' is 4 hex digits, not 12\n"
            "4    -            warning  device 2001 has another MAC\n");
}

TEST(RwgctlTmaTables, DeploymentsEventsAndInventory) {
  tmapb::ListDeploymentsResponse deployments;
  tmapb::Deployment* d = deployments.add_deployments();
  d->set_id("d-1");
  d->set_server("local");
  d->set_state(tmapb::DEPLOYMENT_STATE_RUNNING);
  d->set_files_total(5000);
  d->set_files_done(120);
  d->set_phones(4998);
  d->set_create_time_unix_ms(1700000000123);
  Table t = DeploymentsTable(deployments);
  EXPECT_EQ(t.header, (std::vector<std::string>{"ID", "STATE", "SERVER", "FILES", "PHONES",
                                                "CREATED", "ENDED", "DESCRIPTION"}));
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"d-1", "running", "local", "120/5000", "4998",
                                                 "2023-11-14 22:13:20 UTC", "-", ""}));
  FieldRows fields = DeploymentFields(*d);
  EXPECT_EQ(fields[2], (std::pair<std::string, std::string>{"state", "running"}));
  EXPECT_EQ(fields[5], (std::pair<std::string, std::string>{"files", "120/5000 (0 unchanged)"}));

  tmapb::Event e;
  e.set_seq(42);
  e.set_time_unix_ms(1700000000999);
  e.set_deployment("d-1");
  e.set_action("file.written");
  e.set_file("0800A1B2C3D4.cfg");
  EXPECT_EQ(RenderTable(EventsTable({&e})),
            "SEQ  TIME                     DEPLOYMENT  ACTION        FILE              DETAIL\n"
            "42   2023-11-14 22:13:20 UTC  d-1         file.written  0800A1B2C3D4.cfg\n");

  tmapb::ListInventoryResponse inventory;
  tmapb::InventoryEntry* i = inventory.add_entries();
  i->set_mac("0800A1B2C3D4");
  i->set_site("Paris");
  i->set_device("2001");
  i->set_state(tmapb::PHONE_STATE_DEPLOYED);
  i->set_deployment("d-1");
  i->set_server("local");
  i->set_deployed_unix_ms(1700000000000);
  t = InventoryTable(inventory);
  EXPECT_EQ(t.header, (std::vector<std::string>{"MAC", "SITE", "DEVICE", "STATE", "DEPLOYMENT",
                                                "SERVER", "DEPLOYED", "FETCHED"}));
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"0800A1B2C3D4", "Paris", "2001", "deployed", "d-1",
                                                 "local", "2023-11-14 22:13:20 UTC", "-"}));
}

TEST(RwgctlTmaTables, EnumNames) {
  EXPECT_EQ(KindName(tmapb::SERVER_KIND_FTP), "ftp");
  EXPECT_EQ(KindName(tmapb::SERVER_KIND_UNSPECIFIED), "-");
  EXPECT_EQ(StateName(tmapb::DEPLOYMENT_STATE_COMPLETED), "completed");
  EXPECT_EQ(StateName(tmapb::PHONE_STATE_CONNECTED), "connected");
}

}  // namespace
}  // namespace rwg::rwgctl
