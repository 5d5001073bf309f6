// Service configuration: every option has one name used three ways, e.g. `redis-address` is
// the flag --redis-address, the environment variable RWG_REDIS_ADDRESS and the YAML key
// `redis-address` in the file given by --config (RWG_CONFIG). Precedence: flag, environment,
// file, default. Unknown YAML keys are errors.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/status.h"

namespace rwg::core {

class Options {
 public:
  Options(std::string program, std::string description);

  CLI::App& app() { return app_; }

  template <typename T>
  CLI::Option* Add(const std::string& name, T& target, const std::string& help) {
    return app_.add_option("--" + name, target, help)
        ->envname(EnvName(name))
        ->capture_default_str();
  }
  CLI::Option* Flag(const std::string& name, bool& target, const std::string& help) {
    return app_.add_flag("--" + name, target, help)->envname(EnvName(name));
  }

  // Parses argv; on --help prints usage and returns a Cancelled status with exit code 0 in
  // `exit_code`; on a bad option returns InvalidArgument naming it.
  absl::Status Parse(int argc, char** argv, int* exit_code);

  static std::string EnvName(const std::string& name);

 private:
  CLI::App app_;
};

}  // namespace rwg::core
