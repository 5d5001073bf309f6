#include "tools/rwgctl/registration.h"

#include <memory>
#include <string>

#include "absl/strings/str_join.h"
#include "rwg/admin/v1/admin.grpc.pb.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

const char* YesNo(bool b) { return b ? "yes" : "no"; }

absl::Status List(Context& c, const std::string& filter) {
  adminpb::ListRegistrationsRequest req;
  req.set_filter(filter);
  adminpb::ListRegistrationsResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ListRegistrations, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.Print(RegistrationsTable(resp));
    c.printer.out() << resp.registrations_size() << " registered, " << resp.licences()
                    << " licence(s)\n";
  });
  return absl::OkStatus();
}

absl::Status Show(Context& c, const std::string& user) {
  adminpb::GetRegistrationRequest req;
  req.set_set_username(user);
  adminpb::Registration r;
  if (absl::Status s = c.client.Call(&Admin::GetRegistration, req, &r); !s.ok()) return s;
  c.printer.Show(r, [&] { c.printer.Fields(RegistrationFields(r)); });
  return absl::OkStatus();
}

}  // namespace

Table RegistrationsTable(const adminpb::ListRegistrationsResponse& resp) {
  Table t{{"SET USERNAME", "ICP USERNAME", "SOURCE", "TRANSPORT", "INSTANCE", "REACHABLE", "SINCE",
           "EXPIRES"},
          {}};
  for (const auto& r : resp.registrations()) {
    t.rows.push_back({r.set_username(), r.icp_username(), r.source(), r.transport(), r.instance(),
                      YesNo(r.reachable()), FormatTime(r.since_unix()),
                      FormatTime(r.expires_at_unix())});
  }
  return t;
}

FieldRows RegistrationFields(const adminpb::Registration& r) {
  return {{"set_username", r.set_username()},
          {"icp_username", r.icp_username()},
          {"contacts", absl::StrJoin(r.contacts(), " ")},
          {"source", r.source()},
          {"transport", r.transport()},
          {"instance", r.instance()},
          {"reachable", YesNo(r.reachable())},
          {"since", FormatTime(r.since_unix())},
          {"expires", FormatTime(r.expires_at_unix())}};
}

void RegisterRegistration(CommandLine& cli) {
  CLI::App* registration = cli.Noun("registration", "phones registered through the SIP edge");
  auto filter = std::make_shared<std::string>();
  CLI::App* list = registration->add_subcommand(
      "list", "who is registered, from where, since when, on which instance");
  list->add_option("--filter", *filter, "substring of usernames, source or instance");
  cli.On(list, [filter](Context& c) { return List(c, *filter); });

  auto user = std::make_shared<std::string>();
  CLI::App* show = registration->add_subcommand("show", "one registration in full");
  show->add_option("set_username", *user, "set-side username")->required();
  cli.On(show, [user](Context& c) { return Show(c, *user); });
}

}  // namespace rwg::rwgctl
