#include "tools/rwgctl/ott.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "rwg/ott/v1/ott.grpc.pb.h"
#include "tools/rwgctl/errors.h"
#include "tools/rwgctl/input.h"

namespace rwg::rwgctl {
namespace {

namespace ottpb = ::rwg::ott::v1;
using Ott = ottpb::OttService::Stub;

constexpr size_t kMinPassword = 12;
constexpr size_t kMaxPassword = 256;

bool Contains(const std::vector<std::string>& given, absl::string_view flag) {
  return std::find(given.begin(), given.end(), flag) != given.end();
}

// A path list of the flags: '' entries dropped, every other path starting with '/'.
absl::Status PathsOf(absl::string_view flag, const std::vector<std::string>& paths,
                     google::protobuf::RepeatedPtrField<std::string>* out) {
  out->Clear();
  for (const std::string& p : paths) {
    if (p.empty()) continue;
    if (p.front() != '/') {
      return FlagError(flag, absl::StrCat("'", p, "' is not a URL path (it starts with /)"));
    }
    out->Add(std::string(p));
  }
  return absl::OkStatus();
}

absl::Status CheckBackendTls(const ottpb::Backend& b) {
  if (b.tls()) return absl::OkStatus();
  if (!b.ca_file().empty()) return FlagError("--backend-ca", "for an HTTPS backend only");
  if (!b.server_name().empty()) {
    return FlagError("--backend-server-name", "for an HTTPS backend only");
  }
  return absl::OkStatus();
}

// The password of `ott account add|update`: "" when none is given; else 12 to 256 bytes.
absl::StatusOr<std::string> ReadAccountPassword(const OttAccountFlags& f) {
  absl::StatusOr<std::optional<std::string>> p =
      ReadPasswordFlags(f.password_file, f.password_stdin);
  if (!p.ok()) return p.status();
  if (!p->has_value()) return std::string();
  const std::string& password = **p;
  if (password.size() < kMinPassword || password.size() > kMaxPassword) {
    return FlagError(f.password_stdin ? "--password-stdin" : "--password-file",
                     absl::StrCat("the password has ", password.size(), " bytes, not ",
                                  kMinPassword, " to ", kMaxPassword));
  }
  return password;
}

absl::Status CheckEnableDisable(const OttAccountFlags& f) {
  if (f.Given("enable") && f.Given("disable")) {
    return ArgumentError("--enable and --disable: give one");
  }
  return absl::OkStatus();
}

std::string JoinPaths(const google::protobuf::RepeatedPtrField<std::string>& paths) {
  return OrDash(absl::StrJoin(paths, ","));
}

bool HasOwnPaths(const ottpb::PathLists& p) {
  return !p.user().empty() || !p.admin().empty() || !p.common().empty();
}

// --- domains ---------------------------------------------------------------------------------

absl::Status AddDomain(Context& c, const OttDomainFlags& flags) {
  absl::StatusOr<ottpb::AddDomainRequest> req = AddDomainRequestOf(flags);
  if (!req.ok()) return req.status();
  ottpb::Domain resp;
  if (absl::Status s = c.ott.Call(&Ott::AddDomain, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "domain " << resp.fqdn() << " added\n";
    if (!resp.has_certificate()) {
      c.printer.err() << "warning: no certificate for " << resp.fqdn()
                      << " yet (tls.crt and tls.key under the service's --cert-dir/" << resp.fqdn()
                      << "/)\n";
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<ottpb::Domain> FindDomain(Context& c, const std::string& fqdn) {
  ottpb::ListDomainsResponse resp;
  if (absl::Status s = c.ott.Call(&Ott::ListDomains, ottpb::ListDomainsRequest(), &resp); !s.ok()) {
    return s;
  }
  const std::string want = absl::AsciiStrToLower(fqdn);
  for (const ottpb::Domain& d : resp.domains()) {
    if (d.fqdn() == want) return d;
  }
  return absl::NotFoundError(absl::StrCat("no domain ", want));
}

absl::Status UpdateDomain(Context& c, const OttDomainFlags& flags) {
  // The flags are checked before any call; the domain is then read if the request keeps some
  // of what it has.
  absl::StatusOr<ottpb::UpdateDomainRequest> req = UpdateDomainRequestOf(flags, nullptr);
  if (!req.ok()) return req.status();
  if (UpdateNeedsCurrent(flags)) {
    absl::StatusOr<ottpb::Domain> current = FindDomain(c, flags.fqdn);
    if (!current.ok()) return current.status();
    req = UpdateDomainRequestOf(flags, &*current);
    if (!req.ok()) return req.status();
  }
  ottpb::Domain resp;
  if (absl::Status s = c.ott.Call(&Ott::UpdateDomain, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "domain " << resp.fqdn() << " updated\n"; });
  return absl::OkStatus();
}

absl::Status DeleteDomain(Context& c, const std::string& fqdn) {
  ottpb::DeleteDomainRequest req;
  req.set_fqdn(absl::AsciiStrToLower(fqdn));
  ottpb::DeleteDomainResponse resp;
  if (absl::Status s = c.ott.Call(&Ott::DeleteDomain, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "domain " << req.fqdn() << " deleted\n"; });
  return absl::OkStatus();
}

absl::Status ListDomains(Context& c) {
  ottpb::ListDomainsResponse resp;
  if (absl::Status s = c.ott.Call(&Ott::ListDomains, ottpb::ListDomainsRequest(), &resp); !s.ok()) {
    return s;
  }
  c.printer.Show(resp, [&] { c.printer.Print(DomainsTable(resp)); });
  return absl::OkStatus();
}

absl::Status ListServices(Context& c) {
  ottpb::ListServicesResponse resp;
  if (absl::Status s = c.ott.Call(&Ott::ListServices, ottpb::ListServicesRequest(), &resp);
      !s.ok()) {
    return s;
  }
  c.printer.Show(resp, [&] { c.printer.Print(ServicesTable(resp)); });
  return absl::OkStatus();
}

// --- accounts --------------------------------------------------------------------------------

absl::Status AddAccount(Context& c, const OttAccountFlags& flags) {
  absl::StatusOr<ottpb::AddAccountRequest> req = AddAccountRequestOf(flags);
  if (!req.ok()) return req.status();
  ottpb::Account resp;
  if (absl::Status s = c.ott.Call(&Ott::AddAccount, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "account " << resp.name() << " added\n"; });
  return absl::OkStatus();
}

absl::Status UpdateAccount(Context& c, const OttAccountFlags& flags) {
  absl::StatusOr<ottpb::UpdateAccountRequest> req = UpdateAccountRequestOf(flags);
  if (!req.ok()) return req.status();
  ottpb::Account resp;
  if (absl::Status s = c.ott.Call(&Ott::UpdateAccount, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "account " << resp.name() << " updated\n"; });
  return absl::OkStatus();
}

absl::Status DeleteAccount(Context& c, const std::string& name) {
  ottpb::DeleteAccountRequest req;
  req.set_name(name);
  ottpb::DeleteAccountResponse resp;
  if (absl::Status s = c.ott.Call(&Ott::DeleteAccount, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "account " << name << " deleted\n"; });
  return absl::OkStatus();
}

absl::Status ListAccounts(Context& c) {
  ottpb::ListAccountsResponse resp;
  if (absl::Status s = c.ott.Call(&Ott::ListAccounts, ottpb::ListAccountsRequest(), &resp);
      !s.ok()) {
    return s;
  }
  c.printer.Show(resp,
                 [&] { c.printer.Print(AccountsTable(resp, absl::ToUnixSeconds(absl::Now()))); });
  return absl::OkStatus();
}

// --- the command line ------------------------------------------------------------------------

// Options and the name they set in `given`, filled once parsed.
class GivenOptions {
 public:
  void Add(CLI::Option* option, const char* name) { options_.emplace_back(option, name); }
  std::vector<std::string> Given() const {
    std::vector<std::string> given;
    for (const auto& [o, name] : options_) {
      if (o->count() > 0 && !Contains(given, name)) given.emplace_back(name);
    }
    return given;
  }

 private:
  std::vector<std::pair<CLI::Option*, const char*>> options_;
};

struct DomainCommand {
  OttDomainFlags flags;
  GivenOptions options;

  void Register(CLI::App* cmd, bool update) {
    cmd->add_option("fqdn", flags.fqdn, "the domain's FQDN (as the browser asks for it)")
        ->required();
    options.Add(cmd->add_option("--service", flags.service,
                                "user-portal, web-client, "
                                "embedded-user-portal or web-admin")
                    ->check(CLI::IsMember(
                        {"user-portal", "web-client", "embedded-user-portal", "web-admin"})),
                "service");
    options.Add(cmd->add_option("--backend", flags.backend,
                                "HOST:PORT of the application inside (the port 443 with "
                                "--backend-tls, else 80, when not given)"),
                "backend");
    options.Add(cmd->add_flag("--backend-tls", flags.backend_tls,
                              "HTTPS to the application (its certificate is verified)"),
                "backend_tls");
    options.Add(cmd->add_option("--backend-ca", flags.backend_ca,
                                "PEM CA file on the ott host to verify the application with "
                                "(default: the system's CAs)"),
                "backend_ca");
    options.Add(cmd->add_option("--backend-server-name", flags.backend_server_name,
                                "the name the application's certificate holds, and the SNI "
                                "(default: the backend's host)"),
                "backend_server_name");
    const char* replaces = update ? " (repeatable; replaces that list, '' for none)"
                                  : " (repeatable; the service's defaults when no path is given)";
    // One path per flag, the flag repeated: a path never takes the FQDN's place.
    auto path_option = [&](const char* name, std::vector<std::string>& paths,
                           const std::string& help) {
      return cmd->add_option(name, paths, help)->allow_extra_args(false);
    };
    options.Add(
        path_option("--user-path", flags.user_paths,
                    absl::StrCat("a path for end users, a prefix when it ends with /", replaces)),
        "user_paths");
    options.Add(path_option("--admin-path", flags.admin_paths,
                            absl::StrCat("a path behind rwg's login", replaces)),
                "admin_paths");
    options.Add(
        path_option("--common-path", flags.common_paths, absl::StrCat("a path for both", replaces)),
        "common_paths");
    if (update) {
      options.Add(cmd->add_flag("--enable", flags.enable, "serve the domain"), "enable");
      options.Add(cmd->add_flag("--disable", flags.disable, "refuse the domain (TLS alert)"),
                  "disable");
    } else {
      options.Add(cmd->add_flag("--disabled", flags.disabled, "add it disabled"), "disabled");
    }
  }

  const OttDomainFlags& Parsed() {
    flags.given = options.Given();
    return flags;
  }
};

struct AccountCommand {
  OttAccountFlags flags;
  GivenOptions options;

  void Register(CLI::App* cmd, bool update) {
    cmd->add_option("name", flags.name, "the account's name ([A-Za-z0-9._@-], 1 to 64)")
        ->required();
    options.Add(cmd->add_option("--password-file", flags.password_file,
                                "file whose first line is the password (12 to 256 bytes)"),
                "password");
    options.Add(cmd->add_flag("--password-stdin", flags.password_stdin,
                              "read the password from standard input"),
                "password");
    if (update) {
      options.Add(cmd->add_flag("--enable", flags.enable, "let the account log in"), "enable");
      options.Add(cmd->add_flag("--disable", flags.disable, "refuse the account's logins"),
                  "disable");
      options.Add(cmd->add_flag("--unlock", flags.unlock, "lift the lock-out after failed logins"),
                  "unlock");
    } else {
      options.Add(cmd->add_flag("--disabled", flags.disabled, "add it disabled"), "disabled");
    }
  }

  const OttAccountFlags& Parsed() {
    flags.given = options.Given();
    return flags;
  }
};

}  // namespace

bool OttDomainFlags::Given(absl::string_view flag) const { return Contains(given, flag); }
bool OttAccountFlags::Given(absl::string_view flag) const { return Contains(given, flag); }

absl::StatusOr<ottpb::Service> ServiceOf(absl::string_view name) {
  for (ottpb::Service s : {ottpb::SERVICE_USER_PORTAL, ottpb::SERVICE_WEB_CLIENT,
                           ottpb::SERVICE_EMBEDDED_USER_PORTAL, ottpb::SERVICE_WEB_ADMIN}) {
    if (ServiceName(s) == name) return s;
  }
  return FlagError("--service",
                   absl::StrCat("'", name,
                                "' is not user-portal, web-client, embedded-user-portal or "
                                "web-admin"));
}

std::string ServiceName(ottpb::Service service) {
  std::string rest(absl::StripPrefix(ottpb::Service_Name(service), "SERVICE_"));
  if (rest.empty() || rest == "UNSPECIFIED") return "-";
  return absl::StrReplaceAll(absl::AsciiStrToLower(rest), {{"_", "-"}});
}

absl::Status ParseBackendAddress(absl::string_view address, ottpb::Backend* backend) {
  auto bad = [&](absl::string_view why) {
    return FlagError("--backend", absl::StrCat("'", address, "' ", why));
  };
  absl::string_view host = address;
  absl::string_view port;
  if (absl::ConsumePrefix(&host, "[")) {
    const size_t end = host.find(']');
    if (end == absl::string_view::npos) return bad("has no ] after its IPv6 address");
    absl::string_view rest = host.substr(end + 1);
    host = host.substr(0, end);
    if (!rest.empty() && !absl::ConsumePrefix(&rest, ":")) return bad("is not HOST:PORT");
    port = rest;
    if (rest.empty() && absl::EndsWith(address, ":")) return bad("has an empty port");
  } else if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
    if (host.find(':') != colon) return bad("is an IPv6 address: write it [ADDRESS]:PORT");
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
    if (port.empty()) return bad("has an empty port");
  }
  if (host.empty()) return bad("has no host");
  uint32_t number = 0;
  if (!port.empty() && (!absl::SimpleAtoi(port, &number) || number < 1 || number > 65535)) {
    return bad(absl::StrCat("has no port: '", port, "' is not 1-65535"));
  }
  backend->set_host(std::string(host));
  backend->set_port(number);
  return absl::OkStatus();
}

absl::StatusOr<ottpb::AddDomainRequest> AddDomainRequestOf(const OttDomainFlags& flags) {
  if (!flags.Given("service")) {
    return ArgumentError(
        "--service is required (user-portal, web-client, embedded-user-portal or web-admin)");
  }
  if (!flags.Given("backend")) return ArgumentError("--backend HOST:PORT is required");
  for (const char* flag : {"enable", "disable"}) {
    if (flags.Given(flag)) {
      return FlagError(absl::StrCat("--", flag), "for update only (add has --disabled)");
    }
  }
  absl::StatusOr<ottpb::Service> service = ServiceOf(flags.service);
  if (!service.ok()) return service.status();
  ottpb::AddDomainRequest req;
  ottpb::Domain* d = req.mutable_domain();
  d->set_fqdn(absl::AsciiStrToLower(flags.fqdn));
  d->set_service(*service);
  ottpb::Backend* b = d->mutable_backend();
  if (absl::Status s = ParseBackendAddress(flags.backend, b); !s.ok()) return s;
  b->set_tls(flags.backend_tls);
  b->set_ca_file(flags.backend_ca);
  b->set_server_name(flags.backend_server_name);
  if (absl::Status s = CheckBackendTls(*b); !s.ok()) return s;
  d->set_enabled(!flags.disabled);
  ottpb::PathLists* p = d->mutable_paths();
  if (absl::Status s = PathsOf("--user-path", flags.user_paths, p->mutable_user()); !s.ok()) {
    return s;
  }
  if (absl::Status s = PathsOf("--admin-path", flags.admin_paths, p->mutable_admin()); !s.ok()) {
    return s;
  }
  if (absl::Status s = PathsOf("--common-path", flags.common_paths, p->mutable_common()); !s.ok()) {
    return s;
  }
  return req;
}

bool UpdateNeedsCurrent(const OttDomainFlags& flags) {
  const bool backend_part =
      !flags.Given("backend") && (flags.Given("backend_tls") || flags.Given("backend_ca") ||
                                  flags.Given("backend_server_name"));
  const int lists = static_cast<int>(flags.Given("user_paths")) +
                    static_cast<int>(flags.Given("admin_paths")) +
                    static_cast<int>(flags.Given("common_paths"));
  return backend_part || (lists > 0 && lists < 3);
}

absl::StatusOr<ottpb::UpdateDomainRequest> UpdateDomainRequestOf(const OttDomainFlags& flags,
                                                                 const ottpb::Domain* current) {
  if (flags.Given("disabled")) return FlagError("--disabled", "for add only (use --disable)");
  if (flags.Given("enable") && flags.Given("disable")) {
    return ArgumentError("--enable and --disable: give one");
  }
  ottpb::UpdateDomainRequest req;
  ottpb::Domain* d = req.mutable_domain();
  d->set_fqdn(absl::AsciiStrToLower(flags.fqdn));
  if (flags.Given("service")) {
    absl::StatusOr<ottpb::Service> service = ServiceOf(flags.service);
    if (!service.ok()) return service.status();
    d->set_service(*service);
    req.add_update_mask("service");
  }
  const bool backend = flags.Given("backend") || flags.Given("backend_tls") ||
                       flags.Given("backend_ca") || flags.Given("backend_server_name");
  if (backend) {
    ottpb::Backend* b = d->mutable_backend();
    if (flags.Given("backend")) {
      if (absl::Status s = ParseBackendAddress(flags.backend, b); !s.ok()) return s;
    } else if (current != nullptr) {
      *b = current->backend();
    }
    if (flags.Given("backend_tls")) b->set_tls(flags.backend_tls);
    if (flags.Given("backend_ca")) b->set_ca_file(flags.backend_ca);
    if (flags.Given("backend_server_name")) b->set_server_name(flags.backend_server_name);
    if (flags.Given("backend") || current != nullptr) {
      if (absl::Status s = CheckBackendTls(*b); !s.ok()) return s;
    }
    req.add_update_mask("backend");
  }
  if (flags.Given("enable") || flags.Given("disable")) {
    d->set_enabled(flags.Given("enable"));
    req.add_update_mask("enabled");
  }
  const struct {
    const char* field;
    const char* flag;
    const std::vector<std::string>* paths;
    google::protobuf::RepeatedPtrField<std::string>* out;
    const google::protobuf::RepeatedPtrField<std::string>* now;
  } lists[] = {
      {"user_paths", "--user-path", &flags.user_paths, d->mutable_paths()->mutable_user(),
       current != nullptr ? &current->paths().user() : nullptr},
      {"admin_paths", "--admin-path", &flags.admin_paths, d->mutable_paths()->mutable_admin(),
       current != nullptr ? &current->paths().admin() : nullptr},
      {"common_paths", "--common-path", &flags.common_paths, d->mutable_paths()->mutable_common(),
       current != nullptr ? &current->paths().common() : nullptr},
  };
  bool paths = false;
  for (const auto& l : lists) {
    if (flags.Given(l.field)) {
      if (absl::Status s = PathsOf(l.flag, *l.paths, l.out); !s.ok()) return s;
      paths = true;
    } else if (l.now != nullptr) {
      *l.out = *l.now;
    }
  }
  if (paths) {
    req.add_update_mask("paths");
  } else {
    d->clear_paths();
  }
  if (req.update_mask().empty()) {
    return ArgumentError(
        "nothing to change: give --service, --backend, --backend-tls, --backend-ca, "
        "--backend-server-name, --enable, --disable, --user-path, --admin-path or "
        "--common-path");
  }
  return req;
}

absl::StatusOr<ottpb::AddAccountRequest> AddAccountRequestOf(const OttAccountFlags& flags) {
  for (const char* flag : {"enable", "disable", "unlock"}) {
    if (flags.Given(flag)) {
      return FlagError(absl::StrCat("--", flag), "for update only");
    }
  }
  if (!flags.Given("password")) {
    return ArgumentError("a password is required: --password-file FILE or --password-stdin");
  }
  absl::StatusOr<std::string> password = ReadAccountPassword(flags);
  if (!password.ok()) return password.status();
  ottpb::AddAccountRequest req;
  req.mutable_account()->set_name(flags.name);
  req.mutable_account()->set_password(*std::move(password));
  req.mutable_account()->set_enabled(!flags.disabled);
  return req;
}

absl::StatusOr<ottpb::UpdateAccountRequest> UpdateAccountRequestOf(const OttAccountFlags& flags) {
  if (flags.Given("disabled")) return FlagError("--disabled", "for add only (use --disable)");
  if (absl::Status s = CheckEnableDisable(flags); !s.ok()) return s;
  ottpb::UpdateAccountRequest req;
  req.mutable_account()->set_name(flags.name);
  if (flags.Given("password")) {
    absl::StatusOr<std::string> password = ReadAccountPassword(flags);
    if (!password.ok()) return password.status();
    req.mutable_account()->set_password(*std::move(password));
    req.add_update_mask("password");
  }
  if (flags.Given("enable") || flags.Given("disable")) {
    req.mutable_account()->set_enabled(flags.Given("enable"));
    req.add_update_mask("enabled");
  }
  if (flags.Given("unlock")) req.add_update_mask("unlock");
  if (req.update_mask().empty()) {
    return ArgumentError(
        "nothing to change: give --password-file, --password-stdin, --enable, --disable or "
        "--unlock");
  }
  return req;
}

std::string BackendUrl(const ottpb::Backend& b) {
  const uint32_t port = b.port() != 0 ? b.port() : (b.tls() ? 443 : 80);
  const bool v6 = b.host().find(':') != std::string::npos;
  return absl::StrCat(b.tls() ? "https://" : "http://", v6 ? "[" : "", b.host(), v6 ? "]" : "", ":",
                      port);
}

Table DomainsTable(const ottpb::ListDomainsResponse& resp) {
  Table t{{"FQDN", "SERVICE", "BACKEND", "CA FILE", "SERVER NAME", "STATE", "CERTIFICATE", "PATHS",
           "UPDATED"},
          {}};
  for (const ottpb::Domain& d : resp.domains()) {
    t.rows.push_back({d.fqdn(), ServiceName(d.service()), BackendUrl(d.backend()),
                      OrDash(d.backend().ca_file()), OrDash(d.backend().server_name()),
                      d.enabled() ? "enabled" : "disabled", d.has_certificate() ? "yes" : "missing",
                      HasOwnPaths(d.paths()) ? "own" : "default",
                      FormatTime(d.update_time_unix())});
  }
  return t;
}

Table ServicesTable(const ottpb::ListServicesResponse& resp) {
  Table t{{"SERVICE", "USER PATHS", "ADMIN PATHS", "COMMON PATHS", "DESCRIPTION"}, {}};
  for (const ottpb::ServiceInfo& s : resp.services()) {
    t.rows.push_back({s.name().empty() ? ServiceName(s.service()) : s.name(),
                      JoinPaths(s.default_paths().user()), JoinPaths(s.default_paths().admin()),
                      JoinPaths(s.default_paths().common()), OrDash(s.description())});
  }
  return t;
}

Table AccountsTable(const ottpb::ListAccountsResponse& resp, int64_t now_unix) {
  Table t{{"NAME", "STATE", "LOCKED UNTIL", "LAST LOGIN", "UPDATED"}, {}};
  for (const ottpb::Account& a : resp.accounts()) {
    const bool locked = a.locked_until_unix() > now_unix;
    std::string state = a.enabled() ? "enabled" : "disabled";
    if (locked) state += ",locked";
    t.rows.push_back({a.name(), state, locked ? FormatTime(a.locked_until_unix()) : "-",
                      FormatTime(a.last_login_unix()), FormatTime(a.update_time_unix())});
  }
  return t;
}

void RegisterOtt(CommandLine& cli) {
  CLI::App* ott = cli.Noun(
      "ott", "OTT access to the iPBX's web applications: domains, services, admin accounts");

  CLI::App* domain = ott->add_subcommand("domain", "the FQDNs served and where they lead");
  domain->require_subcommand(1);
  auto add = std::make_shared<DomainCommand>();
  CLI::App* add_cmd = domain->add_subcommand("add", "add a domain");
  add->Register(add_cmd, false);
  cli.On(add_cmd, [add](Context& c) { return AddDomain(c, add->Parsed()); });
  auto update = std::make_shared<DomainCommand>();
  CLI::App* update_cmd =
      domain->add_subcommand("update", "change a domain (only what the flags give)");
  update->Register(update_cmd, true);
  cli.On(update_cmd, [update](Context& c) { return UpdateDomain(c, update->Parsed()); });
  auto fqdn = std::make_shared<std::string>();
  CLI::App* delete_cmd = domain->add_subcommand("delete", "delete a domain");
  delete_cmd->add_option("fqdn", *fqdn, "the domain's FQDN")->required();
  cli.On(delete_cmd, [fqdn](Context& c) { return DeleteDomain(c, *fqdn); });
  cli.On(domain->add_subcommand("list", "list the domains"), ListDomains);

  CLI::App* service = ott->add_subcommand("service", "the applications and their default paths");
  service->require_subcommand(1);
  cli.On(service->add_subcommand("list", "list the services and the paths each lets through"),
         ListServices);

  CLI::App* account = ott->add_subcommand("account", "the accounts of rwg's login (admin paths)");
  account->require_subcommand(1);
  auto account_add = std::make_shared<AccountCommand>();
  CLI::App* account_add_cmd = account->add_subcommand("add", "add an account");
  account_add->Register(account_add_cmd, false);
  cli.On(account_add_cmd,
         [account_add](Context& c) { return AddAccount(c, account_add->Parsed()); });
  auto account_update = std::make_shared<AccountCommand>();
  CLI::App* account_update_cmd =
      account->add_subcommand("update", "change an account (only what the flags give)");
  account_update->Register(account_update_cmd, true);
  cli.On(account_update_cmd,
         [account_update](Context& c) { return UpdateAccount(c, account_update->Parsed()); });
  auto name = std::make_shared<std::string>();
  CLI::App* account_delete_cmd = account->add_subcommand("delete", "delete an account");
  account_delete_cmd->add_option("name", *name, "the account's name")->required();
  cli.On(account_delete_cmd, [name](Context& c) { return DeleteAccount(c, *name); });
  cli.On(account->add_subcommand("list", "list the accounts (never their passwords)"),
         ListAccounts);
}

}  // namespace rwg::rwgctl
