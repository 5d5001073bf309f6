// rwgctl's command line: the global options, one subcommand per noun (each noun's file
// registers its verbs), and Run, which parses, runs the verb given and turns its status into
// the exit code (errors.h).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <ostream>

#include "absl/status/status.h"
#include "tools/rwgctl/client.h"
#include "tools/rwgctl/printer.h"

namespace rwg::rwgctl {

// What a verb works with once the command line is parsed.
struct Context {
  const Options& options;
  Client& client;
  Client& tma;  // the tma service (--tma-server)
  Client& ott;  // the ott service (--ott-server)
  Printer& printer;
};

// A verb: what it prints goes through the printer, a failure comes back as its status.
using Action = std::function<absl::Status(Context&)>;

class CommandLine {
 public:
  // The app with the global options; no nouns yet.
  CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  CLI::App& app() { return app_; }
  const Options& options() const { return options_; }

  // A noun: a subcommand of the app that needs one verb.
  CLI::App* Noun(const std::string& name, const std::string& description);

  // `action` runs once parsing is done if `command` is the one given; of a command and one of
  // its subcommands given together, the subcommand's.
  void On(CLI::App* command, Action action);

  // The action of the command given; empty before parsing.
  const Action& chosen() const { return chosen_; }

 private:
  CLI::App app_;
  Options options_;
  Action chosen_;
};

// Every noun, in the order `rwgctl --help` lists them.
void RegisterAll(CommandLine& cli);

// rwgctl itself: parses argv, runs the verb, prints answers on `out` and the one-line error on
// `err`; returns the exit code (0, 1, or 2 for a command line that does not parse).
int Run(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace rwg::rwgctl
