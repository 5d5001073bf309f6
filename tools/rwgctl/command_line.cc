#include "tools/rwgctl/command_line.h"

#include "tools/rwgctl/ban.h"
#include "tools/rwgctl/call.h"
#include "tools/rwgctl/config.h"
#include "tools/rwgctl/device.h"
#include "tools/rwgctl/emergency.h"
#include "tools/rwgctl/errors.h"
#include "tools/rwgctl/hash.h"
#include "tools/rwgctl/ott.h"
#include "tools/rwgctl/registration.h"
#include "tools/rwgctl/relay.h"
#include "tools/rwgctl/server.h"
#include "tools/rwgctl/session.h"
#include "tools/rwgctl/sync.h"
#include "tools/rwgctl/tma.h"

namespace rwg::rwgctl {

CommandLine::CommandLine() : app_("rwgctl: administer an rwg Remote Worker Gateway", "rwgctl") {
  app_.require_subcommand(1);
  app_.add_option("-s,--server", options_.server, "admin API address host:port")
      ->envname("RWG_SERVER")
      ->capture_default_str();
  app_.add_option("--tma-server", options_.tma_server,
                  "tma service address host:port (`rwgctl tma ...`)")
      ->envname("RWG_TMA_SERVER")
      ->capture_default_str();
  app_.add_option("--ott-server", options_.ott_server,
                  "ott service address host:port (`rwgctl ott ...`)")
      ->envname("RWG_OTT_SERVER")
      ->capture_default_str();
  app_.add_option("--ca-cert", options_.ca_cert,
                  "PEM CA certificate that signed the server's certificate")
      ->envname("RWG_CA_CERT");
  app_.add_flag("--insecure", options_.insecure, "plaintext gRPC (development only)")
      ->envname("RWG_INSECURE");
  app_.add_option("--token-file", options_.token_file,
                  "where the login token is kept (default ~/.config/rwg/token)")
      ->envname("RWG_TOKEN_FILE");
  app_.add_option("-o,--output", options_.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app_.add_option("--timeout", options_.timeout, "seconds to wait for an answer")
      ->capture_default_str();
}

CLI::App* CommandLine::Noun(const std::string& name, const std::string& description) {
  CLI::App* noun = app_.add_subcommand(name, description);
  noun->require_subcommand(1);
  return noun;
}

void CommandLine::On(CLI::App* command, Action action) {
  // CLI11 runs a subcommand's callback before its parent's: the first to choose wins.
  command->callback([this, action = std::move(action)]() {
    if (!chosen_) chosen_ = action;
  });
}

void RegisterAll(CommandLine& cli) {
  RegisterSession(cli);  // login, logout, passwd
  RegisterServer(cli);   // health, services
  RegisterConfig(cli);
  RegisterDevice(cli);
  RegisterRegistration(cli);
  RegisterCall(cli);
  RegisterBan(cli);
  RegisterEmergency(cli);
  RegisterRelay(cli);
  RegisterHash(cli);
  RegisterSync(cli);
  RegisterTma(cli);
  RegisterOtt(cli);
}

int Run(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CommandLine cli;
  RegisterAll(cli);
  try {
    cli.app().parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return cli.app().exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return cli.app().exit(e, out, err);
    err << "rwgctl: " << e.what() << "\n";
    return 2;
  }
  if (!cli.chosen()) return 0;
  // The clients (and their channels) end before Run returns, so gRPC shuts down before exit.
  Client client(cli.options());
  Client tma(cli.options(), cli.options().tma_server);
  Client ott(cli.options(), cli.options().ott_server);
  Printer printer(cli.options().output == "json" ? Format::kJson : Format::kTable, out, err);
  Context context{cli.options(), client, tma, ott, printer};
  Outcome outcome = OutcomeOf(cli.chosen()(context));
  if (!outcome.message.empty()) err << "rwgctl: " << outcome.message << "\n";
  return outcome.exit_code;
}

}  // namespace rwg::rwgctl
