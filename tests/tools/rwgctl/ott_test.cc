// `rwgctl ott ...`: the checks made before any call, the requests and update masks built from
// the flags, and the tables. No ott service is needed.
#include "tools/rwgctl/ott.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/rwgctl/errors.h"

namespace rwg::rwgctl {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
namespace ottpb = ::rwg::ott::v1;

// A directory of the test's own, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rwgctl-ott-XXXXXX").string();
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

 private:
  std::string path_;
};

OttDomainFlags Portal() {
  OttDomainFlags f;
  f.fqdn = "Portal.Example.com";
  f.service = "user-portal";
  f.backend = "manager.lan:443";
  f.backend_tls = true;
  f.backend_ca = "/etc/rwg/manager-ca.pem";
  f.given = {"service", "backend", "backend_tls", "backend_ca"};
  return f;
}

// The message of an argument error (exit 2), or the status when it is not one.
template <typename T>
std::string ArgumentMessage(const absl::StatusOr<T>& r) {
  if (r.ok()) return "ok";
  EXPECT_EQ(OutcomeOf(r.status()).exit_code, 2) << r.status();
  return std::string(r.status().message());
}

TEST(RwgctlOttDomain, AddBuildsTheDomain) {
  absl::StatusOr<ottpb::AddDomainRequest> req = AddDomainRequestOf(Portal());
  ASSERT_TRUE(req.ok()) << req.status();
  const ottpb::Domain& d = req->domain();
  EXPECT_EQ(d.fqdn(), "portal.example.com");
  EXPECT_EQ(d.service(), ottpb::SERVICE_USER_PORTAL);
  EXPECT_EQ(d.backend().host(), "manager.lan");
  EXPECT_EQ(d.backend().port(), 443u);
  EXPECT_TRUE(d.backend().tls());
  EXPECT_EQ(d.backend().ca_file(), "/etc/rwg/manager-ca.pem");
  EXPECT_TRUE(d.enabled());
  EXPECT_THAT(d.paths().user(), IsEmpty()) << "the service's defaults";

  OttDomainFlags f = Portal();
  f.disabled = true;
  f.user_paths = {"/userportal/", ""};
  f.common_paths = {"/favicon.ico"};
  f.given.insert(f.given.end(), {"disabled", "user_paths", "common_paths"});
  req = AddDomainRequestOf(f);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_FALSE(req->domain().enabled());
  EXPECT_THAT(req->domain().paths().user(), ElementsAre("/userportal/"));
  EXPECT_THAT(req->domain().paths().common(), ElementsAre("/favicon.ico"));
}

TEST(RwgctlOttDomain, AddRefusesBadValuesNamingTheFlag) {
  OttDomainFlags f = Portal();
  f.given = {"backend"};
  EXPECT_EQ(ArgumentMessage(AddDomainRequestOf(f)),
            "--service is required (user-portal, web-client, embedded-user-portal or web-admin)");
  f = Portal();
  f.given = {"service"};
  EXPECT_EQ(ArgumentMessage(AddDomainRequestOf(f)), "--backend HOST:PORT is required");
  f = Portal();
  f.service = "webmail";
  EXPECT_EQ(ArgumentMessage(AddDomainRequestOf(f)),
            "--service: 'webmail' is not user-portal, web-client, embedded-user-portal or "
            "web-admin");
  f = Portal();
  f.backend_tls = false;
  EXPECT_EQ(ArgumentMessage(AddDomainRequestOf(f)), "--backend-ca: for an HTTPS backend only");
  f = Portal();
  f.backend = "manager.lan:0";
  EXPECT_EQ(ArgumentMessage(AddDomainRequestOf(f)),
            "--backend: 'manager.lan:0' has no port: '0' is not 1-65535");
  f = Portal();
  f.admin_paths = {"admin/"};
  f.given.emplace_back("admin_paths");
  EXPECT_EQ(ArgumentMessage(AddDomainRequestOf(f)),
            "--admin-path: 'admin/' is not a URL path (it starts with /)");
  f = Portal();
  f.given.emplace_back("disable");
  EXPECT_EQ(ArgumentMessage(AddDomainRequestOf(f)),
            "--disable: for update only (add has --disabled)");
}

TEST(RwgctlOttDomain, BackendAddresses) {
  ottpb::Backend b;
  ASSERT_TRUE(ParseBackendAddress("manager.lan:8443", &b).ok());
  EXPECT_EQ(b.host(), "manager.lan");
  EXPECT_EQ(b.port(), 8443u);
  ASSERT_TRUE(ParseBackendAddress("192.0.2.10", &b).ok());
  EXPECT_EQ(b.host(), "192.0.2.10");
  EXPECT_EQ(b.port(), 0u) << "the scheme's port";
  ASSERT_TRUE(ParseBackendAddress("[2001:db8::10]:443", &b).ok());
  EXPECT_EQ(b.host(), "2001:db8::10");
  EXPECT_EQ(b.port(), 443u);
  ASSERT_TRUE(ParseBackendAddress("[2001:db8::10]", &b).ok());
  EXPECT_EQ(b.port(), 0u);
  for (const char* bad : {"", ":443", "manager.lan:", "manager.lan:http", "manager.lan:65536",
                          "2001:db8::10", "[2001:db8::10", "[2001:db8::10]x"}) {
    absl::Status s = ParseBackendAddress(bad, &b);
    EXPECT_EQ(OutcomeOf(s).exit_code, 2) << bad;
    EXPECT_THAT(std::string(s.message()), ::testing::StartsWith("--backend: ")) << bad;
  }
}

TEST(RwgctlOttDomain, UpdateMasksWhatTheFlagsChange) {
  OttDomainFlags f;
  f.fqdn = "portal.example.com";
  f.disable = true;
  f.given = {"disable"};
  EXPECT_FALSE(UpdateNeedsCurrent(f));
  absl::StatusOr<ottpb::UpdateDomainRequest> req = UpdateDomainRequestOf(f, nullptr);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->update_mask(), ElementsAre("enabled"));
  EXPECT_FALSE(req->domain().enabled());
  EXPECT_FALSE(req->domain().has_paths());

  f = OttDomainFlags();
  f.fqdn = "portal.example.com";
  f.service = "web-client";
  f.backend = "manager.lan:443";
  f.enable = true;
  f.user_paths = {"/userportal/"};
  f.admin_paths = {""};
  f.common_paths = {"/favicon.ico"};
  f.given = {"service", "backend", "enable", "user_paths", "admin_paths", "common_paths"};
  EXPECT_FALSE(UpdateNeedsCurrent(f)) << "every list and the whole backend are given";
  req = UpdateDomainRequestOf(f, nullptr);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->update_mask(), ElementsAre("service", "backend", "enabled", "paths"));
  EXPECT_EQ(req->domain().service(), ottpb::SERVICE_WEB_CLIENT);
  EXPECT_FALSE(req->domain().backend().tls()) << "--backend replaces the whole backend";
  EXPECT_THAT(req->domain().paths().user(), ElementsAre("/userportal/"));
  EXPECT_THAT(req->domain().paths().admin(), IsEmpty());
}

TEST(RwgctlOttDomain, UpdateKeepsWhatTheFlagsDoNotGive) {
  ottpb::Domain current;
  current.set_fqdn("portal.example.com");
  current.mutable_backend()->set_host("manager.lan");
  current.mutable_backend()->set_port(8443);
  current.mutable_backend()->set_tls(true);
  current.mutable_paths()->add_admin("/admin/");
  current.mutable_paths()->add_user("/old/");

  OttDomainFlags f;
  f.fqdn = "portal.example.com";
  f.backend_server_name = "manager.corp";
  f.user_paths = {"/userportal/"};
  f.common_paths = {"/favicon.ico"};
  f.given = {"backend_server_name", "user_paths", "common_paths"};
  EXPECT_TRUE(UpdateNeedsCurrent(f));
  absl::StatusOr<ottpb::UpdateDomainRequest> req = UpdateDomainRequestOf(f, &current);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->update_mask(), ElementsAre("backend", "paths"));
  EXPECT_EQ(req->domain().backend().host(), "manager.lan");
  EXPECT_EQ(req->domain().backend().port(), 8443u);
  EXPECT_TRUE(req->domain().backend().tls());
  EXPECT_EQ(req->domain().backend().server_name(), "manager.corp");
  EXPECT_THAT(req->domain().paths().user(), ElementsAre("/userportal/"));
  EXPECT_THAT(req->domain().paths().admin(), ElementsAre("/admin/"));
  EXPECT_THAT(req->domain().paths().common(), ElementsAre("/favicon.ico"));

  // A CA for a backend that is plain HTTP is refused once the backend is known.
  current.mutable_backend()->set_tls(false);
  f.given = {"backend_ca"};
  f.backend_ca = "/etc/rwg/ca.pem";
  EXPECT_EQ(ArgumentMessage(UpdateDomainRequestOf(f, &current)),
            "--backend-ca: for an HTTPS backend only");
}

TEST(RwgctlOttDomain, UpdateRefusals) {
  OttDomainFlags f;
  f.fqdn = "portal.example.com";
  EXPECT_EQ(ArgumentMessage(UpdateDomainRequestOf(f, nullptr)),
            "nothing to change: give --service, --backend, --backend-tls, --backend-ca, "
            "--backend-server-name, --enable, --disable, --user-path, --admin-path or "
            "--common-path");
  f.given = {"enable", "disable"};
  EXPECT_EQ(ArgumentMessage(UpdateDomainRequestOf(f, nullptr)), "--enable and --disable: give one");
  f.given = {"disabled"};
  EXPECT_EQ(ArgumentMessage(UpdateDomainRequestOf(f, nullptr)),
            "--disabled: for add only (use --disable)");
}

TEST(RwgctlOttAccount, AddReadsThePasswordFromItsFile) {
  TempDir dir;
  OttAccountFlags f;
  f.name = "alice";
  f.password_file = dir.Write("pw", "correct horse battery\r\nignored\n");
  f.given = {"password"};
  absl::StatusOr<ottpb::AddAccountRequest> req = AddAccountRequestOf(f);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->account().name(), "alice");
  EXPECT_EQ(req->account().password(), "correct horse battery");
  EXPECT_TRUE(req->account().enabled());

  f.password_file = dir.Write("short", "short\n");
  EXPECT_EQ(ArgumentMessage(AddAccountRequestOf(f)),
            "--password-file: the password has 5 bytes, not 12 to 256");
  f.password_file = "/nonexistent/pw";
  absl::Status s = AddAccountRequestOf(f).status();
  EXPECT_EQ(OutcomeOf(s).exit_code, 1);
  EXPECT_THAT(std::string(s.message()), ::testing::StartsWith("--password-file: "));
  f.given = {};
  EXPECT_EQ(ArgumentMessage(AddAccountRequestOf(f)),
            "a password is required: --password-file FILE or --password-stdin");
  f.given = {"password", "unlock"};
  EXPECT_EQ(ArgumentMessage(AddAccountRequestOf(f)), "--unlock: for update only");
}

TEST(RwgctlOttAccount, UpdateMasksWhatTheFlagsChange) {
  OttAccountFlags f;
  f.name = "alice";
  f.unlock = true;
  f.disable = true;
  f.given = {"disable", "unlock"};
  absl::StatusOr<ottpb::UpdateAccountRequest> req = UpdateAccountRequestOf(f);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->update_mask(), ElementsAre("enabled", "unlock"));
  EXPECT_FALSE(req->account().enabled());
  EXPECT_TRUE(req->account().password().empty());

  f.given = {};
  EXPECT_EQ(ArgumentMessage(UpdateAccountRequestOf(f)),
            "nothing to change: give --password-file, --password-stdin, --enable, --disable or "
            "--unlock");
  f.given = {"enable", "disable"};
  EXPECT_EQ(ArgumentMessage(UpdateAccountRequestOf(f)), "--enable and --disable: give one");
  f.password_file = "pw";
  f.password_stdin = true;
  f.given = {"password"};
  EXPECT_EQ(ArgumentMessage(UpdateAccountRequestOf(f)),
            "--password-file and --password-stdin: give one");
}

TEST(RwgctlOttTables, DomainsServicesAccounts) {
  ottpb::ListDomainsResponse domains;
  ottpb::Domain* d = domains.add_domains();
  d->set_fqdn("portal.example.com");
  d->set_service(ottpb::SERVICE_USER_PORTAL);
  d->mutable_backend()->set_host("manager.lan");
  d->mutable_backend()->set_tls(true);
  d->mutable_backend()->set_ca_file("/etc/rwg/ca.pem");
  d->set_enabled(true);
  d->set_has_certificate(true);
  d = domains.add_domains();
  d->set_fqdn("admin.example.com");
  d->set_service(ottpb::SERVICE_WEB_ADMIN);
  d->mutable_backend()->set_host("2001:db8::5");
  d->mutable_paths()->add_admin("/admin/");
  EXPECT_EQ(
      RenderTable(DomainsTable(domains)),
      "FQDN                SERVICE      BACKEND                  CA FILE          SERVER NAME  "
      "STATE     CERTIFICATE  PATHS    UPDATED\n"
      "portal.example.com  user-portal  https://manager.lan:443  /etc/rwg/ca.pem  -            "
      "enabled   yes          default  -\n"
      "admin.example.com   web-admin    http://[2001:db8::5]:80  -                -            "
      "disabled  missing      own      -\n");

  ottpb::ListServicesResponse services;
  ottpb::ServiceInfo* s = services.add_services();
  s->set_service(ottpb::SERVICE_WEB_CLIENT);
  s->set_name("web-client");
  s->set_description("Manager Web Client");
  s->mutable_default_paths()->add_user("/webclient/");
  s->mutable_default_paths()->add_user("/ws/");
  s->mutable_default_paths()->add_common("/favicon.ico");
  EXPECT_EQ(RenderTable(ServicesTable(services)),
            "SERVICE     USER PATHS        ADMIN PATHS  COMMON PATHS  DESCRIPTION\n"
            "web-client  /webclient/,/ws/  -            /favicon.ico  Manager Web Client\n");

  ottpb::ListAccountsResponse accounts;
  ottpb::Account* a = accounts.add_accounts();
  a->set_name("alice");
  a->set_enabled(true);
  a->set_locked_until_unix(2000);
  a = accounts.add_accounts();
  a->set_name("bob");
  a->set_locked_until_unix(500);
  a->set_last_login_unix(86400);
  EXPECT_EQ(RenderTable(AccountsTable(accounts, 1000)),
            "NAME   STATE           LOCKED UNTIL             LAST LOGIN               UPDATED\n"
            "alice  enabled,locked  1970-01-01 00:33:20 UTC  -                        -\n"
            "bob    disabled        -                        1970-01-02 00:00:00 UTC  -\n");
}

TEST(RwgctlOttTables, ServiceNames) {
  EXPECT_EQ(ServiceName(ottpb::SERVICE_EMBEDDED_USER_PORTAL), "embedded-user-portal");
  EXPECT_EQ(ServiceName(ottpb::SERVICE_UNSPECIFIED), "-");
  absl::StatusOr<ottpb::Service> s = ServiceOf("web-admin");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, ottpb::SERVICE_WEB_ADMIN);
}

}  // namespace
}  // namespace rwg::rwgctl
