#include "tools/rwgctl/call.h"

#include <memory>
#include <string>

#include "rwg/admin/v1/admin.grpc.pb.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

std::string Answered(const adminpb::Call& c) {
  return c.answered_unix() ? FormatTime(c.answered_unix()) : "-";
}

absl::Status List(Context& c, const std::string& filter) {
  adminpb::ListCallsRequest req;
  req.set_filter(filter);
  adminpb::ListCallsResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ListCalls, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.Print(CallsTable(resp));
    c.printer.out() << resp.calls_size() << " call(s)\n";
  });
  return absl::OkStatus();
}

absl::Status Show(Context& c, const std::string& id) {
  adminpb::GetCallRequest req;
  req.set_id(id);
  adminpb::Call call;
  if (absl::Status s = c.client.Call(&Admin::GetCall, req, &call); !s.ok()) return s;
  c.printer.Show(call, [&] { c.printer.Fields(CallFields(call)); });
  return absl::OkStatus();
}

absl::Status Hangup(Context& c, const std::string& id) {
  adminpb::HangupCallRequest req;
  req.set_id(id);
  adminpb::HangupCallResponse resp;
  if (absl::Status s = c.client.Call(&Admin::HangupCall, req, &resp); !s.ok()) return s;
  c.printer.Line("call " + id + " is being ended");
  return absl::OkStatus();
}

}  // namespace

Table CallsTable(const adminpb::ListCallsResponse& resp) {
  Table t{{"ID", "DIRECTION", "DEVICE", "NUMBER", "STATE", "INSTANCE", "STARTED", "ANSWERED"}, {}};
  for (const auto& c : resp.calls()) {
    t.rows.push_back({c.id(), c.direction(), c.device(), c.number(), c.state(), c.instance(),
                      FormatTime(c.started_unix()), Answered(c)});
  }
  return t;
}

FieldRows CallFields(const adminpb::Call& c) {
  return {{"id", c.id()},
          {"direction", c.direction()},
          {"device", c.device()},
          {"icp_username", c.icp_username()},
          {"number", c.number()},
          {"state", c.state()},
          {"instance", c.instance()},
          {"started", FormatTime(c.started_unix())},
          {"answered", Answered(c)},
          {"relay session", OrDash(c.relay_session())},
          {"relay instance", OrDash(c.relay_instance())},
          {"phone side Call-ID", c.set().call_id()},
          {"iPBX side Call-ID", c.icp().call_id()}};
}

void RegisterCall(CommandLine& cli) {
  CLI::App* call = cli.Noun("call", "calls through the SIP edge");
  auto filter = std::make_shared<std::string>();
  CLI::App* list = call->add_subcommand("list", "active calls, all instances");
  list->add_option("--filter", *filter, "substring of device, number or instance");
  cli.On(list, [filter](Context& c) { return List(c, *filter); });

  auto id = std::make_shared<std::string>();
  CLI::App* show = call->add_subcommand("show", "one call in full");
  show->add_option("id", *id, "the call's id (call list)")->required();
  cli.On(show, [id](Context& c) { return Show(c, *id); });

  CLI::App* hangup = call->add_subcommand("hangup", "end a call on both sides");
  hangup->add_option("id", *id, "the call's id (call list)")->required();
  cli.On(hangup, [id](Context& c) { return Hangup(c, *id); });
}

}  // namespace rwg::rwgctl
