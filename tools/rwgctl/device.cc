#include "tools/rwgctl/device.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "rwg/admin/v1/admin.grpc.pb.h"
#include "services/control/private_file.h"
#include "tools/rwgctl/input.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

// The fields of `device add` and `device update`; update sends only those given.
struct DeviceFlags {
  std::string set_username, set_password, icp_username, icp_password, description, mac, site,
      location;
  bool srtp_optional = false;
  bool generate = false;
  CLI::Option *o_set_password, *o_icp_username, *o_icp_password, *o_description, *o_mac, *o_site,
      *o_location, *o_srtp;

  void Register(CLI::App* app, bool positional_user) {
    if (positional_user) {
      app->add_option("set_username", set_username, "set-side username (login)")->required();
    } else {
      app->add_option("--set-username", set_username, "set-side username (login) the phone uses")
          ->required();
    }
    o_set_password =
        app->add_option("--set-password", set_password, "set-side password (8-64 characters)");
    app->add_flag("--generate-password", generate, "generate a random set-side password");
    o_icp_username =
        app->add_option("--icp-username", icp_username, "ICP-side username (subscription number)");
    o_icp_password = app->add_option("--icp-password", icp_password, "ICP-side password");
    o_description = app->add_option("--description", description, "free text");
    o_mac = app->add_option("--mac", mac, "phone MAC address");
    o_site = app->add_option("--site", site, "site name");
    o_location =
        app->add_option("--location", location, "location for emergency calls, e.g. FR/Paris/HQ");
    o_srtp =
        app->add_option("--srtp-optional", srtp_optional, "true: SRTP allowed but not required");
  }

  adminpb::Device ToDevice() const {
    adminpb::Device d;
    d.set_set_username(set_username);
    d.set_set_password(set_password);
    d.set_icp_username(icp_username);
    d.set_icp_password(icp_password);
    d.set_description(description);
    d.set_mac(mac);
    d.set_site(site);
    d.set_location(location);
    d.set_srtp_optional(srtp_optional);
    return d;
  }

  // The update mask: the fields given on the command line.
  std::vector<std::string> Mask() const {
    std::vector<std::string> m;
    auto add = [&](CLI::Option* o, const char* name) {
      if (o->count() > 0) m.push_back(name);
    };
    add(o_set_password, "set_password");
    add(o_icp_username, "icp_username");
    add(o_icp_password, "icp_password");
    add(o_description, "description");
    add(o_mac, "mac");
    add(o_site, "site");
    add(o_location, "location");
    add(o_srtp, "srtp_optional");
    return m;
  }
};

// What add and update print: the device's name, and the set-side password when generated.
void PrintChanged(Context& c, const adminpb::Device& d, const char* verb) {
  c.printer.Show(d, [&] {
    c.printer.out() << "device " << d.set_username() << " " << verb << "\n";
    if (!d.set_password().empty()) {
      c.printer.out() << "set-side password: " << d.set_password() << "\n";
    }
  });
}

absl::Status Add(Context& c, const DeviceFlags& flags) {
  adminpb::CreateDeviceRequest req;
  *req.mutable_device() = flags.ToDevice();
  req.set_generate_set_password(flags.generate);
  adminpb::Device resp;
  if (absl::Status s = c.client.Call(&Admin::CreateDevice, req, &resp); !s.ok()) return s;
  PrintChanged(c, resp, "created");
  return absl::OkStatus();
}

struct GetFlags {
  std::string user;
  bool show_secrets = false;
};

absl::Status Get(Context& c, const GetFlags& flags) {
  adminpb::GetDeviceRequest req;
  req.set_set_username(flags.user);
  req.set_show_secrets(flags.show_secrets);
  adminpb::Device d;
  if (absl::Status s = c.client.Call(&Admin::GetDevice, req, &d); !s.ok()) return s;
  c.printer.Show(d, [&] { c.printer.Fields(DeviceFields(d, flags.show_secrets)); });
  return absl::OkStatus();
}

struct ListFlags {
  std::string filter, site;
  int page_size = 0;
  bool show_secrets = false;
};

// Fetches every page, then prints them as one list.
absl::Status List(Context& c, const ListFlags& flags) {
  adminpb::ListDevicesRequest req;
  req.set_filter(flags.filter);
  req.set_site(flags.site);
  req.set_page_size(flags.page_size);
  req.set_show_secrets(flags.show_secrets);
  adminpb::ListDevicesResponse all;
  do {
    adminpb::ListDevicesResponse resp;
    if (absl::Status s = c.client.Call(&Admin::ListDevices, req, &resp); !s.ok()) return s;
    for (auto& d : resp.devices()) *all.add_devices() = d;
    all.set_total_size(resp.total_size());
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  c.printer.Show(all, [&] {
    std::vector<adminpb::Device> devices(all.devices().begin(), all.devices().end());
    c.printer.Print(DevicesTable(devices, flags.show_secrets));
    c.printer.out() << all.total_size() << " device(s)\n";
  });
  return absl::OkStatus();
}

absl::Status Update(Context& c, const DeviceFlags& flags) {
  adminpb::UpdateDeviceRequest req;
  *req.mutable_device() = flags.ToDevice();
  for (const std::string& p : flags.Mask()) req.mutable_update_mask()->add_paths(p);
  req.set_generate_set_password(flags.generate);
  adminpb::Device resp;
  if (absl::Status s = c.client.Call(&Admin::UpdateDevice, req, &resp); !s.ok()) return s;
  PrintChanged(c, resp, "updated");
  return absl::OkStatus();
}

// One call per device, in order; the first failure stops the rest.
absl::Status Delete(Context& c, const std::vector<std::string>& users) {
  for (const std::string& u : users) {
    adminpb::DeleteDeviceRequest req;
    req.set_set_username(u);
    adminpb::DeleteDeviceResponse resp;
    if (absl::Status s = c.client.Call(&Admin::DeleteDevice, req, &resp); !s.ok()) return s;
    c.printer.Line("device " + u + " deleted");
  }
  return absl::OkStatus();
}

struct ImportFlags {
  std::string file;
  bool replace = false;
};

absl::Status Import(Context& c, const ImportFlags& flags) {
  adminpb::ImportDevicesRequest req;
  absl::StatusOr<std::string> csv = ReadFile(flags.file);
  if (!csv.ok()) return csv.status();
  req.set_csv(*std::move(csv));
  req.set_replace_existing(flags.replace);
  adminpb::ImportDevicesResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ImportDevices, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "imported: " << resp.created() << " created, " << resp.updated()
                    << " updated\n";
  });
  return absl::OkStatus();
}

absl::Status Export(Context& c, const std::string& file) {
  adminpb::ExportDevicesResponse resp;
  absl::Status s = c.client.Call(&Admin::ExportDevices, adminpb::ExportDevicesRequest(), &resp);
  if (!s.ok()) return s;
  if (file.empty()) {
    c.printer.out() << resp.csv();
    return absl::OkStatus();
  }
  if (absl::Status w = rwg::control::WritePrivateFile(file, resp.csv()); !w.ok()) {  // passwords
    return w;
  }
  c.printer.err() << resp.count() << " device(s) written to " << file << "\n";
  return absl::OkStatus();
}

}  // namespace

Table DevicesTable(const std::vector<adminpb::Device>& devices, bool secrets) {
  Table t{{"SET USERNAME", "ICP USERNAME", "MAC", "SITE", "LOCATION", "SRTP", "DESCRIPTION"}, {}};
  if (secrets) {
    t.header.insert(t.header.begin() + 1, "SET PASSWORD");
    t.header.insert(t.header.begin() + 3, "ICP PASSWORD");
  }
  for (const adminpb::Device& d : devices) {
    std::vector<std::string> r = {d.set_username(),     d.icp_username(),
                                  OrDash(d.mac()),      OrDash(d.site()),
                                  OrDash(d.location()), d.srtp_optional() ? "optional" : "required",
                                  d.description()};
    if (secrets) {
      r.insert(r.begin() + 1, d.set_password());
      r.insert(r.begin() + 3, d.icp_password());
    }
    t.rows.push_back(std::move(r));
  }
  return t;
}

FieldRows DeviceFields(const adminpb::Device& device, bool secrets) {
  FieldRows rows;
  for (auto& [k, v] : Flatten(device)) {
    if (!secrets && absl::EndsWith(k, "_password")) continue;
    if (absl::EndsWith(k, "_time_unix")) {
      int64_t t = 0;
      (void)absl::SimpleAtoi(v, &t);  // Flatten wrote it from an integer
      rows.emplace_back(k.substr(0, k.size() - 5), FormatTime(t));
    } else {
      rows.emplace_back(k, v);
    }
  }
  return rows;
}

void RegisterDevice(CommandLine& cli) {
  CLI::App* device = cli.Noun("device", "SIP devices");

  auto add = std::make_shared<DeviceFlags>();
  CLI::App* add_cmd = device->add_subcommand("add", "declare a SIP device");
  add->Register(add_cmd, false);
  cli.On(add_cmd, [add](Context& c) { return Add(c, *add); });

  auto get = std::make_shared<GetFlags>();
  CLI::App* get_cmd = device->add_subcommand("get", "show one device");
  get_cmd->add_option("set_username", get->user, "set-side username")->required();
  get_cmd->add_flag("--show-secrets", get->show_secrets, "include the passwords");
  cli.On(get_cmd, [get](Context& c) { return Get(c, *get); });

  auto list = std::make_shared<ListFlags>();
  CLI::App* list_cmd = device->add_subcommand("list", "list devices");
  list_cmd->add_option("--filter", list->filter,
                       "substring of usernames, description, MAC, site, location");
  list_cmd->add_option("--site", list->site, "only this site");
  list_cmd->add_option("--page-size", list->page_size,
                       "devices per request (all pages are fetched)");
  list_cmd->add_flag("--show-secrets", list->show_secrets, "include the passwords");
  cli.On(list_cmd, [list](Context& c) { return List(c, *list); });

  auto update = std::make_shared<DeviceFlags>();
  CLI::App* update_cmd =
      device->add_subcommand("update", "change fields of a device (only the flags given)");
  update->Register(update_cmd, true);
  cli.On(update_cmd, [update](Context& c) { return Update(c, *update); });

  auto users = std::make_shared<std::vector<std::string>>();
  CLI::App* delete_cmd = device->add_subcommand("delete", "delete devices");
  delete_cmd->add_option("set_username", *users, "set-side usernames")->required();
  cli.On(delete_cmd, [users](Context& c) { return Delete(c, *users); });

  auto import = std::make_shared<ImportFlags>();
  CLI::App* import_cmd =
      device->add_subcommand("import", "import devices from a CSV file (all or nothing)");
  import_cmd->add_option("file", import->file, "CSV file, - for standard input")->required();
  import_cmd->add_flag("--replace", import->replace, "update devices that exist already");
  cli.On(import_cmd, [import](Context& c) { return Import(c, *import); });

  auto file = std::make_shared<std::string>();
  CLI::App* export_cmd =
      device->add_subcommand("export", "export all devices as CSV (with passwords)");
  export_cmd->add_option("-f,--file", *file, "write here instead of standard output");
  cli.On(export_cmd, [file](Context& c) { return Export(c, *file); });
}

}  // namespace rwg::rwgctl
