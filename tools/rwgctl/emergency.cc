#include "tools/rwgctl/emergency.h"

#include <memory>
#include <string>

#include "rwg/admin/v1/admin.grpc.pb.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

struct RouteFlags {
  std::string location, number, dial, description;
};

absl::Status Set(Context& c, const RouteFlags& flags) {
  adminpb::SetEmergencyRouteRequest req;
  req.mutable_route()->set_location(flags.location);
  req.mutable_route()->set_number(flags.number);
  req.mutable_route()->set_dial(flags.dial);
  req.mutable_route()->set_description(flags.description);
  adminpb::EmergencyRoute resp;
  if (absl::Status s = c.client.Call(&Admin::SetEmergencyRoute, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "calls to " << resp.number() << " from " << resp.location() << " dial "
                    << resp.dial() << "\n";
  });
  return absl::OkStatus();
}

// The routes, then those that could not be read (not used for calls) if any.
absl::Status List(Context& c, const RouteFlags& flags) {
  adminpb::ListEmergencyRoutesRequest req;
  req.set_location(flags.location);
  adminpb::ListEmergencyRoutesResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ListEmergencyRoutes, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    std::vector<const adminpb::EmergencyRoute*> routes;
    for (const auto& r : resp.routes()) routes.push_back(&r);
    c.printer.Print(RoutesTable(routes));
    if (!resp.damaged().empty()) {
      c.printer.out() << "\ndamaged, not used for calls (delete and set again):\n";
      Table damaged{{"LOCATION", "NUMBER", "ERROR"}, {}};
      for (const auto& d : resp.damaged()) {
        damaged.rows.push_back({d.location(), d.number(), d.error()});
      }
      c.printer.Print(damaged);
    }
  });
  return absl::OkStatus();
}

absl::Status Delete(Context& c, const RouteFlags& flags) {
  adminpb::DeleteEmergencyRouteRequest req;
  req.set_location(flags.location);
  req.set_number(flags.number);
  adminpb::DeleteEmergencyRouteResponse resp;
  if (absl::Status s = c.client.Call(&Admin::DeleteEmergencyRoute, req, &resp); !s.ok()) return s;
  c.printer.Line("route of " + flags.number + " at " + flags.location + " deleted");
  return absl::OkStatus();
}

absl::Status Resolve(Context& c, const RouteFlags& flags) {
  adminpb::ResolveEmergencyRequest req;
  req.set_location(flags.location);
  req.set_number(flags.number);
  adminpb::ResolveEmergencyResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ResolveEmergency, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    if (!resp.found()) {
      c.printer.out() << "no emergency route for " << flags.number << " from " << flags.location
                      << "\n";
      return;
    }
    c.printer.Print(RoutesTable({&resp.route()}));
  });
  return absl::OkStatus();
}

}  // namespace

Table RoutesTable(const std::vector<const adminpb::EmergencyRoute*>& routes) {
  Table t{{"LOCATION", "NUMBER", "DIAL", "DESCRIPTION"}, {}};
  for (const auto* r : routes) {
    t.rows.push_back({r->location(), r->number(), r->dial(), OrDash(r->description())});
  }
  return t;
}

void RegisterEmergency(CommandLine& cli) {
  CLI::App* emergency = cli.Noun("emergency", "emergency numbers by location");

  auto set = std::make_shared<RouteFlags>();
  CLI::App* set_cmd = emergency->add_subcommand(
      "set", "route a special number for a location and the locations under it");
  set_cmd->add_option("location", set->location, "\"*\" (every location) or a path, e.g. FR/Paris")
      ->required();
  set_cmd->add_option("number", set->number, "what the phone dials, e.g. 112")->required();
  set_cmd->add_option("dial", set->dial, "what the iPBX receives instead")->required();
  set_cmd->add_option("--description", set->description, "free text");
  cli.On(set_cmd, [set](Context& c) { return Set(c, *set); });

  auto list = std::make_shared<RouteFlags>();
  CLI::App* list_cmd = emergency->add_subcommand("list", "show the emergency routes");
  list_cmd->add_option("--location", list->location, "only this location's own routes");
  cli.On(list_cmd, [list](Context& c) { return List(c, *list); });

  auto del = std::make_shared<RouteFlags>();
  CLI::App* delete_cmd =
      emergency->add_subcommand("delete", "remove a location's route of a number");
  delete_cmd->add_option("location", del->location, "the route's location")->required();
  delete_cmd->add_option("number", del->number, "the special number")->required();
  cli.On(delete_cmd, [del](Context& c) { return Delete(c, *del); });

  auto resolve = std::make_shared<RouteFlags>();
  CLI::App* resolve_cmd =
      emergency->add_subcommand("resolve", "which route a call from a location to a number takes");
  resolve_cmd->add_option("location", resolve->location, "a device's location, e.g. FR/Paris/15e")
      ->required();
  resolve_cmd->add_option("number", resolve->number, "the number dialled")->required();
  cli.On(resolve_cmd, [resolve](Context& c) { return Resolve(c, *resolve); });
}

}  // namespace rwg::rwgctl
