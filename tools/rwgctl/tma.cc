#include "tools/rwgctl/tma.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "rwg/tma/v1/tma.grpc.pb.h"
#include "tools/rwgctl/errors.h"
#include "tools/rwgctl/input.h"

namespace rwg::rwgctl {
namespace {

namespace tmapb = ::rwg::tma::v1;
using Tma = tmapb::TmaService::Stub;

constexpr size_t kChunk = 64 << 10;  // bytes per CreateDeploymentRequest.chunk

// The lower-case rest of an enum value's name after `prefix`; "-" for the unspecified one.
std::string ShortName(const std::string& name, absl::string_view prefix) {
  std::string rest(absl::StripPrefix(name, prefix));
  if (rest.empty() || rest == "UNSPECIFIED") return "-";
  return absl::AsciiStrToLower(rest);
}

std::string FormatTimeMs(int64_t unix_ms) { return FormatTime(unix_ms / 1000); }

// The password of `tma server add|modify`: "" when none is given.
absl::StatusOr<std::string> ReadServerPassword(const TmaServerFlags& f) {
  absl::StatusOr<std::optional<std::string>> p =
      ReadPasswordFlags(f.password_file, f.password_stdin);
  if (!p.ok()) return p.status();
  return p->value_or("");
}

// The checks add and modify share; `kind` is the server's kind when known (add), else
// SERVER_KIND_UNSPECIFIED.
absl::Status CheckServerFlags(const TmaServerFlags& f, tmapb::ServerKind kind) {
  if (f.Given("port") && (f.port < 1 || f.port > 65535)) {
    return FlagError("--port", absl::StrCat(f.port, " is not a port (1-65535)"));
  }
  if (kind == tmapb::SERVER_KIND_LOCAL) {
    for (const auto& [field, flag] :
         {std::pair{"address", "--address"}, {"port", "--port"}, {"directory", "--directory"}}) {
      if (f.Given(field)) return FlagError(flag, "not for a local server");
    }
  }
  if (kind != tmapb::SERVER_KIND_UNSPECIFIED && kind != tmapb::SERVER_KIND_FTPS &&
      f.Given("ca_file")) {
    return FlagError("--ca-file", "for an ftps server only");
  }
  return absl::OkStatus();
}

// The server's fields from the flags (all of them; the mask chooses for modify).
absl::StatusOr<tmapb::Server> ServerOf(const TmaServerFlags& f) {
  absl::StatusOr<std::string> password = ReadServerPassword(f);
  if (!password.ok()) return password.status();
  tmapb::Server s;
  s.set_name(f.name);
  s.set_address(f.address);
  s.set_port(static_cast<uint32_t>(f.port));
  s.set_directory(f.directory);
  s.set_login(f.login);
  s.set_password(*password);
  for (const std::string& site : f.sites) {
    if (!site.empty()) s.add_sites(site);  // modify --site '': no sites
  }
  s.set_ca_file(f.ca_file);
  return s;
}

absl::StatusOr<tmapb::ServerKind> KindOf(const std::string& kind) {
  if (kind == "local") return tmapb::SERVER_KIND_LOCAL;
  if (kind == "ftp") return tmapb::SERVER_KIND_FTP;
  if (kind == "ftps") return tmapb::SERVER_KIND_FTPS;
  return FlagError("--kind", absl::StrCat("'", kind, "' is not local, ftp or ftps"));
}

// Columns of the terminal standard error is, 0 when unknown.
int TerminalWidth() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

bool Terminal(int fd) { return isatty(fd) == 1; }

bool Ended(const tmapb::Deployment& d) {
  return d.state() == tmapb::DEPLOYMENT_STATE_COMPLETED ||
         d.state() == tmapb::DEPLOYMENT_STATE_FAILED;
}

void PrintProblems(std::ostream& err,
                   const google::protobuf::RepeatedPtrField<tmapb::CsvProblem>& ps) {
  for (const tmapb::CsvProblem& p : ps) {
    err << (p.warning() ? "warning" : "error");
    if (p.row() > 0) err << ": row " << p.row();
    if (!p.column().empty()) err << (p.row() > 0 ? ", column " : ": column ") << p.column();
    err << ": " << p.message() << "\n";
  }
}

// --- servers -----------------------------------------------------------------------------------

absl::Status AddServer(Context& c, const TmaServerFlags& flags) {
  absl::StatusOr<tmapb::AddServerRequest> req = AddServerRequestOf(flags);
  if (!req.ok()) return req.status();
  tmapb::Server resp;
  if (absl::Status s = c.tma.Call(&Tma::AddServer, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "server " << resp.name() << " added\n"; });
  return absl::OkStatus();
}

absl::Status ModifyServer(Context& c, const TmaServerFlags& flags) {
  absl::StatusOr<tmapb::UpdateServerRequest> req = UpdateServerRequestOf(flags);
  if (!req.ok()) return req.status();
  tmapb::Server resp;
  if (absl::Status s = c.tma.Call(&Tma::UpdateServer, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "server " << resp.name() << " modified\n"; });
  return absl::OkStatus();
}

absl::Status DeleteServer(Context& c, const std::string& name) {
  tmapb::DeleteServerRequest req;
  req.set_name(name);
  tmapb::DeleteServerResponse resp;
  if (absl::Status s = c.tma.Call(&Tma::DeleteServer, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "server " << name << " deleted\n"; });
  return absl::OkStatus();
}

absl::Status ListServers(Context& c) {
  tmapb::ListServersResponse resp;
  if (absl::Status s = c.tma.Call(&Tma::ListServers, tmapb::ListServersRequest(), &resp); !s.ok()) {
    return s;
  }
  c.printer.Show(resp, [&] { c.printer.Print(ServersTable(resp)); });
  return absl::OkStatus();
}

// --- the CSV -----------------------------------------------------------------------------------

struct CsvFlags {
  std::string site;
  bool system_columns = false;
};

// The CSV on standard output as it is (it is the file), the warnings on standard error.
absl::Status ExportCsv(Context& c, const CsvFlags& flags) {
  tmapb::ExportCsvRequest req;
  req.set_site(flags.site);
  req.set_system_columns(flags.system_columns);
  tmapb::ExportCsvResponse resp;
  if (absl::Status s = c.tma.Call(&Tma::ExportCsv, req, &resp); !s.ok()) return s;
  if (c.printer.json()) {
    c.printer.Json(resp);
    return absl::OkStatus();
  }
  c.printer.out() << resp.csv();
  for (const std::string& w : resp.warnings()) c.printer.err() << "warning: " << w << "\n";
  return absl::OkStatus();
}

struct CheckFlags {
  std::string file;
  TmaSystemFlags system;
};

// The problems as a table and a count; any error fails the command (exit 1).
absl::Status CheckCsv(Context& c, const CheckFlags& flags) {
  absl::StatusOr<std::string> csv = ReadFile(flags.file);
  if (!csv.ok()) return csv.status();
  tmapb::CheckCsvRequest req;
  req.set_csv(*std::move(csv));
  *req.mutable_system() = flags.system.ToProto();
  tmapb::CheckCsvResponse resp;
  if (absl::Status s = c.tma.Call(&Tma::CheckCsv, req, &resp); !s.ok()) return s;
  const auto errors = std::count_if(resp.problems().begin(), resp.problems().end(),
                                    [](const tmapb::CsvProblem& p) { return !p.warning(); });
  c.printer.Show(resp, [&] {
    if (!resp.problems().empty()) {
      std::vector<const tmapb::CsvProblem*> ps;
      for (const tmapb::CsvProblem& p : resp.problems()) ps.push_back(&p);
      c.printer.Print(ProblemsTable(ps));
    }
    c.printer.out() << resp.phones() << " phone(s), " << errors << " error(s), "
                    << resp.problems_size() - errors << " warning(s)\n";
  });
  return errors > 0 ? QuietFailure() : absl::OkStatus();
}

// --- deployments -------------------------------------------------------------------------------

// How a deployment's progress is shown on standard error: a bar redrawn in place on a
// terminal, else plain lines, at most one a second plus the last.
class ProgressView {
 public:
  ProgressView(std::ostream& err, bool terminal) : err_(err), terminal_(terminal) {}

  void Update(const tmapb::Deployment& d) {
    if (d.files_total() == 0 && d.files_done() == 0) return;  // not started
    if (terminal_) {
      err_ << "\r"
           << ProgressBarLine(d.files_done(), d.files_total(), d.current_file(), TerminalWidth())
           << "\x1b[K" << std::flush;
      drawn_ = true;
      return;
    }
    pending_ = ProgressText(d.files_done(), d.files_total(), d.current_file());
    if (throttle_.Due(absl::Now())) Flush();
  }

  // The last state: the pending line, or the end of the bar's line.
  void End() {
    if (terminal_) {
      if (drawn_) err_ << "\n" << std::flush;
      drawn_ = false;
    } else {
      Flush();
    }
  }

 private:
  void Flush() {
    if (pending_.empty()) return;
    err_ << pending_ << "\n" << std::flush;
    pending_.clear();
  }

  std::ostream& err_;
  bool terminal_;
  bool drawn_ = false;
  std::string pending_;
  ProgressThrottle throttle_;
};

// The deployment until it ends: WatchDeployment, the progress on standard error.
absl::StatusOr<tmapb::Deployment> Watch(Context& c, const std::string& id) {
  absl::StatusOr<Tma*> stub = c.tma.Get<Tma>();
  if (!stub.ok()) return stub.status();
  std::unique_ptr<grpc::ClientContext> context = c.tma.NewStreamContext(Auth::kToken);
  tmapb::WatchDeploymentRequest req;
  req.set_id(id);
  std::unique_ptr<grpc::ClientReader<tmapb::Deployment>> reader =
      (*stub)->WatchDeployment(context.get(), req);
  // The bar only where it is seen: standard error, a terminal.
  ProgressView view(c.printer.err(), &c.printer.err() == &std::cerr && Terminal(STDERR_FILENO));
  tmapb::Deployment last;
  bool ended = false;
  while (!ended && reader->Read(&last)) {
    view.Update(last);
    ended = Ended(last);
  }
  if (ended) context->TryCancel();  // nothing more is wanted
  grpc::Status status = reader->Finish();
  view.End();
  if (ended) return last;
  if (absl::Status s = RpcError(status); !s.ok()) return s;
  // The stream ended first: the deployment as it is now.
  tmapb::GetDeploymentRequest get;
  get.set_id(id);
  if (absl::Status s = c.tma.Call(&Tma::GetDeployment, get, &last); !s.ok()) return s;
  if (!Ended(last)) {
    return absl::UnavailableError(absl::StrCat(
        "the watch of deployment ", id, " ended before the deployment (it is ",
        StateName(last.state()), "): `rwgctl tma deployment watch ", id, "` goes on watching"));
  }
  return last;
}

// The end of a deployment: "Deployment completed" or "Deployment failed: ..." (exit 1), or the
// deployment as JSON.
absl::Status PrintEnd(Context& c, const tmapb::Deployment& d) {
  const bool failed = d.state() != tmapb::DEPLOYMENT_STATE_COMPLETED;
  c.printer.Show(d, [&] {
    if (failed) {
      c.printer.out() << "Deployment failed: " << OrDash(d.error()) << "\n";
    } else {
      c.printer.out() << "Deployment completed\n";
    }
  });
  return failed ? QuietFailure() : absl::OkStatus();
}

absl::Status WatchAndPrint(Context& c, const std::string& id) {
  absl::StatusOr<tmapb::Deployment> d = Watch(c, id);
  if (!d.ok()) return d.status();
  return PrintEnd(c, *d);
}

struct DeployFlags {
  std::string server, csv, description;
  DeployFileFlags files;
  TmaSystemFlags system;
  bool detach = false;
};

// Streams the header and the files: the deployment accepted, or why not. A bad CSV
// (INVALID_ARGUMENT, the server's message naming its rows and columns) exits as an argument.
absl::StatusOr<tmapb::Deployment> Upload(Context& c, const DeployFlags& flags,
                                         const std::vector<DeployFile>& files, std::string csv) {
  absl::StatusOr<Tma*> stub = c.tma.Get<Tma>();
  if (!stub.ok()) return stub.status();
  std::unique_ptr<grpc::ClientContext> context = c.tma.NewStreamContext(Auth::kToken);
  tmapb::Deployment resp;
  std::unique_ptr<grpc::ClientWriter<tmapb::CreateDeploymentRequest>> writer =
      (*stub)->CreateDeployment(context.get(), &resp);
  tmapb::CreateDeploymentRequest part;
  tmapb::DeploymentHeader* header = part.mutable_header();
  header->set_server(flags.server);
  header->set_csv(std::move(csv));
  *header->mutable_system() = flags.system.ToProto();
  for (const DeployFile& f : files) {
    if (f.role == "global") header->set_global_file(f.name);
  }
  header->set_description(flags.description);
  bool open = writer->Write(part);
  absl::Status local;  // a file that could not be read as it was when checked
  std::string buffer(kChunk, '\0');
  for (size_t i = 0; open && local.ok() && i < files.size(); ++i) {
    const DeployFile& f = files[i];
    std::ifstream in(f.path, std::ios::binary);
    if (!in) {
      local = absl::NotFoundError(absl::StrCat("cannot read ", f.path));
      break;
    }
    tmapb::CreateDeploymentRequest start;
    start.mutable_file()->set_name(f.name);
    start.mutable_file()->set_size(f.size);
    start.mutable_file()->set_role(f.role);
    open = writer->Write(start);
    uint64_t sent = 0;
    while (open && sent < f.size) {
      in.read(buffer.data(),
              static_cast<std::streamsize>(std::min<uint64_t>(kChunk, f.size - sent)));
      const auto n = static_cast<size_t>(in.gcount());
      if (n == 0) {
        local = absl::DataLossError(
            absl::StrCat(f.path, ": shorter than when checked (", sent, " of ", f.size, " bytes)"));
        break;
      }
      tmapb::CreateDeploymentRequest chunk;
      chunk.mutable_chunk()->assign(buffer.data(), n);
      open = writer->Write(chunk);
      sent += n;
    }
  }
  if (!local.ok()) {
    context->TryCancel();
    (void)writer->Finish();
    return local;
  }
  if (open) writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    return ArgumentError(status.error_message());
  }
  if (absl::Status s = RpcError(status); !s.ok()) return s;
  return resp;
}

absl::Status Deploy(Context& c, const DeployFlags& flags) {
  // Everything local is checked before any call.
  absl::StatusOr<std::vector<DeployFile>> files = DeployFilesOf(flags.files);
  if (!files.ok()) return files.status();
  absl::StatusOr<std::string> csv = ReadFile(flags.csv);
  if (!csv.ok()) return absl::NotFoundError(absl::StrCat("--csv: ", csv.status().message()));
  absl::StatusOr<tmapb::Deployment> d = Upload(c, flags, *files, *std::move(csv));
  if (!d.ok()) return d.status();
  PrintProblems(c.printer.err(), d->warnings());
  if (flags.detach) {
    c.printer.Show(*d, [&] {
      c.printer.out() << "deployment " << d->id() << " started: " << d->phones() << " phone(s), "
                      << d->files_total() << " file(s)\n";
    });
    return absl::OkStatus();
  }
  c.printer.err() << "deployment " << d->id() << ": " << d->phones() << " phone(s), "
                  << d->files_total() << " file(s)\n";
  return WatchAndPrint(c, d->id());
}

absl::Status ListDeployments(Context& c) {
  tmapb::ListDeploymentsResponse resp;
  absl::Status s = c.tma.Call(&Tma::ListDeployments, tmapb::ListDeploymentsRequest(), &resp);
  if (!s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.Print(DeploymentsTable(resp)); });
  return absl::OkStatus();
}

absl::Status ShowDeployment(Context& c, const std::string& id) {
  tmapb::GetDeploymentRequest req;
  req.set_id(id);
  tmapb::Deployment d;
  if (absl::Status s = c.tma.Call(&Tma::GetDeployment, req, &d); !s.ok()) return s;
  c.printer.Show(d, [&] {
    c.printer.Fields(DeploymentFields(d));
    if (!d.warnings().empty()) {
      std::vector<const tmapb::CsvProblem*> ps;
      for (const tmapb::CsvProblem& p : d.warnings()) ps.push_back(&p);
      c.printer.out() << "\n";
      c.printer.Print(ProblemsTable(ps));
    }
  });
  return absl::OkStatus();
}

absl::Status ResumeDeployment(Context& c, const std::string& id, bool detach) {
  tmapb::ResumeDeploymentRequest req;
  req.set_id(id);
  tmapb::Deployment d;
  if (absl::Status s = c.tma.Call(&Tma::ResumeDeployment, req, &d); !s.ok()) return s;
  if (detach) {
    c.printer.Show(d, [&] { c.printer.out() << "deployment " << id << " resumed\n"; });
    return absl::OkStatus();
  }
  return WatchAndPrint(c, id);
}

// --- events ------------------------------------------------------------------------------------

struct EventsFlags {
  std::string deployment;
  int limit = 0;
  bool follow = false;
};

absl::Status Events(Context& c, const EventsFlags& flags) {
  if (flags.limit < 0) return FlagError("--limit", "must be 0 (no limit) or more");
  constexpr int kPage = 1000;
  tmapb::ListEventsRequest req;
  req.set_deployment(flags.deployment);
  int64_t shown = 0;
  bool header = true;
  tmapb::ListEventsResponse all;  // -o json without --follow: one answer
  for (;;) {
    const int want =
        flags.limit > 0 ? static_cast<int>(std::min<int64_t>(kPage, flags.limit - shown)) : kPage;
    req.set_limit(want);
    tmapb::ListEventsResponse resp;
    if (absl::Status s = c.tma.Call(&Tma::ListEvents, req, &resp); !s.ok()) return s;
    if (!resp.events().empty()) req.set_after_seq(resp.events(resp.events_size() - 1).seq());
    shown += resp.events_size();
    const bool limit_reached = flags.limit > 0 && shown >= flags.limit;
    const bool caught_up = resp.events_size() < want;
    if (flags.follow) {
      if (c.printer.json()) {
        for (const tmapb::Event& e : resp.events()) c.printer.Json(e);
      } else if (!resp.events().empty()) {
        std::vector<const tmapb::Event*> es;
        for (const tmapb::Event& e : resp.events()) es.push_back(&e);
        std::string text = RenderTable(EventsTable(es));
        if (!header) text = text.substr(text.find('\n') + 1);
        header = false;
        c.printer.out() << text << std::flush;
      }
      if (limit_reached) return absl::OkStatus();
      if (caught_up) absl::SleepFor(absl::Seconds(1));
      continue;
    }
    for (tmapb::Event& e : *resp.mutable_events()) *all.add_events() = std::move(e);
    if (limit_reached || caught_up) break;
  }
  c.printer.Show(all, [&] {
    std::vector<const tmapb::Event*> es;
    for (const tmapb::Event& e : all.events()) es.push_back(&e);
    c.printer.Print(EventsTable(es));
  });
  return absl::OkStatus();
}

// --- inventory ---------------------------------------------------------------------------------

absl::Status ListInventory(Context& c, const InventoryFlags& flags) {
  absl::StatusOr<tmapb::InventoryFilter> filter = InventoryFilterOf(flags);
  if (!filter.ok()) return filter.status();
  tmapb::ListInventoryRequest req;
  *req.mutable_filter() = *std::move(filter);
  tmapb::ListInventoryResponse resp;
  if (absl::Status s = c.tma.Call(&Tma::ListInventory, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.Print(InventoryTable(resp));
    c.printer.out() << resp.entries_size() << " phone(s)\n";
  });
  return absl::OkStatus();
}

struct DeleteFlags {
  InventoryFlags filter;
  bool yes = false;
};

absl::Status DeleteInventory(Context& c, const DeleteFlags& flags) {
  absl::StatusOr<tmapb::DeleteInventoryRequest> req = DeleteInventoryRequestOf(flags.filter);
  if (!req.ok()) return req.status();
  absl::StatusOr<DeleteConfirmation> confirm =
      DeleteConfirmationOf(flags.yes, Terminal(STDIN_FILENO));
  if (!confirm.ok()) return confirm.status();
  if (*confirm == DeleteConfirmation::kAsk) {
    tmapb::ListInventoryRequest list;
    *list.mutable_filter() = req->filter();
    tmapb::ListInventoryResponse matched;
    if (absl::Status s = c.tma.Call(&Tma::ListInventory, list, &matched); !s.ok()) return s;
    if (matched.entries().empty()) {
      c.printer.err() << "no phone matches: nothing deleted\n";
      return absl::OkStatus();
    }
    c.printer.err() << "delete the files of " << matched.entries_size()
                    << " phone(s) from their download servers, and their inventory entries? "
                       "[y/N] "
                    << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    answer = absl::AsciiStrToLower(absl::StripAsciiWhitespace(answer));
    if (answer != "y" && answer != "yes") {
      c.printer.err() << "nothing deleted\n";
      return QuietFailure();
    }
  }
  tmapb::DeleteInventoryResponse resp;
  if (absl::Status s = c.tma.Call(&Tma::DeleteInventory, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << resp.deleted() << " phone(s) deleted\n";
    for (const std::string& e : resp.errors()) c.printer.err() << "error: " << e << "\n";
  });
  return resp.errors().empty() ? absl::OkStatus() : QuietFailure();
}

// --- the command line --------------------------------------------------------------------------

// The flags of add and modify; `given` is filled from the options once parsed.
struct ServerCommand {
  TmaServerFlags flags;
  std::vector<std::pair<CLI::Option*, std::string>> options;  // option, field it sets

  void Register(CLI::App* cmd) {
    cmd->add_option("name", flags.name, "the server's name ([A-Za-z0-9._-], unique)")->required();
    auto add = [&](CLI::Option* o, const char* field) { options.emplace_back(o, field); };
    add(cmd->add_option("--kind", flags.kind, "local, ftp or ftps")
            ->check(CLI::IsMember({"local", "ftp", "ftps"})),
        "kind");
    add(cmd->add_option("--address", flags.address, "host name or IP address (ftp, ftps)"),
        "address");
    add(cmd->add_option("--port", flags.port, "port (ftp, ftps; 21 when not given)"), "port");
    add(cmd->add_option("--directory", flags.directory, "directory on the server (default /)"),
        "directory");
    add(cmd->add_option("--login", flags.login, "login (default mngt_ftp_67xxi)"), "login");
    add(cmd->add_option("--password-file", flags.password_file,
                        "file whose first line is the password"),
        "password");
    add(cmd->add_flag("--password-stdin", flags.password_stdin,
                      "read the password from standard input"),
        "password");
    add(cmd->add_option("--site", flags.sites,
                        "site whose Remote Workers it serves (repeatable; modify: replaces them, "
                        "--site '' for none)"),
        "sites");
    add(cmd->add_option("--ca-file", flags.ca_file,
                        "ftps: PEM CA file on the tma host to verify the server with"),
        "ca_file");
  }

  const TmaServerFlags& Parsed() {
    flags.given.clear();
    for (const auto& [o, field] : options) {
      if (o->count() > 0 &&
          std::find(flags.given.begin(), flags.given.end(), field) == flags.given.end()) {
        flags.given.push_back(field);
      }
    }
    return flags;
  }
};

void AddSystemFlags(CLI::App* cmd, TmaSystemFlags& f) {
  cmd->add_option("--proxy", f.proxy, "sip proxy ip (default: the gateway's public SIP name)");
  cmd->add_option("--registrar", f.registrar, "sip registrar ip (default: the proxy)");
  cmd->add_option("--https-server", f.https_server,
                  "https server (default: the gateway's public provisioning name)");
  cmd->add_option("--https-path", f.https_path, "https path (default: <hash>/ftp_67xxi)");
  cmd->add_option("--keyboard-script", f.keyboard_script, "keyboard script URL");
}

void AddInventoryFilterFlags(CLI::App* cmd, InventoryFlags& f) {
  cmd->add_option("--site", f.site, "only this site's phones");
  cmd->add_option("--mac", f.macs, "only this phone (repeatable)");
  cmd->add_option("--device", f.device, "only the phone of this device (set-side user name)");
  cmd->add_option("--state", f.state, "deployed, fetched or connected")
      ->check(CLI::IsMember({"deployed", "fetched", "connected"}));
}

}  // namespace

bool TmaServerFlags::Given(absl::string_view field) const {
  return std::find(given.begin(), given.end(), field) != given.end();
}

absl::StatusOr<tmapb::AddServerRequest> AddServerRequestOf(const TmaServerFlags& flags) {
  if (!flags.Given("kind")) return ArgumentError("--kind is required (local, ftp or ftps)");
  absl::StatusOr<tmapb::ServerKind> kind = KindOf(flags.kind);
  if (!kind.ok()) return kind.status();
  if (absl::Status s = CheckServerFlags(flags, *kind); !s.ok()) return s;
  if (*kind != tmapb::SERVER_KIND_LOCAL) {
    if (flags.address.empty()) {
      return FlagError("--address", absl::StrCat("required for an ", flags.kind, " server"));
    }
    if (flags.password_file.empty() && !flags.password_stdin) {
      return ArgumentError(absl::StrCat("an ", flags.kind,
                                        " server needs a password: --password-file FILE or "
                                        "--password-stdin"));
    }
  }
  absl::StatusOr<tmapb::Server> server = ServerOf(flags);
  if (!server.ok()) return server.status();
  server->set_kind(*kind);
  tmapb::AddServerRequest req;
  *req.mutable_server() = *std::move(server);
  return req;
}

absl::StatusOr<tmapb::UpdateServerRequest> UpdateServerRequestOf(const TmaServerFlags& flags) {
  if (flags.Given("kind")) {
    return FlagError("--kind", "a server's kind cannot change (delete it and add it again)");
  }
  if (absl::Status s = CheckServerFlags(flags, tmapb::SERVER_KIND_UNSPECIFIED); !s.ok()) return s;
  tmapb::UpdateServerRequest req;
  for (const char* field :
       {"address", "port", "directory", "login", "password", "sites", "ca_file"}) {
    if (flags.Given(field)) req.add_update_mask(field);
  }
  if (req.update_mask().empty()) {
    return ArgumentError(
        "nothing to change: give --address, --port, --directory, --login, --password-file, "
        "--password-stdin, --site or --ca-file");
  }
  absl::StatusOr<tmapb::Server> server = ServerOf(flags);
  if (!server.ok()) return server.status();
  *req.mutable_server() = *std::move(server);
  return req;
}

tmapb::SystemData TmaSystemFlags::ToProto() const {
  tmapb::SystemData s;
  s.set_sip_proxy_ip(proxy);
  s.set_sip_registrar_ip(registrar);
  s.set_https_server(https_server);
  s.set_https_path(https_path);
  s.set_keyboard_script(keyboard_script);
  return s;
}

absl::StatusOr<std::vector<DeployFile>> DeployFilesOf(const DeployFileFlags& flags) {
  std::vector<std::pair<std::string, std::pair<const char*, const char*>>>
      given;  // path, flag, role
  if (!flags.global.empty()) given.push_back({flags.global, {"--global", "global"}});
  for (const std::string& p : flags.firmware) given.push_back({p, {"--firmware", "firmware"}});
  for (const std::string& p : flags.certificates) {
    given.push_back({p, {"--certificate", "certificate"}});
  }
  for (const std::string& p : flags.others) given.push_back({p, {"--file", "other"}});
  std::vector<DeployFile> files;
  std::set<std::string> names;
  for (const auto& [path, flag_role] : given) {
    const auto& [flag, role] = flag_role;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat(flag, ": cannot read ", path, ": ", std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat(flag, ": ", path, " is not a regular file"));
    }
    if (std::ifstream in(path, std::ios::binary); !in) {
      return absl::NotFoundError(
          absl::StrCat(flag, ": cannot read ", path, ": ", std::strerror(errno)));
    }
    DeployFile f;
    f.path = path;
    f.name = path.substr(path.rfind('/') + 1);
    f.size = static_cast<uint64_t>(st.st_size);
    f.role = role;
    const bool good_name = !f.name.empty() && f.name != "." && f.name != ".." &&
                           std::all_of(f.name.begin(), f.name.end(), [](char ch) {
                             return absl::ascii_isalnum(static_cast<unsigned char>(ch)) ||
                                    ch == '.' || ch == '_' || ch == '-';
                           });
    if (!good_name) {
      return FlagError(flag, absl::StrCat("'", f.name,
                                          "': a file's name on the server is made of letters, "
                                          "digits and . _ - (rename it)"));
    }
    if (!names.insert(f.name).second) {
      return FlagError(flag, absl::StrCat("'", f.name, "': another file has this name"));
    }
    files.push_back(std::move(f));
  }
  return files;
}

std::string ProgressText(int64_t done, int64_t total, absl::string_view current) {
  std::string text = absl::StrCat(done, "/", total, " files");
  if (!current.empty()) absl::StrAppend(&text, "  ", current);
  return text;
}

std::string ProgressBarLine(int64_t done, int64_t total, absl::string_view current, int width) {
  const int64_t cells = width > 0 && width < 60 ? 10 : 20;
  int64_t filled = 0;
  if (total > 0) filled = std::clamp<int64_t>(done, 0, total) * cells / total;
  std::string line = absl::StrCat("[", std::string(static_cast<size_t>(filled), '#'),
                                  std::string(static_cast<size_t>(cells - filled), '.'), "] ",
                                  ProgressText(done, total, current));
  if (width > 0 && line.size() > static_cast<size_t>(width - 1)) {
    line.resize(static_cast<size_t>(width - 1));
  }
  return line;
}

absl::StatusOr<DeleteConfirmation> DeleteConfirmationOf(bool yes, bool terminal) {
  if (yes) return DeleteConfirmation::kProceed;
  if (terminal) return DeleteConfirmation::kAsk;
  return ArgumentError("not on a terminal, no one to confirm: add --yes to delete");
}

absl::StatusOr<tmapb::InventoryFilter> InventoryFilterOf(const InventoryFlags& flags) {
  tmapb::InventoryFilter f;
  f.set_site(flags.site);
  for (const std::string& m : flags.macs) f.add_macs(m);  // the server normalizes them
  f.set_device(flags.device);
  if (flags.state.empty()) {
    f.set_state(tmapb::PHONE_STATE_UNSPECIFIED);
  } else if (flags.state == "deployed") {
    f.set_state(tmapb::PHONE_STATE_DEPLOYED);
  } else if (flags.state == "fetched") {
    f.set_state(tmapb::PHONE_STATE_FETCHED);
  } else if (flags.state == "connected") {
    f.set_state(tmapb::PHONE_STATE_CONNECTED);
  } else {
    return FlagError("--state",
                     absl::StrCat("'", flags.state, "' is not deployed, fetched or connected"));
  }
  return f;
}

absl::StatusOr<tmapb::DeleteInventoryRequest> DeleteInventoryRequestOf(
    const InventoryFlags& flags) {
  absl::StatusOr<tmapb::InventoryFilter> filter = InventoryFilterOf(flags);
  if (!filter.ok()) return filter.status();
  const bool filtered = !filter->site().empty() || !filter->macs().empty() ||
                        !filter->device().empty() ||
                        filter->state() != tmapb::PHONE_STATE_UNSPECIFIED;
  if (flags.all && filtered) {
    return FlagError("--all", "not with --mac, --site, --device or --state");
  }
  if (!flags.all && !filtered) {
    return ArgumentError("which phones? give --mac, --site, --device, --state, or --all");
  }
  tmapb::DeleteInventoryRequest req;
  *req.mutable_filter() = *std::move(filter);
  req.set_all(flags.all);
  return req;
}

std::string KindName(tmapb::ServerKind kind) {
  return ShortName(tmapb::ServerKind_Name(kind), "SERVER_KIND_");
}
std::string StateName(tmapb::DeploymentState state) {
  return ShortName(tmapb::DeploymentState_Name(state), "DEPLOYMENT_STATE_");
}
std::string StateName(tmapb::PhoneState state) {
  return ShortName(tmapb::PhoneState_Name(state), "PHONE_STATE_");
}

Table ServersTable(const tmapb::ListServersResponse& resp) {
  Table t{{"NAME", "KIND", "ADDRESS", "PORT", "DIRECTORY", "LOGIN", "PASSWORD", "SITES", "CA FILE",
           "UPDATED"},
          {}};
  for (const tmapb::Server& s : resp.servers()) {
    const bool local = s.kind() == tmapb::SERVER_KIND_LOCAL;
    t.rows.push_back({s.name(), KindName(s.kind()), OrDash(s.address()),
                      local ? "-" : std::to_string(s.port() == 0 ? 21 : s.port()),
                      local ? "-" : (s.directory().empty() ? "/" : s.directory()),
                      s.login().empty() ? "mngt_ftp_67xxi" : s.login(),
                      s.has_password() ? "set" : "-", OrDash(absl::StrJoin(s.sites(), ",")),
                      OrDash(s.ca_file()), FormatTime(s.update_time_unix())});
  }
  return t;
}

Table ProblemsTable(const std::vector<const tmapb::CsvProblem*>& problems) {
  Table t{{"ROW", "COLUMN", "LEVEL", "MESSAGE"}, {}};
  for (const tmapb::CsvProblem* p : problems) {
    t.rows.push_back({p->row() > 0 ? std::to_string(p->row()) : "-", OrDash(p->column()),
                      p->warning() ? "warning" : "error", p->message()});
  }
  return t;
}

Table DeploymentsTable(const tmapb::ListDeploymentsResponse& resp) {
  Table t{{"ID", "STATE", "SERVER", "FILES", "PHONES", "CREATED", "ENDED", "DESCRIPTION"}, {}};
  for (const tmapb::Deployment& d : resp.deployments()) {
    t.rows.push_back({d.id(), StateName(d.state()), d.server(),
                      absl::StrCat(d.files_done(), "/", d.files_total()),
                      std::to_string(d.phones()), FormatTimeMs(d.create_time_unix_ms()),
                      FormatTimeMs(d.end_time_unix_ms()), d.description()});
  }
  return t;
}

FieldRows DeploymentFields(const tmapb::Deployment& d) {
  return {{"id", d.id()},
          {"server", d.server()},
          {"state", StateName(d.state())},
          {"description", OrDash(d.description())},
          {"phones", std::to_string(d.phones())},
          {"files", absl::StrCat(d.files_done(), "/", d.files_total(), " (", d.files_unchanged(),
                                 " unchanged)")},
          {"bytes_written", std::to_string(d.bytes_written())},
          {"current_file", OrDash(d.current_file())},
          {"error", OrDash(d.error())},
          {"warnings", std::to_string(d.warnings_size())},
          {"created", FormatTimeMs(d.create_time_unix_ms())},
          {"ended", FormatTimeMs(d.end_time_unix_ms())}};
}

Table EventsTable(const std::vector<const tmapb::Event*>& events) {
  Table t{{"SEQ", "TIME", "DEPLOYMENT", "ACTION", "FILE", "DETAIL"}, {}};
  for (const tmapb::Event* e : events) {
    t.rows.push_back({std::to_string(e->seq()), FormatTimeMs(e->time_unix_ms()),
                      OrDash(e->deployment()), e->action(), OrDash(e->file()), e->detail()});
  }
  return t;
}

Table InventoryTable(const tmapb::ListInventoryResponse& resp) {
  Table t{{"MAC", "SITE", "DEVICE", "STATE", "DEPLOYMENT", "SERVER", "DEPLOYED", "FETCHED"}, {}};
  for (const tmapb::InventoryEntry& e : resp.entries()) {
    t.rows.push_back({e.mac(), OrDash(e.site()), OrDash(e.device()), StateName(e.state()),
                      OrDash(e.deployment()), OrDash(e.server()),
                      FormatTimeMs(e.deployed_unix_ms()), FormatTimeMs(e.fetched_unix_ms())});
  }
  return t;
}

void RegisterTma(CommandLine& cli) {
  CLI::App* tma = cli.Noun(
      "tma", "phone deployments: download servers, Remote Worker CSV, deployments, inventory");

  CLI::App* server = tma->add_subcommand("server", "download servers for Remote Workers");
  server->require_subcommand(1);
  auto add = std::make_shared<ServerCommand>();
  CLI::App* add_cmd = server->add_subcommand("add", "add a download server");
  add->Register(add_cmd);
  cli.On(add_cmd, [add](Context& c) { return AddServer(c, add->Parsed()); });
  auto modify = std::make_shared<ServerCommand>();
  CLI::App* modify_cmd =
      server->add_subcommand("modify", "change a download server (only the flags given)");
  modify->Register(modify_cmd);
  cli.On(modify_cmd, [modify](Context& c) { return ModifyServer(c, modify->Parsed()); });
  auto name = std::make_shared<std::string>();
  CLI::App* delete_cmd = server->add_subcommand("delete", "delete a download server");
  delete_cmd->add_option("name", *name, "the server's name")->required();
  cli.On(delete_cmd, [name](Context& c) { return DeleteServer(c, *name); });
  cli.On(server->add_subcommand("list", "list the download servers (never their passwords)"),
         ListServers);

  auto csv = std::make_shared<CsvFlags>();
  CLI::App* csv_cmd = tma->add_subcommand(
      "csv", "the Remote Worker CSV of a site's declared devices, on standard output");
  csv_cmd->add_option("--site", csv->site, "the site")->required();
  csv_cmd->add_flag("--system-columns", csv->system_columns,
                    "write the system data as columns of every row");
  cli.On(csv_cmd, [csv](Context& c) { return ExportCsv(c, *csv); });

  auto check = std::make_shared<CheckFlags>();
  CLI::App* check_cmd =
      tma->add_subcommand("check", "check a Remote Worker CSV as a deployment would");
  check_cmd->add_option("file", check->file, "CSV file, - for standard input")->required();
  AddSystemFlags(check_cmd, check->system);
  cli.On(check_cmd, [check](Context& c) { return CheckCsv(c, *check); });

  auto deploy = std::make_shared<DeployFlags>();
  CLI::App* deploy_cmd = tma->add_subcommand(
      "deploy", "deploy the phones' files of a CSV to a download server, and watch it");
  deploy_cmd->add_option("--server", deploy->server, "the download server's name")->required();
  deploy_cmd->add_option("--csv", deploy->csv, "the Remote Worker CSV, - for standard input")
      ->required();
  deploy_cmd->add_option("--global", deploy->files.global,
                         "global data file (aastra.cfg or startup.cfg)");
  deploy_cmd->add_option("--firmware", deploy->files.firmware, "firmware file (repeatable)");
  deploy_cmd->add_option("--certificate", deploy->files.certificates,
                         "certificate file, e.g. the CA the phones trust (repeatable)");
  deploy_cmd->add_option("--file", deploy->files.others, "any other file (repeatable)");
  AddSystemFlags(deploy_cmd, deploy->system);
  deploy_cmd->add_option("--description", deploy->description, "free text");
  deploy_cmd->add_flag("--detach", deploy->detach, "print the deployment's id and return");
  cli.On(deploy_cmd, [deploy](Context& c) { return Deploy(c, *deploy); });

  CLI::App* deployment = tma->add_subcommand("deployment", "deployments");
  deployment->require_subcommand(1);
  cli.On(deployment->add_subcommand("list", "list deployments, newest first"), ListDeployments);
  auto id = std::make_shared<std::string>();
  auto one = [&](const char* verb, const char* help) {
    CLI::App* cmd = deployment->add_subcommand(verb, help);
    cmd->add_option("id", *id, "the deployment's id")->required();
    return cmd;
  };
  cli.On(one("show", "show a deployment"), [id](Context& c) { return ShowDeployment(c, *id); });
  cli.On(one("watch", "follow a deployment until it ends"),
         [id](Context& c) { return WatchAndPrint(c, *id); });
  auto detach = std::make_shared<bool>(false);
  CLI::App* resume_cmd =
      one("resume", "run a failed deployment again (files already right are not rewritten)");
  resume_cmd->add_flag("--detach", *detach, "do not watch it");
  cli.On(resume_cmd, [id, detach](Context& c) { return ResumeDeployment(c, *id, *detach); });

  auto events = std::make_shared<EventsFlags>();
  CLI::App* events_cmd = tma->add_subcommand("events", "the events log of deployments");
  events_cmd->add_option("--deployment", events->deployment, "only this deployment's");
  events_cmd->add_option("--limit", events->limit, "at most this many events (0: all)");
  events_cmd->add_flag("--follow", events->follow, "then wait for new ones (checks each second)");
  cli.On(events_cmd, [events](Context& c) { return Events(c, *events); });

  auto inventory = std::make_shared<InventoryFlags>();
  CLI::App* inventory_cmd = tma->add_subcommand("inventory", "the phones deployed");
  AddInventoryFilterFlags(inventory_cmd, *inventory);
  cli.On(inventory_cmd, [inventory](Context& c) { return ListInventory(c, *inventory); });
  auto remove = std::make_shared<DeleteFlags>();
  CLI::App* remove_cmd = inventory_cmd->add_subcommand(
      "delete", "delete phones' files from their download servers and their inventory entries");
  AddInventoryFilterFlags(remove_cmd, remove->filter);
  remove_cmd->add_flag("--all", remove->filter.all, "every phone");
  remove_cmd->add_flag("--yes", remove->yes, "do not ask for confirmation");
  cli.On(remove_cmd, [remove](Context& c) { return DeleteInventory(c, *remove); });
}

}  // namespace rwg::rwgctl
