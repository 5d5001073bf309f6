#include "tools/rwgctl/session.h"

#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "rwg/admin/v1/admin.grpc.pb.h"
#include "services/control/private_file.h"
#include "tools/rwgctl/input.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

struct LoginFlags {
  std::string user = "admin";
  bool password_stdin = false;
};

absl::Status Login(Context& c, const LoginFlags& flags) {
  adminpb::LoginRequest req;
  req.set_username(flags.user);
  absl::StatusOr<std::string> password =
      ReadSecret("RWG_PASSWORD", "password", flags.password_stdin);
  if (!password.ok()) return password.status();
  req.set_password(*password);
  adminpb::LoginResponse resp;
  if (absl::Status s = c.client.Call(&Admin::Login, req, &resp, Auth::kNone); !s.ok()) return s;
  std::string path = c.client.TokenFile();
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && dir != path) {
    std::string parent;  // create parent directories one by one
    for (absl::string_view part : absl::StrSplit(dir, '/', absl::SkipEmpty())) {
      parent = absl::StrCat(parent, "/", part);
      mkdir(parent.c_str(), 0700);
    }
  }
  // Mode 0600 from the first byte; a link planted at the path is replaced, not followed.
  absl::Status written = rwg::control::WritePrivateFile(path, resp.token() + "\n");
  if (!written.ok()) return written;
  if (c.printer.json()) {
    // As the other answers print: int64 as a string, the user escaped by the JSON printer.
    google::protobuf::Struct answer;
    (*answer.mutable_fields())["user"].set_string_value(flags.user);
    (*answer.mutable_fields())["expires_at_unix"].set_string_value(
        std::to_string(resp.expires_at_unix()));
    c.printer.Json(answer);
  } else {
    c.printer.out() << "logged in as " << flags.user << " until "
                    << FormatTime(resp.expires_at_unix()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Logout(Context& c) {
  adminpb::LogoutResponse resp;
  if (absl::Status s = c.client.Call(&Admin::Logout, adminpb::LogoutRequest(), &resp); !s.ok()) {
    return s;
  }
  std::remove(c.client.TokenFile().c_str());
  c.printer.out() << "logged out\n";
  return absl::OkStatus();
}

absl::Status ChangePassword(Context& c) {
  adminpb::ChangePasswordRequest req;
  absl::StatusOr<std::string> current = ReadSecret("RWG_PASSWORD", "current password", false);
  if (!current.ok()) return current.status();
  req.set_current_password(*current);
  absl::StatusOr<std::string> next = ReadSecret("RWG_NEW_PASSWORD", "new password", false);
  if (!next.ok()) return next.status();
  req.set_new_password(*next);
  adminpb::ChangePasswordResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ChangePassword, req, &resp); !s.ok()) return s;
  c.printer.out() << "password changed\n";
  return absl::OkStatus();
}

}  // namespace

void RegisterSession(CommandLine& cli) {
  auto login_flags = std::make_shared<LoginFlags>();
  CLI::App* login = cli.app().add_subcommand("login", "log in and keep the session token");
  login->add_option("-u,--user", login_flags->user, "admin username")
      ->envname("RWG_USER")
      ->capture_default_str();
  login->add_flag("--password-stdin", login_flags->password_stdin,
                  "read the password from standard input (else RWG_PASSWORD or a prompt)");
  cli.On(login, [login_flags](Context& c) { return Login(c, *login_flags); });

  cli.On(cli.app().add_subcommand("logout", "end the session"), Logout);

  cli.On(cli.app().add_subcommand(
             "passwd", "change your admin password (RWG_PASSWORD/RWG_NEW_PASSWORD or prompts)"),
         ChangePassword);
}

}  // namespace rwg::rwgctl
