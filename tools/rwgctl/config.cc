#include "tools/rwgctl/config.h"

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "rwg/admin/v1/admin.grpc.pb.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
namespace pb = ::google::protobuf;
using Admin = adminpb::AdminService::Stub;

// The value of enum field `f` named `v` (any case); the zero value is not accepted.
absl::StatusOr<int> ParseEnum(const pb::FieldDescriptor* f, const std::string& path,
                              const std::string& v) {
  const pb::EnumValueDescriptor* e = f->enum_type()->FindValueByName(absl::AsciiStrToUpper(v));
  if (e == nullptr || e->number() == 0) {
    std::vector<std::string> names;
    for (int k = 1; k < f->enum_type()->value_count(); ++k) {
      names.push_back(f->enum_type()->value(k)->name());
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": '", v, "' is not one of ", absl::StrJoin(names, ", ")));
  }
  return e->number();
}

// Sets scalar or repeated field `f` of `m` from text.
absl::Status SetField(pb::Message* m, const pb::FieldDescriptor* f, const std::string& path,
                      const std::string& value) {
  const pb::Reflection* r = m->GetReflection();
  if (f->is_repeated()) {
    r->ClearField(m, f);
    for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      std::string it(absl::StripAsciiWhitespace(item));
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM) {
        absl::StatusOr<int> e = ParseEnum(f, path, it);
        if (!e.ok()) return e.status();
        r->AddEnumValue(m, f, *e);
      } else {
        r->AddString(m, f, it);
      }
    }
    return absl::OkStatus();
  }
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      r->SetString(m, f, value);
      return absl::OkStatus();
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": '", value, "' is not a number"));
      }
      r->SetUInt32(m, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      std::string v = absl::AsciiStrToLower(value);
      if (v == "true" || v == "yes" || v == "on" || v == "1") {
        r->SetBool(m, f, true);
      } else if (v == "false" || v == "no" || v == "off" || v == "0") {
        r->SetBool(m, f, false);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": '", value, "' is not true or false"));
      }
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      absl::StatusOr<int> e = ParseEnum(f, path, value);
      if (!e.ok()) return e.status();
      r->SetEnumValue(m, f, *e);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": cannot be set from the command line"));
  }
}

absl::Status Get(Context& c, const std::string& field) {
  adminpb::GatewayConfig config;
  if (absl::Status s = c.client.Call(&Admin::GetConfig, adminpb::GetConfigRequest(), &config);
      !s.ok()) {
    return s;
  }
  FieldRows rows = Flatten(config);
  if (!field.empty()) {
    for (const auto& [name, value] : rows) {
      if (name == field) {
        c.printer.out() << value << "\n";
        return absl::OkStatus();
      }
    }
    return absl::InvalidArgumentError(absl::StrCat("'", field, "' is not a configuration field"));
  }
  c.printer.Show(config, [&] { c.printer.Fields(rows); });
  return absl::OkStatus();
}

absl::Status Set(Context& c, const std::vector<std::string>& assignments) {
  absl::StatusOr<adminpb::UpdateConfigRequest> req = ConfigUpdate(assignments);
  if (!req.ok()) return req.status();
  adminpb::UpdateConfigResponse resp;
  if (absl::Status s = c.client.Call(&Admin::UpdateConfig, *req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "configuration updated\n";
    for (const std::string& r : resp.restart_required()) {
      c.printer.out() << "restart needed: " << r << "\n";
    }
  });
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> FieldNames(const pb::Descriptor* d) {
  std::unique_ptr<pb::Message> m(pb::MessageFactory::generated_factory()->GetPrototype(d)->New());
  std::vector<std::string> names;
  for (auto& [name, value] : Flatten(*m)) names.push_back(name);
  return names;
}

absl::Status SetByPath(pb::Message& msg, const std::string& path, const std::string& value) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  pb::Message* m = &msg;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts[i]);
    if (f == nullptr ||
        (i + 1 < parts.size()) != (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is not a configuration field; fields: ",
                       absl::StrJoin(FieldNames(msg.GetDescriptor()), ", ")));
    }
    if (i + 1 < parts.size()) {
      m = m->GetReflection()->MutableMessage(m, f);
      continue;
    }
    return SetField(m, f, path, value);
  }
  return absl::OkStatus();
}

absl::StatusOr<adminpb::UpdateConfigRequest> ConfigUpdate(
    const std::vector<std::string>& assignments) {
  adminpb::UpdateConfigRequest req;
  for (const std::string& a : assignments) {
    size_t eq = a.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("'", a, "' is not field=value"));
    }
    std::string path(absl::StripAsciiWhitespace(a.substr(0, eq)));
    if (absl::Status s = SetByPath(*req.mutable_config(), path, a.substr(eq + 1)); !s.ok()) {
      return s;
    }
    req.mutable_update_mask()->add_paths(path);
  }
  return req;
}

void RegisterConfig(CommandLine& cli) {
  CLI::App* config = cli.Noun("config", "gateway configuration");
  auto field = std::make_shared<std::string>();
  CLI::App* get = config->add_subcommand("get", "show the configuration, or one field");
  get->add_option("field", *field, "e.g. icp.host");
  cli.On(get, [field](Context& c) { return Get(c, *field); });

  auto assignments = std::make_shared<std::vector<std::string>>();
  CLI::App* set = config->add_subcommand(
      "set",
      "change fields: rwgctl config set icp.host=10.0.0.5 sip.srtp_suite=AES_CM_128_HMAC_SHA1_32");
  set->add_option("field=value", *assignments, "one or more assignments")->required();
  cli.On(set, [assignments](Context& c) { return Set(c, *assignments); });
}

}  // namespace rwg::rwgctl
