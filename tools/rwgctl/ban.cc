#include "tools/rwgctl/ban.h"

#include <memory>
#include <string>
#include <vector>

#include "rwg/admin/v1/admin.grpc.pb.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

absl::Status List(Context& c) {
  adminpb::ListBansResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ListBans, adminpb::ListBansRequest(), &resp);
      !s.ok()) {
    return s;
  }
  c.printer.Show(resp, [&] { c.printer.Print(BansTable(resp)); });
  return absl::OkStatus();
}

// One call per ban, in order; the first failure stops the rest.
absl::Status Remove(Context& c, const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    adminpb::DeleteBanRequest req;
    req.set_id(id);
    adminpb::DeleteBanResponse resp;
    if (absl::Status s = c.client.Call(&Admin::DeleteBan, req, &resp); !s.ok()) return s;
    c.printer.Line("ban " + id + " lifted");
  }
  return absl::OkStatus();
}

}  // namespace

Table BansTable(const adminpb::ListBansResponse& resp) {
  Table t{{"ID", "KIND", "SOURCE", "USER", "UNTIL", "REASON"}, {}};
  for (const auto& b : resp.bans()) {
    t.rows.push_back(
        {b.id(), b.kind(), b.source(), OrDash(b.user()), FormatTime(b.until_unix()), b.reason()});
  }
  return t;
}

void RegisterBan(CommandLine& cli) {
  CLI::App* ban = cli.Noun("ban", "temporary bans of abusive SIP sources");
  cli.On(ban->add_subcommand("list", "show the bans in force"), List);
  auto ids = std::make_shared<std::vector<std::string>>();
  CLI::App* remove = ban->add_subcommand("remove", "lift bans now");
  remove->add_option("id", *ids, "ban ids as listed, e.g. src:198.51.100.7")->required();
  cli.On(remove, [ids](Context& c) { return Remove(c, *ids); });
}

}  // namespace rwg::rwgctl
