// rwg.tma.v1.TmaService (see service.h): download servers, the Remote Worker CSV (export and
// check), deployments (create, watch, resume), events and the inventory. About 800 lines
// because CreateDeployment checks a whole deployment before anything is written (servers,
// CSV, files, the gateway's settings, the devices) and each check names what is wrong; the
// CSV's rules are in rw_csv.cc, the phone files in phone_file.cc, the work in runner.cc.

#include "services/tma/service.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/control/device_writes.h"
#include "services/core/devices.h"
#include "services/core/keys.h"
#include "services/core/phone_fetches.h"
#include "services/core/registrations.h"
#include "services/tma/mac.h"

namespace rwg::tma {
namespace {

namespace adminpb = ::rwg::admin::v1;

constexpr char kDefaultLogin[] = "mngt_ftp_67xxi";
constexpr size_t kListedProblems = 50;

bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }

// A file name phones and servers take: [A-Za-z0-9._-], not starting with '.', 1..255.
bool IsFileName(const std::string& n) {
  return !n.empty() && n.size() <= 255 && n[0] != '.' &&
         std::all_of(n.begin(), n.end(), IsNameChar);
}

bool IsPrintable(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
}

pb::CsvProblem ToProto(const CsvProblem& p) {
  pb::CsvProblem out;
  out.set_row(p.row);
  out.set_column(p.column);
  out.set_message(p.message);
  out.set_warning(p.warning);
  return out;
}

std::string Describe(const CsvProblem& p) {
  std::string where = p.row > 0 ? absl::StrCat("row ", p.row) : std::string("file");
  if (!p.column.empty()) absl::StrAppend(&where, ", column \"", p.column, "\"");
  return absl::StrCat(where, ": ", p.message);
}

// The CSV's errors as one message: every one of them up to a limit, then how many more.
absl::Status CsvRefusal(const CheckedCsv& c) {
  std::vector<std::string> lines;
  size_t errors = 0;
  for (const CsvProblem& p : c.problems) {
    if (p.warning) continue;
    if (++errors <= kListedProblems) lines.push_back(Describe(p));
  }
  if (errors > kListedProblems) {
    lines.push_back(absl::StrCat("and ", errors - kListedProblems, " more"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the CSV has ", errors, errors == 1 ? " error" : " errors",
                   "; nothing deployed:\n", absl::StrJoin(lines, "\n")));
}

// Fills the system data the request leaves empty from the gateway's.
SystemData Merge(const pb::SystemData& given, const SystemData& defaults) {
  SystemData s = defaults;
  if (!given.sip_proxy_ip().empty()) s.sip_proxy_ip = given.sip_proxy_ip();
  if (!given.sip_registrar_ip().empty()) {
    s.sip_registrar_ip = given.sip_registrar_ip();
  } else if (!given.sip_proxy_ip().empty()) {
    s.sip_registrar_ip = given.sip_proxy_ip();
  }
  if (!given.https_server().empty()) s.https_server = given.https_server();
  if (!given.https_path().empty()) s.https_path = given.https_path();
  if (!given.keyboard_script().empty()) s.keyboard_script = given.keyboard_script();
  return s;
}

absl::Status CheckSystem(const pb::SystemData& s) {
  const std::pair<const char*, const std::string*> fields[] = {
      {"system.sip_proxy_ip", &s.sip_proxy_ip()},
      {"system.sip_registrar_ip", &s.sip_registrar_ip()},
      {"system.https_server", &s.https_server()},
      {"system.https_path", &s.https_path()},
      {"system.keyboard_script", &s.keyboard_script()}};
  for (const auto& [name, value] : fields) {
    if (value->size() > 1024 || !IsPrintable(*value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": at most 1024 printable characters, no line break"));
    }
  }
  return absl::OkStatus();
}

bool Matches(const pb::InventoryEntry& e, const pb::InventoryFilter& f,
             const std::set<std::string>& macs) {
  if (!f.site().empty() && e.site() != f.site()) return false;
  if (!macs.empty() && macs.count(e.mac()) == 0) return false;
  if (!f.device().empty() && e.device() != f.device()) return false;
  if (f.state() != pb::PHONE_STATE_UNSPECIFIED && e.state() != f.state()) return false;
  return true;
}

// Deployment ids are what CreateDeployment makes (RandomHex of 8 bytes); anything else is
// refused before it becomes part of a Redis key.
absl::Status CheckDeploymentId(const char* field, const std::string& id) {
  if (id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
      })) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": a deployment id (16 lower-case hex digits)"));
}

// The devices a CSV names, as its check looks them up: read from Redis in batches (only
// those named: a deployment of a few phones does not read every device), kept in `found` by
// set-side user name; a failure to read them is kept in `failure` (the check then finds
// none, and the caller answers with the failure instead).
DeviceLookup LookupIn(core::DeviceDirectory& directory, std::map<std::string, DeviceFacts>& found,
                      absl::Status& failure) {
  return [&](const std::vector<std::string>& users) {
    std::vector<std::optional<DeviceFacts>> answers(users.size());
    absl::StatusOr<std::vector<std::optional<core::DeviceSecrets>>> read =
        directory.BySetUsernames(users, /*icp_passwords=*/false);
    if (!read.ok()) {
      failure = read.status();
      return answers;
    }
    for (size_t i = 0; i < users.size() && i < read->size(); ++i) {
      std::optional<core::DeviceSecrets>& d = (*read)[i];
      if (!d.has_value()) continue;
      DeviceFacts f;
      f.set_username = users[i];
      f.set_password = std::move(d->set_password);
      f.mac = std::move(d->mac);
      f.site = std::move(d->site);
      answers[i] = f;
      found[users[i]] = std::move(f);
    }
    return answers;
  };
}

bool EmptyFilter(const pb::InventoryFilter& f) {
  return f.site().empty() && f.macs().empty() && f.device().empty() &&
         f.state() == pb::PHONE_STATE_UNSPECIFIED;
}

}  // namespace

absl::Status ValidateServer(const pb::Server& s) {
  if (s.name().empty() || s.name().size() > 64 ||
      !std::all_of(s.name().begin(), s.name().end(), IsNameChar)) {
    return absl::InvalidArgumentError("name: 1 to 64 characters of [A-Za-z0-9._-]");
  }
  const bool ftp = s.kind() == pb::SERVER_KIND_FTP || s.kind() == pb::SERVER_KIND_FTPS;
  if (!ftp && s.kind() != pb::SERVER_KIND_LOCAL) {
    return absl::InvalidArgumentError("kind: local, ftp or ftps");
  }
  if (ftp) {
    if (s.address().empty() || s.address().size() > 253 || !IsPrintable(s.address()) ||
        s.address().find_first_of(" /@?#") != std::string::npos) {
      return absl::InvalidArgumentError("address: a host name or IP address");
    }
    if (s.port() > 65535) return absl::InvalidArgumentError("port: 1 to 65535");
    if (s.directory().size() > 1024 || !IsPrintable(s.directory()) ||
        (!s.directory().empty() && s.directory()[0] != '/') ||
        absl::StrContains(absl::StrCat(s.directory(), "/"), "/../")) {
      return absl::InvalidArgumentError("directory: an absolute path without '..'");
    }
    if (s.login().size() > 128 || !IsPrintable(s.login())) {
      return absl::InvalidArgumentError("login: at most 128 printable characters");
    }
    if (s.password().size() > 256 || !IsPrintable(s.password())) {
      return absl::InvalidArgumentError("password: at most 256 printable characters");
    }
    if (!s.ca_file().empty() && s.kind() != pb::SERVER_KIND_FTPS) {
      return absl::InvalidArgumentError("ca_file: only for an ftps server");
    }
    if (!s.ca_file().empty() && (!IsPrintable(s.ca_file()) || s.ca_file()[0] != '/')) {
      return absl::InvalidArgumentError("ca_file: an absolute path on the tma host");
    }
  } else {
    if (!s.address().empty() || s.port() != 0 || !s.directory().empty() || !s.ca_file().empty() ||
        !s.password().empty()) {
      return absl::InvalidArgumentError(
          "kind local: address, port, directory, password and ca_file do not apply (the "
          "provisioning store is configured on tma itself)");
    }
  }
  std::set<std::string> seen;
  for (const std::string& site : s.sites()) {
    if (site.empty() || site.size() > 64 || !IsPrintable(site)) {
      return absl::InvalidArgumentError("sites: each 1 to 64 printable characters");
    }
    if (!seen.insert(site).second) {
      return absl::InvalidArgumentError(absl::StrCat("sites: ", site, " twice"));
    }
  }
  return absl::OkStatus();
}

TmaServiceImpl::TmaServiceImpl(TmaStore& store, Runner& runner, TargetFactory targets,
                               control::RedisControlStore& control, control::Authenticator& auth,
                               core::RedisClient& redis, const core::SecretBox& box,
                               core::Clock& clock, core::Random& rng,
                               prometheus::Registry& registry, ServiceLimits limits)
    : store_(store),
      runner_(runner),
      targets_(std::move(targets)),
      control_(control),
      redis_(redis),
      box_(box),
      directory_(redis, box),
      clock_(clock),
      rng_(rng),
      limits_(limits),
      rpc_(auth, registry, "rwg_tma", "Deployment API"),
      inventory_(prometheus::BuildGauge()
                     .Name("rwg_tma_inventory_phones")
                     .Help("Phones in the inventory by state (deployed, fetched, connected)")
                     .Register(registry)) {}

absl::StatusOr<TmaServiceImpl::Gateway> TmaServiceImpl::LoadGateway() {
  absl::StatusOr<adminpb::GatewayConfig> c = control::LoadGatewayConfig(control_.config(), nullptr);
  if (!c.ok()) return c.status();
  Gateway g;
  g.system.sip_proxy_ip = c->public_name();
  g.system.sip_registrar_ip = c->public_name();
  g.system.https_server = c->public_name();
  absl::StatusOr<std::optional<std::string>> stored = control_.hash().Get();
  if (!stored.ok()) return stored.status();
  if (stored->has_value()) {
    nlohmann::json j = nlohmann::json::parse(**stored, nullptr, false);
    if (j.is_object() && j.contains("key") && j["key"].is_string()) {
      absl::StatusOr<std::string> key = box_.Open(j["key"].get<std::string>(), "hash");
      if (key.ok()) g.system.https_path = absl::StrCat(*key, "/ftp_67xxi");
    }
  }
  if (c->ports().sip_tls() != 0) g.file.sip_port = static_cast<int>(c->ports().sip_tls());
  if (c->icp().xml_listen_port() != 0) {
    g.file.https_port = static_cast<int>(c->icp().xml_listen_port());
  }
  switch (c->sip().set_side_inbound()) {
    case adminpb::SRTP_OR_RTP:
      g.file.srtp_mode = 1;
      break;
    case adminpb::RTP_ONLY:
      g.file.srtp_mode = 0;
      break;
    default:
      g.file.srtp_mode = 2;
  }
  return g;
}

absl::StatusOr<std::vector<DeviceFacts>> TmaServiceImpl::Devices() {
  absl::StatusOr<std::vector<adminpb::Device>> list = control_.ListDevices();
  if (!list.ok()) return list.status();
  std::vector<DeviceFacts> out;
  out.reserve(list->size());
  for (const adminpb::Device& d : *list) {
    DeviceFacts f;
    f.set_username = d.set_username();
    f.mac = d.mac();
    f.site = d.site();
    absl::StatusOr<std::string> p =
        box_.Open(d.set_password(), core::DeviceSecretContext(d.set_username(), "set_password"));
    if (!p.ok()) {
      return absl::Status(p.status().code(),
                          absl::StrCat("device record ", d.set_username(),
                                       ", set_password: ", p.status().message()));
    }
    f.set_password = *std::move(p);
    out.push_back(std::move(f));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Servers

grpc::Status TmaServiceImpl::AddServer(grpc::ServerContext* ctx, const pb::AddServerRequest* req,
                                       pb::Server* resp) {
  return rpc_.Run("AddServer", ctx, [&]() -> absl::Status {
    pb::Server s = req->server();
    s.clear_has_password();
    s.clear_create_time_unix();
    s.clear_update_time_unix();
    if (absl::Status v = ValidateServer(s); !v.ok()) return v;
    if (s.kind() != pb::SERVER_KIND_LOCAL) {
      if (s.port() == 0) s.set_port(21);
      if (s.directory().empty()) s.set_directory("/");
    }
    if (s.login().empty()) s.set_login(kDefaultLogin);
    const int64_t now = absl::ToUnixSeconds(clock_.Now());
    s.set_create_time_unix(now);
    s.set_update_time_unix(now);
    absl::StatusOr<bool> added = store_.AddServer(s);
    if (!added.ok()) return added.status();
    if (!*added) {
      return absl::AlreadyExistsError(absl::StrCat("download server ", s.name(), " exists"));
    }
    absl::StatusOr<std::optional<pb::Server>> back = store_.GetServer(s.name(), false);
    if (!back.ok()) return back.status();
    if (back->has_value()) *resp = **back;
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::UpdateServer(grpc::ServerContext* ctx,
                                          const pb::UpdateServerRequest* req, pb::Server* resp) {
  return rpc_.Run("UpdateServer", ctx, [&]() -> absl::Status {
    if (req->update_mask().empty()) {
      return absl::InvalidArgumentError(
          "update_mask: name the fields to change (address, port, directory, login, password, "
          "sites, ca_file)");
    }
    absl::StatusOr<std::optional<pb::Server>> cur = store_.GetServer(req->server().name(), true);
    if (!cur.ok()) return cur.status();
    if (!cur->has_value()) {
      return absl::NotFoundError(absl::StrCat("no download server ", req->server().name()));
    }
    pb::Server s = **cur;
    const pb::Server& in = req->server();
    for (const std::string& f : req->update_mask()) {
      if (f == "address") {
        s.set_address(in.address());
      } else if (f == "port") {
        s.set_port(in.port() == 0 && s.kind() != pb::SERVER_KIND_LOCAL ? 21 : in.port());
      } else if (f == "directory") {
        s.set_directory(
            in.directory().empty() && s.kind() != pb::SERVER_KIND_LOCAL ? "/" : in.directory());
      } else if (f == "login") {
        s.set_login(in.login().empty() ? kDefaultLogin : in.login());
      } else if (f == "password") {
        s.set_password(in.password());
      } else if (f == "sites") {
        *s.mutable_sites() = in.sites();
      } else if (f == "ca_file") {
        s.set_ca_file(in.ca_file());
      } else {
        return absl::InvalidArgumentError(absl::StrCat("update_mask: ", f, " cannot be changed"));
      }
    }
    if (absl::Status v = ValidateServer(s); !v.ok()) return v;
    s.set_has_password(!s.password().empty());
    s.set_update_time_unix(absl::ToUnixSeconds(clock_.Now()));
    if (absl::Status w = store_.ReplaceServer(s); !w.ok()) return w;
    absl::StatusOr<std::optional<pb::Server>> back = store_.GetServer(s.name(), false);
    if (!back.ok()) return back.status();
    if (back->has_value()) *resp = **back;
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::DeleteServer(grpc::ServerContext* ctx,
                                          const pb::DeleteServerRequest* req,
                                          pb::DeleteServerResponse*) {
  return rpc_.Run("DeleteServer", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::vector<std::string>> active = store_.Active();
    if (!active.ok()) return active.status();
    for (const std::string& id : *active) {
      absl::StatusOr<std::optional<pb::Deployment>> d = store_.GetDeployment(id);
      if (d.ok() && d->has_value() && (*d)->server() == req->name()) {
        return absl::FailedPreconditionError(
            absl::StrCat("download server ", req->name(), " has deployment ", id, " to run"));
      }
    }
    absl::StatusOr<bool> deleted = store_.DeleteServer(req->name());
    if (!deleted.ok()) return deleted.status();
    if (!*deleted) return absl::NotFoundError(absl::StrCat("no download server ", req->name()));
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::ListServers(grpc::ServerContext* ctx, const pb::ListServersRequest*,
                                         pb::ListServersResponse* resp) {
  return rpc_.Run("ListServers", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::vector<pb::Server>> list = store_.ListServers();
    if (!list.ok()) return list.status();
    for (pb::Server& s : *list) *resp->add_servers() = std::move(s);
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// CSV

grpc::Status TmaServiceImpl::ExportCsv(grpc::ServerContext* ctx, const pb::ExportCsvRequest* req,
                                       pb::ExportCsvResponse* resp) {
  return rpc_.Run("ExportCsv", ctx, [&]() -> absl::Status {
    if (req->site().empty()) return absl::InvalidArgumentError("site: required");
    absl::StatusOr<Gateway> g = LoadGateway();
    if (!g.ok()) return g.status();
    absl::StatusOr<std::vector<DeviceFacts>> all = Devices();
    if (!all.ok()) return all.status();
    std::vector<DeviceFacts> site;
    for (DeviceFacts& d : *all) {
      if (d.site == req->site()) site.push_back(std::move(d));
    }
    if (site.empty()) {
      return absl::NotFoundError(absl::StrCat("site ", req->site(), ": no devices"));
    }
    ExportedCsv out = ExportRemoteWorkerCsv(site, g->system, req->system_columns());
    resp->set_csv(out.csv);
    for (const std::string& user : out.skipped) {
      resp->add_warnings(absl::StrCat("device ", user, ": no MAC address, left out"));
    }
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::CheckCsv(grpc::ServerContext* ctx, const pb::CheckCsvRequest* req,
                                      pb::CheckCsvResponse* resp) {
  return rpc_.Run("CheckCsv", ctx, [&]() -> absl::Status {
    if (absl::Status s = CheckSystem(req->system()); !s.ok()) return s;
    absl::StatusOr<Gateway> g = LoadGateway();
    if (!g.ok()) return g.status();
    std::map<std::string, DeviceFacts> by_user;
    absl::Status failure;
    CheckedCsv c = CheckRemoteWorkerCsv(req->csv(), Merge(req->system(), g->system),
                                        LookupIn(directory_, by_user, failure), limits_.csv);
    if (!failure.ok()) return failure;
    resp->set_phones(c.ok() ? static_cast<int32_t>(c.phones.size()) : 0);
    for (const CsvProblem& p : c.problems) *resp->add_problems() = ToProto(p);
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// Deployments

grpc::Status TmaServiceImpl::CreateDeployment(
    grpc::ServerContext* ctx, grpc::ServerReader<pb::CreateDeploymentRequest>* reader,
    pb::Deployment* resp) {
  return rpc_.Run("CreateDeployment", ctx, [&]() -> absl::Status {
    pb::CreateDeploymentRequest msg;
    if (!reader->Read(&msg) || !msg.has_header()) {
      return absl::InvalidArgumentError("the first message must be the deployment's header");
    }
    const pb::DeploymentHeader header = msg.header();
    struct Extra {
      std::string name;
      std::string role;
      uint64_t size = 0;
      std::string content;
    };
    std::vector<Extra> extras;
    uint64_t total = header.csv().size();
    while (reader->Read(&msg)) {
      if (msg.has_file()) {
        if (!extras.empty() && extras.back().content.size() != extras.back().size) {
          return absl::InvalidArgumentError(
              absl::StrCat("file ", extras.back().name, ": ", extras.back().content.size(),
                           " bytes sent, ", extras.back().size, " announced"));
        }
        const pb::FileStart& f = msg.file();
        if (!IsFileName(f.name())) {
          return absl::InvalidArgumentError(absl::StrCat(
              "file \"", f.name(),
              "\": not a file name phones can fetch ([A-Za-z0-9._-], not starting with '.')"));
        }
        static const std::set<std::string> kRoles = {"global", "firmware", "certificate", "other"};
        if (kRoles.count(f.role()) == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "file ", f.name(), ": role must be global, firmware, certificate or other"));
        }
        if (f.size() > limits_.max_file_bytes) {
          return absl::ResourceExhaustedError(
              absl::StrCat("file ", f.name(), ": over ", limits_.max_file_bytes, " bytes"));
        }
        if (extras.size() >= limits_.max_extra_files) {
          return absl::ResourceExhaustedError(
              absl::StrCat("more than ", limits_.max_extra_files, " files besides the CSV"));
        }
        for (const Extra& e : extras) {
          if (absl::AsciiStrToLower(e.name) == absl::AsciiStrToLower(f.name())) {
            return absl::InvalidArgumentError(absl::StrCat("file ", f.name(), ": given twice"));
          }
        }
        extras.push_back({f.name(), f.role(), f.size(), {}});
        extras.back().content.reserve(f.size());
      } else if (msg.part_case() == pb::CreateDeploymentRequest::kChunk) {
        if (extras.empty()) return absl::InvalidArgumentError("content before any file");
        Extra& e = extras.back();
        if (e.content.size() + msg.chunk().size() > e.size) {
          return absl::InvalidArgumentError(absl::StrCat(
              "file ", e.name, ": more content than its announced ", e.size, " bytes"));
        }
        total += msg.chunk().size();
        if (total > limits_.max_total_bytes) {
          return absl::ResourceExhaustedError(
              absl::StrCat("the deployment is over ", limits_.max_total_bytes, " bytes"));
        }
        e.content += msg.chunk();
      } else {
        return absl::InvalidArgumentError("only one header, at the start");
      }
    }
    if (!extras.empty() && extras.back().content.size() != extras.back().size) {
      return absl::InvalidArgumentError(absl::StrCat("file ", extras.back().name, ": ",
                                                     extras.back().content.size(), " bytes sent, ",
                                                     extras.back().size, " announced"));
    }
    if (ctx->IsCancelled()) return absl::CancelledError("the client went away");
    if (absl::Status s = CheckSystem(header.system()); !s.ok()) return s;
    if (header.description().size() > 256 || !IsPrintable(header.description())) {
      return absl::InvalidArgumentError("description: at most 256 printable characters");
    }
    if (!header.global_file().empty() && header.global_file() != "aastra.cfg" &&
        header.global_file() != "startup.cfg") {
      return absl::InvalidArgumentError("global_file: aastra.cfg or startup.cfg");
    }
    int globals = 0;
    for (const Extra& e : extras) {
      if (e.role == "global") {
        ++globals;
        if (!header.global_file().empty() && e.name != header.global_file()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "file ", e.name, ": the global data file is named ", header.global_file()));
        }
        if (e.name != "aastra.cfg" && e.name != "startup.cfg") {
          return absl::InvalidArgumentError(
              absl::StrCat("file ", e.name, ": a global data file is aastra.cfg or startup.cfg"));
        }
      }
    }
    if (globals > 1) return absl::InvalidArgumentError("one global data file at most");

    absl::StatusOr<std::optional<pb::Server>> server = store_.GetServer(header.server(), false);
    if (!server.ok()) return server.status();
    if (!server->has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("server: no download server ", header.server()));
    }
    absl::StatusOr<Gateway> g = LoadGateway();
    if (!g.ok()) return g.status();
    const SystemData system = Merge(header.system(), g->system);
    std::map<std::string, DeviceFacts> by_user;
    absl::Status failure;
    CheckedCsv c = CheckRemoteWorkerCsv(header.csv(), system,
                                        LookupIn(directory_, by_user, failure), limits_.csv);
    if (!failure.ok()) return failure;
    if (!c.ok()) return CsvRefusal(c);
    if (system.https_path.empty()) {
      return absl::FailedPreconditionError(
          "no provisioning hash key: generate one (rwgctl hash generate) or give the https path");
    }

    std::vector<PlannedFile> plan;
    std::vector<std::string> contents;
    std::set<std::string> names;
    PhoneFileOptions options = g->file;
    for (const Extra& e : extras) {
      if (e.role == "certificate" && options.trusted_certificate.empty()) {
        options.trusted_certificate = e.name;
      }
    }
    // The shared files first: a phone fetching its own file early finds what it names.
    for (const char* role : {"certificate", "global", "firmware", "other"}) {
      for (Extra& e : extras) {
        if (e.role != role) continue;
        PlannedFile f;
        f.name = e.name;
        f.role = e.role;
        f.sha256 = core::Sha256Hex(e.content);
        f.size = e.content.size();
        names.insert(absl::AsciiStrToUpper(e.name));
        plan.push_back(std::move(f));
        contents.push_back(std::move(e.content));
      }
    }
    pb::Deployment record;
    const std::set<std::string> server_sites((*server)->sites().begin(), (*server)->sites().end());
    for (const CsvProblem& p : c.problems) *record.add_warnings() = ToProto(p);
    for (const Phone& phone : c.phones) {
      PlannedFile f;
      f.name = absl::StrCat(phone.mac, ".cfg");
      if (!names.insert(absl::AsciiStrToUpper(f.name)).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("row ", phone.row, ": ", f.name, " is also one of the files given"));
      }
      std::string content = RenderPhoneFile(phone.params, options);
      f.role = "phone";
      f.sha256 = core::Sha256Hex(content);
      f.size = content.size();
      f.mac = phone.mac;
      f.device = phone.user;
      auto d = by_user.find(phone.user);
      if (d != by_user.end()) f.site = d->second.site;
      if (!server_sites.empty() && server_sites.count(f.site) == 0) {
        CsvProblem w{phone.row, "",
                     absl::StrCat("device ", phone.user, " is of site \"", f.site,
                                  "\", which server ", header.server(), " does not serve"),
                     true};
        *record.add_warnings() = ToProto(w);
      }
      plan.push_back(std::move(f));
      contents.push_back(std::move(content));
    }
    record.set_id(core::RandomHex(rng_, 8));
    record.set_server(header.server());
    record.set_description(header.description());
    record.set_phones(static_cast<int32_t>(c.phones.size()));
    if (absl::Status s = store_.CreateDeployment(record, plan, contents); !s.ok()) return s;
    runner_.Wake();
    absl::StatusOr<std::optional<pb::Deployment>> back = store_.GetDeployment(record.id());
    if (!back.ok()) return back.status();
    if (back->has_value()) *resp = **back;
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::GetDeployment(grpc::ServerContext* ctx,
                                           const pb::GetDeploymentRequest* req,
                                           pb::Deployment* resp) {
  return rpc_.Run("GetDeployment", ctx, [&]() -> absl::Status {
    if (absl::Status v = CheckDeploymentId("id", req->id()); !v.ok()) return v;
    absl::StatusOr<std::optional<pb::Deployment>> d = store_.GetDeployment(req->id());
    if (!d.ok()) return d.status();
    if (!d->has_value()) return absl::NotFoundError(absl::StrCat("no deployment ", req->id()));
    *resp = **d;
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::ListDeployments(grpc::ServerContext* ctx,
                                             const pb::ListDeploymentsRequest*,
                                             pb::ListDeploymentsResponse* resp) {
  return rpc_.Run("ListDeployments", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::vector<pb::Deployment>> list = store_.ListDeployments();
    if (!list.ok()) return list.status();
    for (pb::Deployment& d : *list) {
      d.clear_warnings();  // GetDeployment has them
      *resp->add_deployments() = std::move(d);
    }
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::WatchDeployment(grpc::ServerContext* ctx,
                                             const pb::WatchDeploymentRequest* req,
                                             grpc::ServerWriter<pb::Deployment>* writer) {
  return rpc_.Run("WatchDeployment", ctx, [&]() -> absl::Status {
    if (absl::Status v = CheckDeploymentId("id", req->id()); !v.ok()) return v;
    std::string last;
    uint64_t seen = runner_.Ends();
    while (!ctx->IsCancelled()) {
      absl::StatusOr<std::optional<pb::Deployment>> d = store_.GetDeployment(req->id());
      if (!d.ok()) return d.status();
      if (!d->has_value()) return absl::NotFoundError(absl::StrCat("no deployment ", req->id()));
      std::string now = (*d)->SerializeAsString();
      if (now != last) {
        if (!writer->Write(**d)) return absl::OkStatus();
        last = std::move(now);
      }
      if ((*d)->state() == pb::DEPLOYMENT_STATE_COMPLETED ||
          (*d)->state() == pb::DEPLOYMENT_STATE_FAILED) {
        return absl::OkStatus();
      }
      if (shutting_down_.load()) return absl::UnavailableError("tma is stopping; watch again");
      // Progress every 200 ms; the end at once when this instance ran it (another
      // instance's within 200 ms).
      seen = runner_.AwaitEnd(seen, absl::Milliseconds(200));
    }
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::ResumeDeployment(grpc::ServerContext* ctx,
                                              const pb::ResumeDeploymentRequest* req,
                                              pb::Deployment* resp) {
  return rpc_.Run("ResumeDeployment", ctx, [&]() -> absl::Status {
    if (absl::Status v = CheckDeploymentId("id", req->id()); !v.ok()) return v;
    absl::StatusOr<std::optional<pb::Deployment>> d = store_.GetDeployment(req->id());
    if (!d.ok()) return d.status();
    if (!d->has_value()) return absl::NotFoundError(absl::StrCat("no deployment ", req->id()));
    absl::StatusOr<bool> resumed = store_.Resume(req->id());
    if (!resumed.ok()) return resumed.status();
    if (!*resumed) {
      return absl::FailedPreconditionError(absl::StrCat("deployment ", req->id(), " is ",
                                                        pb::DeploymentState_Name((*d)->state()),
                                                        "; only a failed deployment is resumed"));
    }
    store_.RecordEvent(req->id(), "deployment.resume", "", "asked by an admin");
    runner_.Wake();
    d = store_.GetDeployment(req->id());
    if (!d.ok()) return d.status();
    if (d->has_value()) *resp = **d;
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::ListEvents(grpc::ServerContext* ctx, const pb::ListEventsRequest* req,
                                        pb::ListEventsResponse* resp) {
  return rpc_.Run("ListEvents", ctx, [&]() -> absl::Status {
    if (req->limit() < 0 || req->limit() > 10000) {
      return absl::InvalidArgumentError("limit: 0 (1000) to 10000");
    }
    if (!req->deployment().empty()) {
      if (absl::Status v = CheckDeploymentId("deployment", req->deployment()); !v.ok()) return v;
    }
    absl::StatusOr<std::vector<pb::Event>> events =
        store_.Events(req->deployment(), req->after_seq(), req->limit() == 0 ? 1000 : req->limit());
    if (!events.ok()) return events.status();
    for (pb::Event& e : *events) *resp->add_events() = std::move(e);
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// Inventory

absl::StatusOr<std::vector<pb::InventoryEntry>> TmaServiceImpl::Inventory(
    const pb::InventoryFilter& filter) {
  std::set<std::string> macs;
  for (const std::string& m : filter.macs()) {
    absl::StatusOr<std::string> n = NormalizeMac(m);
    if (!n.ok()) return absl::InvalidArgumentError(absl::StrCat("macs: ", n.status().message()));
    macs.insert(*n);
  }
  absl::StatusOr<std::vector<pb::InventoryEntry>> all = store_.Inventory();
  if (!all.ok()) return all.status();
  // Fetched: provisioning's record of each MAC file served; connected: registered now.
  std::vector<std::string> all_macs;
  for (const pb::InventoryEntry& e : *all) all_macs.push_back(e.mac());
  absl::StatusOr<std::map<std::string, core::PhoneFetch>> fetches =
      core::PhoneFetches(redis_).Get(all_macs);
  if (!fetches.ok()) return fetches.status();
  std::map<std::string, int64_t> fetched;
  for (const auto& [mac, f] : *fetches) fetched[mac] = absl::ToUnixMillis(f.time);
  core::BindingStore bindings(redis_);
  absl::StatusOr<std::vector<core::Binding>> active = bindings.ListActive(clock_.Now());
  if (!active.ok()) return active.status();
  std::set<std::string> connected;
  for (const core::Binding& b : *active) {
    if (b.reachable) connected.insert(b.set_username);
  }
  std::vector<pb::InventoryEntry> out;
  for (pb::InventoryEntry& e : *all) {
    auto f = fetched.find(e.mac());
    if (f != fetched.end()) e.set_fetched_unix_ms(f->second);
    e.set_connected(connected.count(e.device()) != 0);
    if (e.connected()) {
      e.set_state(pb::PHONE_STATE_CONNECTED);
    } else if (e.fetched_unix_ms() >= e.deployed_unix_ms() && e.fetched_unix_ms() != 0) {
      e.set_state(pb::PHONE_STATE_FETCHED);
    } else {
      e.set_state(pb::PHONE_STATE_DEPLOYED);
    }
    if (Matches(e, filter, macs)) out.push_back(std::move(e));
  }
  return out;
}

grpc::Status TmaServiceImpl::ListInventory(grpc::ServerContext* ctx,
                                           const pb::ListInventoryRequest* req,
                                           pb::ListInventoryResponse* resp) {
  return rpc_.Run("ListInventory", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::vector<pb::InventoryEntry>> list = Inventory(req->filter());
    if (!list.ok()) return list.status();
    for (pb::InventoryEntry& e : *list) *resp->add_entries() = std::move(e);
    return absl::OkStatus();
  });
}

grpc::Status TmaServiceImpl::DeleteInventory(grpc::ServerContext* ctx,
                                             const pb::DeleteInventoryRequest* req,
                                             pb::DeleteInventoryResponse* resp) {
  return rpc_.Run("DeleteInventory", ctx, [&]() -> absl::Status {
    if (EmptyFilter(req->filter()) && !req->all()) {
      return absl::InvalidArgumentError("filter: empty; set all to delete the whole inventory");
    }
    absl::StatusOr<std::vector<pb::InventoryEntry>> list = Inventory(req->filter());
    if (!list.ok()) return list.status();
    std::map<std::string, std::unique_ptr<Target>> targets;
    std::map<std::string, std::vector<std::string>> forgotten;  // server → files
    std::vector<std::string> macs;
    for (const pb::InventoryEntry& e : *list) {
      auto t = targets.find(e.server());
      if (t == targets.end()) {
        absl::StatusOr<std::optional<pb::Server>> s = store_.GetServer(e.server(), true);
        if (!s.ok()) return s.status();
        t = targets.emplace(e.server(), s->has_value() ? targets_(**s) : nullptr).first;
      }
      if (t->second != nullptr) {
        if (absl::Status d = t->second->Delete(e.file()); !d.ok()) {
          resp->add_errors(
              absl::StrCat(e.mac(), ": ", e.file(), " on ", e.server(), ": ", d.message()));
          continue;
        }
      }
      forgotten[e.server()].push_back(e.file());
      macs.push_back(e.mac());
      store_.RecordEvent("", "inventory.deleted", e.file(),
                         absl::StrCat(e.mac(), " (", e.device(), ") from ", e.server()));
    }
    for (const auto& [server, files] : forgotten) {
      if (absl::Status s = store_.ForgetFiles(server, files); !s.ok()) return s;
    }
    if (absl::Status s = store_.DeleteInventory(macs); !s.ok()) return s;
    if (absl::Status s = core::PhoneFetches(redis_).Forget(macs); !s.ok()) return s;
    resp->set_deleted(static_cast<int32_t>(macs.size()));
    return absl::OkStatus();
  });
}

void TmaServiceImpl::RefreshInventoryGauge() {
  absl::StatusOr<std::vector<pb::InventoryEntry>> list = Inventory(pb::InventoryFilter());
  if (!list.ok()) return;
  std::map<std::string, double> n = {{"deployed", 0}, {"fetched", 0}, {"connected", 0}};
  for (const pb::InventoryEntry& e : *list) {
    if (e.state() == pb::PHONE_STATE_CONNECTED) {
      ++n["connected"];
    } else if (e.state() == pb::PHONE_STATE_FETCHED) {
      ++n["fetched"];
    } else {
      ++n["deployed"];
    }
  }
  for (const auto& [state, count] : n) inventory_.Add({{"state", state}}).Set(count);
}

}  // namespace rwg::tma
