#include "services/core/options.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace rwg::core {
namespace {

// Reads a flat YAML mapping: scalars and sequences of scalars.
// An option set through its environment variable keeps that value: the environment
// overrides the file.
class YamlConfig final : public CLI::Config {
 public:
  explicit YamlConfig(const CLI::App* app) : app_(app) {}

  std::string to_config(const CLI::App*, bool, bool, std::string) const override { return ""; }

  std::vector<CLI::ConfigItem> from_config(std::istream& in) const override {
    YAML::Node root;
    try {
      root = YAML::Load(in);
    } catch (const YAML::Exception& e) {
      throw CLI::ConversionError(absl::StrCat("config file: ", e.what()));
    }
    std::vector<CLI::ConfigItem> items;
    if (root.IsNull()) return items;
    if (!root.IsMap()) throw CLI::ConversionError("config file: top level must be a mapping");
    for (const auto& kv : root) {
      CLI::ConfigItem item;
      item.name = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (v.IsScalar()) {
        item.inputs.push_back(v.as<std::string>());
      } else if (v.IsSequence()) {
        for (const auto& e : v) {
          if (!e.IsScalar()) {
            throw CLI::ConversionError(
                absl::StrCat("config file: key '", item.name, "' must hold scalars"));
          }
          item.inputs.push_back(e.as<std::string>());
        }
      } else if (!v.IsNull()) {
        throw CLI::ConversionError(
            absl::StrCat("config file: key '", item.name, "' must be a scalar or a list"));
      }
      const CLI::Option* opt = app_->get_option_no_throw("--" + item.name);
      if (opt != nullptr && !opt->get_envname().empty() &&
          std::getenv(opt->get_envname().c_str()) != nullptr) {
        continue;
      }
      items.push_back(std::move(item));
    }
    return items;
  }

 private:
  const CLI::App* app_;
};

}  // namespace

Options::Options(std::string program, std::string description)
    : app_(std::move(description), std::move(program)) {
  app_.config_formatter(std::make_shared<YamlConfig>(&app_));
  app_.set_config("--config", "", "YAML file with options (same names as the flags)")
      ->envname("RWG_CONFIG");
  app_.allow_config_extras(CLI::config_extras_mode::error);
}

std::string Options::EnvName(const std::string& name) {
  std::string env = "RWG_" + absl::AsciiStrToUpper(name);
  std::replace(env.begin(), env.end(), '-', '_');
  return env;
}

absl::Status Options::Parse(int argc, char** argv, int* exit_code) {
  try {
    app_.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app_.help();
    *exit_code = 0;
    return absl::CancelledError("help");
  } catch (const CLI::ParseError& e) {
    *exit_code = 2;
    return absl::InvalidArgumentError(e.what());
  }
  return absl::OkStatus();
}

}  // namespace rwg::core
