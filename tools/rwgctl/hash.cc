#include "tools/rwgctl/hash.h"

#include <memory>
#include <string>

#include "rwg/admin/v1/admin.grpc.pb.h"
#include "tools/rwgctl/input.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

// The flags of the verbs that replace a key: --confirm, and the password it then needs.
struct ReplaceFlags {
  std::string key;
  bool confirm = false;
  bool password_stdin = false;

  // The current password when confirming (the server asks for it), else nothing.
  absl::StatusOr<std::string> Password() const {
    if (!confirm) return std::string();
    return ReadSecret("RWG_PASSWORD", "your admin password", password_stdin);
  }
};

absl::Status Answer(Context& c, const absl::Status& s, const adminpb::HashKey& h) {
  if (!s.ok()) return s;
  PrintHash(c.printer, h);
  return absl::OkStatus();
}

absl::Status Show(Context& c) {
  adminpb::HashKey h;
  return Answer(c, c.client.Call(&Admin::GetHashKey, adminpb::GetHashKeyRequest(), &h), h);
}

absl::Status Generate(Context& c) {
  adminpb::HashKey h;
  return Answer(c, c.client.Call(&Admin::GenerateHashKey, adminpb::GenerateHashKeyRequest(), &h),
                h);
}

absl::Status Regenerate(Context& c, const ReplaceFlags& flags) {
  adminpb::RegenerateHashKeyRequest req;
  req.set_confirm(flags.confirm);
  absl::StatusOr<std::string> password = flags.Password();
  if (!password.ok()) return password.status();
  if (flags.confirm) req.set_current_password(*password);
  adminpb::HashKey h;
  return Answer(c, c.client.Call(&Admin::RegenerateHashKey, req, &h), h);
}

absl::Status Import(Context& c, const ReplaceFlags& flags) {
  adminpb::ImportHashKeyRequest req;
  req.set_key(flags.key);
  req.set_confirm(flags.confirm);
  absl::StatusOr<std::string> password = flags.Password();
  if (!password.ok()) return password.status();
  if (flags.confirm) req.set_current_password(*password);
  adminpb::HashKey h;
  return Answer(c, c.client.Call(&Admin::ImportHashKey, req, &h), h);
}

}  // namespace

void PrintHash(Printer& printer, const adminpb::HashKey& h) {
  printer.Show(h, [&] {
    printer.out() << "hash key:      " << h.key() << "\n"
                  << "download path: " << h.download_path() << "\n"
                  << "created:       " << FormatTime(h.create_time_unix()) << "\n";
    if (!h.warning().empty()) printer.err() << "WARNING: " << h.warning() << "\n";
  });
}

void RegisterHash(CommandLine& cli) {
  CLI::App* hash = cli.Noun("hash", "provisioning hash key");
  cli.On(hash->add_subcommand("show", "show the key and the download path"), Show);
  cli.On(hash->add_subcommand("generate", "generate the first key"), Generate);

  auto regen = std::make_shared<ReplaceFlags>();
  CLI::App* regen_cmd =
      hash->add_subcommand("regenerate", "replace the key: EVERY DEPLOYED PHONE LOSES ITS PATH");
  regen_cmd->add_flag("--confirm", regen->confirm,
                      "yes, break every deployed phone's download path");
  regen_cmd->add_flag("--password-stdin", regen->password_stdin,
                      "read your password from standard input");
  cli.On(regen_cmd, [regen](Context& c) { return Regenerate(c, *regen); });

  auto import = std::make_shared<ReplaceFlags>();
  CLI::App* import_cmd =
      hash->add_subcommand("import", "use an existing key (e.g. from the MiVoice 5000)");
  import_cmd->add_option("key", import->key, "32 hex digits")->required();
  import_cmd->add_flag("--confirm", import->confirm, "replace an existing key");
  import_cmd->add_flag("--password-stdin", import->password_stdin,
                       "read your password from standard input");
  cli.On(import_cmd, [import](Context& c) { return Import(c, *import); });
}

}  // namespace rwg::rwgctl
