// rwgctl: the command line over the rwg admin API (tools/kubectl-rwg runs it against a Helm
// release: `kubectl rwg ...`). Human tables by default, `-o json` for scripts; any failure prints
// one line on stderr and exits non-zero.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "rwg/admin/v1/admin.grpc.pb.h"
#include "rwg/relay/v1/relay.grpc.pb.h"
#include "services/control/private_file.h"

namespace {

namespace adminpb = ::rwg::admin::v1;
namespace relaypb = ::rwg::relay::v1;
namespace pb = ::google::protobuf;

struct Global {
  std::string server = "127.0.0.1:50051";
  std::string ca_cert;
  bool insecure = false;
  std::string token_file;
  std::string output = "table";
  double timeout = 30;
};

// Ends the command with an exit code. Thrown rather than calling std::exit so that main
// returns: the gRPC channel is destroyed and gRPC shuts down (its resolver and handshakes
// freed) before the process exits.
struct Exit {
  int code;
};

// Exits with a one-line error.
[[noreturn]] void Fail(const std::string& msg, int code = 1) {
  std::cerr << "rwgctl: " << msg << "\n";
  throw Exit{code};
}

// The gRPC code's name (gRPC and absl share the numbering), e.g. "INVALID_ARGUMENT".
std::string CodeName(grpc::StatusCode code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "ERROR" : name;
}

void Check(const grpc::Status& s) {
  if (!s.ok()) Fail(absl::StrCat(CodeName(s.error_code()), ": ", s.error_message()));
}

std::string ReadAll(std::istream& in) {
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReadFileOrDie(const std::string& path) {
  if (path == "-") return ReadAll(std::cin);
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(absl::StrCat("cannot read ", path));
  return ReadAll(in);
}

std::string DefaultTokenFile() {
  if (const char* d = std::getenv("RWG_CONFIG_DIR")) return absl::StrCat(d, "/token");
  if (const char* x = std::getenv("XDG_CONFIG_HOME")) return absl::StrCat(x, "/rwg/token");
  const char* home = std::getenv("HOME");
  return absl::StrCat(home ? home : ".", "/.config/rwg/token");
}

// Reads a secret: from the environment variable if set, else from the terminal without echo.
std::string ReadSecret(const char* env, const std::string& prompt, bool from_stdin) {
  if (from_stdin) {
    std::string line;
    std::getline(std::cin, line);
    return std::string(absl::StripTrailingAsciiWhitespace(line));
  }
  if (const char* v = std::getenv(env)) return v;
  if (!isatty(STDIN_FILENO)) {
    Fail(absl::StrCat("no terminal to ask for the ", prompt, "; set ", env,
                      " or use --password-stdin"));
  }
  std::cerr << prompt << ": " << std::flush;
  termios old{};
  tcgetattr(STDIN_FILENO, &old);
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  std::string line;
  std::getline(std::cin, line);
  tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::cerr << "\n";
  return line;
}

class Client {
 public:
  explicit Client(const Global& g) : g_(g) {}

  std::shared_ptr<grpc::Channel> Channel() {
    if (channel_) return channel_;
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (g_.insecure) {
      creds = grpc::InsecureChannelCredentials();
    } else {
      grpc::SslCredentialsOptions ssl;
      if (!g_.ca_cert.empty()) ssl.pem_root_certs = ReadFileOrDie(g_.ca_cert);
      creds = grpc::SslCredentials(ssl);
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(g_.server, creds, args);
    return channel_;
  }

  relaypb::RelayService::Stub& Relay() {
    if (!relay_) relay_ = relaypb::RelayService::NewStub(Channel());
    return *relay_;
  }

  adminpb::AdminService::Stub& Admin() {
    if (!admin_) admin_ = adminpb::AdminService::NewStub(Channel());
    return *admin_;
  }

  std::unique_ptr<grpc::ClientContext> Context(bool with_token = true) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(g_.timeout * 1000)));
    if (with_token) {
      std::string token;
      if (const char* t = std::getenv("RWG_TOKEN")) {
        token = t;
      } else {
        std::ifstream in(TokenFile());
        if (in) std::getline(in, token);
      }
      token = std::string(absl::StripAsciiWhitespace(token));
      if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    }
    return ctx;
  }

  std::string TokenFile() const {
    return g_.token_file.empty() ? DefaultTokenFile() : g_.token_file;
  }

 private:
  const Global& g_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<adminpb::AdminService::Stub> admin_;
  std::unique_ptr<relaypb::RelayService::Stub> relay_;
};

// "host:port" into a relay leg; empty leaves it unset.
void ParseRemote(const std::string& flag, const std::string& value, std::string* host,
                 uint32_t* port) {
  if (value.empty()) return;
  size_t colon = value.rfind(':');
  uint32_t p = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(value.substr(colon + 1), &p) || p == 0 ||
      p > 65535) {
    Fail(absl::StrCat(flag, ": '", value, "' is not host:port"), 2);
  }
  *host = value.substr(0, colon);
  *port = p;
}

std::string DecodeKey(const std::string& flag, const std::string& b64) {
  if (b64.empty()) return "";
  std::string raw;
  if (!absl::Base64Unescape(b64, &raw)) Fail(absl::StrCat(flag, ": not base64"), 2);
  return raw;
}

struct RelayLegFlags {
  std::string suite, remote, key;
  bool new_key = false;
  void Add(CLI::App* cmd, const std::string& leg, bool update) {
    cmd->add_option("--" + leg + "-suite", suite,
                    "AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or RTP");
    cmd->add_option("--" + leg + "-remote", remote, "the remote end's RTP host:port");
    cmd->add_option("--" + leg + "-key", key, "the remote end's SDES key (base64, 30 bytes)");
    if (update) cmd->add_flag("--" + leg + "-new-key", new_key, "the relay makes a new key");
  }
  relaypb::LegRequest Request(const std::string& leg) const {
    relaypb::LegRequest r;
    r.set_suite(suite);
    r.set_remote_key(DecodeKey("--" + leg + "-key", key));
    std::string host;
    uint32_t port = 0;
    ParseRemote("--" + leg + "-remote", remote, &host, &port);
    r.set_remote_address(host);
    r.set_remote_port(port);
    return r;
  }
  bool Given() const { return !suite.empty() || !remote.empty() || !key.empty() || new_key; }
  relaypb::LegUpdate Update(const std::string& leg) const {
    relaypb::LegRequest r = Request(leg);
    relaypb::LegUpdate u;
    u.set_suite(r.suite());
    u.set_remote_key(r.remote_key());
    u.set_remote_address(r.remote_address());
    u.set_remote_port(r.remote_port());
    u.set_new_local_key(new_key);
    return u;
  }
};

std::string ToJson(const pb::Message& m) {
  pb::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  o.add_whitespace = true;
  std::string out;
  (void)pb::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string FieldValue(const pb::Message& m, const pb::FieldDescriptor* f) {
  const pb::Reflection* r = m.GetReflection();
  if (f->is_repeated()) {
    std::vector<std::string> items;
    for (int i = 0; i < r->FieldSize(m, f); ++i) {
      switch (f->cpp_type()) {
        case pb::FieldDescriptor::CPPTYPE_ENUM:
          items.push_back(r->GetRepeatedEnum(m, f, i)->name());
          break;
        case pb::FieldDescriptor::CPPTYPE_STRING:
          items.push_back(r->GetRepeatedString(m, f, i));
          break;
        default:
          items.push_back("?");
      }
    }
    return absl::StrJoin(items, ",");
  }
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return r->GetString(m, f);
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(r->GetUInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(r->GetInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(r->GetInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(r->GetUInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, f) ? "true" : "false";
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnum(m, f)->name();
    default:
      return "?";
  }
}

// Flattens a message into "a.b = value" rows.
void Flatten(const pb::Message& m, const std::string& prefix,
             std::vector<std::pair<std::string, std::string>>& out) {
  const pb::Descriptor* d = m.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    std::string name = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      Flatten(m.GetReflection()->GetMessage(m, f), name, out);
    } else {
      out.emplace_back(name, FieldValue(m, f));
    }
  }
}

std::vector<std::string> FieldNames(const pb::Descriptor* d) {
  std::vector<std::pair<std::string, std::string>> rows;
  std::unique_ptr<pb::Message> m(pb::MessageFactory::generated_factory()->GetPrototype(d)->New());
  Flatten(*m, "", rows);
  std::vector<std::string> names;
  for (auto& r : rows) names.push_back(r.first);
  return names;
}

// Sets `path` (e.g. "icp.host") in `msg` from text.
void SetByPath(pb::Message& msg, const std::string& path, const std::string& value) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  pb::Message* m = &msg;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts[i]);
    if (f == nullptr ||
        (i + 1 < parts.size()) != (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE)) {
      Fail(absl::StrCat("'", path, "' is not a configuration field; fields: ",
                        absl::StrJoin(FieldNames(msg.GetDescriptor()), ", ")));
    }
    const pb::Reflection* r = m->GetReflection();
    if (i + 1 < parts.size()) {
      m = r->MutableMessage(m, f);
      continue;
    }
    auto parse_enum = [&](const std::string& v) -> int {
      const pb::EnumValueDescriptor* e = f->enum_type()->FindValueByName(absl::AsciiStrToUpper(v));
      if (e == nullptr || e->number() == 0) {
        std::vector<std::string> names;
        for (int k = 1; k < f->enum_type()->value_count(); ++k)
          names.push_back(f->enum_type()->value(k)->name());
        Fail(absl::StrCat(path, ": '", v, "' is not one of ", absl::StrJoin(names, ", ")));
      }
      return e->number();
    };
    if (f->is_repeated()) {
      r->ClearField(m, f);
      for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        std::string it(absl::StripAsciiWhitespace(item));
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM) {
          r->AddEnumValue(m, f, parse_enum(it));
        } else {
          r->AddString(m, f, it);
        }
      }
      return;
    }
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        r->SetString(m, f, value);
        return;
      case pb::FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v;
        if (!absl::SimpleAtoi(value, &v))
          Fail(absl::StrCat(path, ": '", value, "' is not a number"));
        r->SetUInt32(m, f, v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        std::string v = absl::AsciiStrToLower(value);
        if (v == "true" || v == "yes" || v == "on" || v == "1")
          r->SetBool(m, f, true);
        else if (v == "false" || v == "no" || v == "off" || v == "0")
          r->SetBool(m, f, false);
        else
          Fail(absl::StrCat(path, ": '", value, "' is not true or false"));
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        r->SetEnumValue(m, f, parse_enum(value));
        return;
      default:
        Fail(absl::StrCat(path, ": cannot be set from the command line"));
    }
  }
}

std::string FormatTime(int64_t unix) {
  if (unix == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(unix),
                          absl::UTCTimeZone());
}

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size());
  for (size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(w[i] - r[i].size() + 2, ' ');
    }
    std::cout << absl::StripTrailingAsciiWhitespace(out) << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

void PrintDevices(const std::vector<adminpb::Device>& devices, bool secrets) {
  std::vector<std::string> header = {"SET USERNAME", "ICP USERNAME", "MAC",        "SITE",
                                     "LOCATION",     "SRTP",         "DESCRIPTION"};
  if (secrets) {
    header.insert(header.begin() + 1, "SET PASSWORD");
    header.insert(header.begin() + 3, "ICP PASSWORD");
  }
  std::vector<std::vector<std::string>> rows;
  for (const adminpb::Device& d : devices) {
    std::vector<std::string> r = {d.set_username(),
                                  d.icp_username(),
                                  d.mac().empty() ? "-" : d.mac(),
                                  d.site().empty() ? "-" : d.site(),
                                  d.location().empty() ? "-" : d.location(),
                                  d.srtp_optional() ? "optional" : "required",
                                  d.description()};
    if (secrets) {
      r.insert(r.begin() + 1, d.set_password());
      r.insert(r.begin() + 3, d.icp_password());
    }
    rows.push_back(std::move(r));
  }
  PrintTable(header, rows);
}

void PrintHash(const adminpb::HashKey& h, const Global& g) {
  if (g.output == "json") {
    std::cout << ToJson(h);
    return;
  }
  std::cout << "hash key:      " << h.key() << "\n"
            << "download path: " << h.download_path() << "\n"
            << "created:       " << FormatTime(h.create_time_unix()) << "\n";
  if (!h.warning().empty()) std::cerr << "WARNING: " << h.warning() << "\n";
}

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

}  // namespace

int main(int argc, char** argv) {
  Global g;
  CLI::App app("rwgctl: administer an rwg Remote Worker Gateway", "rwgctl");
  app.require_subcommand(1);
  app.add_option("-s,--server", g.server, "admin API address host:port")
      ->envname("RWG_SERVER")
      ->capture_default_str();
  app.add_option("--ca-cert", g.ca_cert, "PEM CA certificate that signed the server's certificate")
      ->envname("RWG_CA_CERT");
  app.add_flag("--insecure", g.insecure, "plaintext gRPC (development only)")
      ->envname("RWG_INSECURE");
  app.add_option("--token-file", g.token_file,
                 "where the login token is kept (default ~/.config/rwg/token)")
      ->envname("RWG_TOKEN_FILE");
  app.add_option("-o,--output", g.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", g.timeout, "seconds to wait for an answer")->capture_default_str();
  Client client(g);

  // login / logout / passwd / health
  std::string user = "admin";
  bool password_stdin = false;
  auto* login = app.add_subcommand("login", "log in and keep the session token");
  login->add_option("-u,--user", user, "admin username")
      ->envname("RWG_USER")
      ->capture_default_str();
  login->add_flag("--password-stdin", password_stdin,
                  "read the password from standard input (else RWG_PASSWORD or a prompt)");
  login->callback([&]() {
    adminpb::LoginRequest req;
    req.set_username(user);
    req.set_password(ReadSecret("RWG_PASSWORD", "password", password_stdin));
    adminpb::LoginResponse resp;
    auto ctx = client.Context(false);
    Check(client.Admin().Login(ctx.get(), req, &resp));
    std::string path = client.TokenFile();
    std::string dir = path.substr(0, path.rfind('/'));
    if (!dir.empty() && dir != path) {
      std::string cmd;  // create parent directories one by one
      for (absl::string_view part : absl::StrSplit(dir, '/', absl::SkipEmpty())) {
        cmd = absl::StrCat(cmd, "/", part);
        mkdir(cmd.c_str(), 0700);
      }
    }
    // Mode 0600 from the first byte; a link planted at the path is replaced, not followed.
    absl::Status written = rwg::control::WritePrivateFile(path, resp.token() + "\n");
    if (!written.ok()) Fail(std::string(written.message()));
    if (g.output == "json") {
      std::cout << "{\"user\": \"" << user << "\", \"expires_at_unix\": " << resp.expires_at_unix()
                << "}\n";
    } else {
      std::cout << "logged in as " << user << " until " << FormatTime(resp.expires_at_unix())
                << "\n";
    }
  });

  auto* logout = app.add_subcommand("logout", "end the session");
  logout->callback([&]() {
    adminpb::LogoutResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().Logout(ctx.get(), adminpb::LogoutRequest(), &resp));
    std::remove(client.TokenFile().c_str());
    std::cout << "logged out\n";
  });

  auto* passwd = app.add_subcommand(
      "passwd", "change your admin password (RWG_PASSWORD/RWG_NEW_PASSWORD or prompts)");
  passwd->callback([&]() {
    adminpb::ChangePasswordRequest req;
    req.set_current_password(ReadSecret("RWG_PASSWORD", "current password", false));
    req.set_new_password(ReadSecret("RWG_NEW_PASSWORD", "new password", false));
    adminpb::ChangePasswordResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ChangePassword(ctx.get(), req, &resp));
    std::cout << "password changed\n";
  });

  auto* health = app.add_subcommand("health", "ask the server's grpc.health.v1 service");
  health->callback([&]() {
    auto stub = grpc::health::v1::Health::NewStub(client.Channel());
    grpc::health::v1::HealthCheckResponse resp;
    auto ctx = client.Context(false);
    Check(stub->Check(ctx.get(), grpc::health::v1::HealthCheckRequest(), &resp));
    std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()) << "\n";
    if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) throw Exit{1};
  });

  auto* services = app.add_subcommand(
      "services", "list the gRPC services the server offers (server reflection)");
  services->callback([&]() {
    namespace refl = grpc::reflection::v1alpha;
    auto stub = refl::ServerReflection::NewStub(client.Channel());
    auto ctx = client.Context(false);
    auto stream = stub->ServerReflectionInfo(ctx.get());
    refl::ServerReflectionRequest req;
    req.set_list_services("");
    stream->Write(req);
    stream->WritesDone();
    refl::ServerReflectionResponse resp;
    std::vector<std::string> names;
    while (stream->Read(&resp)) {
      for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
    }
    Check(stream->Finish());
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) std::cout << n << "\n";
  });

  // config
  auto* config = app.add_subcommand("config", "gateway configuration");
  config->require_subcommand(1);
  std::string config_path;
  auto* config_get = config->add_subcommand("get", "show the configuration, or one field");
  config_get->add_option("field", config_path, "e.g. icp.host");
  config_get->callback([&]() {
    adminpb::GatewayConfig c;
    auto ctx = client.Context();
    Check(client.Admin().GetConfig(ctx.get(), adminpb::GetConfigRequest(), &c));
    std::vector<std::pair<std::string, std::string>> rows;
    Flatten(c, "", rows);
    if (!config_path.empty()) {
      for (auto& [k, v] : rows) {
        if (k == config_path) {
          std::cout << v << "\n";
          return;
        }
      }
      Fail(absl::StrCat("'", config_path, "' is not a configuration field"));
    }
    if (g.output == "json") {
      std::cout << ToJson(c);
      return;
    }
    std::vector<std::vector<std::string>> table;
    for (auto& [k, v] : rows) table.push_back({k, v});
    PrintTable({"FIELD", "VALUE"}, table);
  });
  std::vector<std::string> assignments;
  auto* config_set = config->add_subcommand(
      "set",
      "change fields: rwgctl config set icp.host=10.0.0.5 sip.srtp_suite=AES_CM_128_HMAC_SHA1_32");
  config_set->add_option("field=value", assignments, "one or more assignments")->required();
  config_set->callback([&]() {
    adminpb::UpdateConfigRequest req;
    for (const std::string& a : assignments) {
      size_t eq = a.find('=');
      if (eq == std::string::npos) Fail(absl::StrCat("'", a, "' is not field=value"));
      std::string path(absl::StripAsciiWhitespace(a.substr(0, eq)));
      SetByPath(*req.mutable_config(), path, a.substr(eq + 1));
      req.mutable_update_mask()->add_paths(path);
    }
    adminpb::UpdateConfigResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().UpdateConfig(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::cout << "configuration updated\n";
    for (const std::string& r : resp.restart_required())
      std::cout << "restart needed: " << r << "\n";
  });

  // device
  auto* device = app.add_subcommand("device", "SIP devices");
  device->require_subcommand(1);
  DeviceFlags add_flags;
  auto* dev_add = device->add_subcommand("add", "declare a SIP device");
  add_flags.Register(dev_add, false);
  dev_add->callback([&]() {
    adminpb::CreateDeviceRequest req;
    *req.mutable_device() = add_flags.ToDevice();
    req.set_generate_set_password(add_flags.generate);
    adminpb::Device resp;
    auto ctx = client.Context();
    Check(client.Admin().CreateDevice(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::cout << "device " << resp.set_username() << " created\n";
    if (!resp.set_password().empty())
      std::cout << "set-side password: " << resp.set_password() << "\n";
  });

  std::string dev_user;
  bool show_secrets = false;
  auto* dev_get = device->add_subcommand("get", "show one device");
  dev_get->add_option("set_username", dev_user, "set-side username")->required();
  dev_get->add_flag("--show-secrets", show_secrets, "include the passwords");
  dev_get->callback([&]() {
    adminpb::GetDeviceRequest req;
    req.set_set_username(dev_user);
    req.set_show_secrets(show_secrets);
    adminpb::Device d;
    auto ctx = client.Context();
    Check(client.Admin().GetDevice(ctx.get(), req, &d));
    if (g.output == "json") {
      std::cout << ToJson(d);
      return;
    }
    std::vector<std::pair<std::string, std::string>> rows;
    Flatten(d, "", rows);
    std::vector<std::vector<std::string>> table;
    for (auto& [k, v] : rows) {
      if (!show_secrets && absl::EndsWith(k, "_password")) continue;
      if (absl::EndsWith(k, "_time_unix")) {
        int64_t t = 0;
        (void)absl::SimpleAtoi(v, &t);
        table.push_back({k.substr(0, k.size() - 5), FormatTime(t)});
      } else {
        table.push_back({k, v});
      }
    }
    PrintTable({"FIELD", "VALUE"}, table);
  });

  std::string filter, site;
  int page_size = 0;
  auto* dev_list = device->add_subcommand("list", "list devices");
  dev_list->add_option("--filter", filter,
                       "substring of usernames, description, MAC, site, location");
  dev_list->add_option("--site", site, "only this site");
  dev_list->add_option("--page-size", page_size, "devices per request (all pages are fetched)");
  dev_list->add_flag("--show-secrets", show_secrets, "include the passwords");
  dev_list->callback([&]() {
    adminpb::ListDevicesRequest req;
    req.set_filter(filter);
    req.set_site(site);
    req.set_page_size(page_size);
    req.set_show_secrets(show_secrets);
    std::vector<adminpb::Device> all;
    int total = 0;
    do {
      adminpb::ListDevicesResponse resp;
      auto ctx = client.Context();
      Check(client.Admin().ListDevices(ctx.get(), req, &resp));
      for (auto& d : resp.devices()) all.push_back(d);
      total = resp.total_size();
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty());
    if (g.output == "json") {
      adminpb::ListDevicesResponse out;
      for (auto& d : all) *out.add_devices() = d;
      out.set_total_size(total);
      std::cout << ToJson(out);
      return;
    }
    PrintDevices(all, show_secrets);
    std::cout << total << " device(s)\n";
  });

  DeviceFlags upd_flags;
  auto* dev_update =
      device->add_subcommand("update", "change fields of a device (only the flags given)");
  upd_flags.Register(dev_update, true);
  dev_update->callback([&]() {
    adminpb::UpdateDeviceRequest req;
    *req.mutable_device() = upd_flags.ToDevice();
    for (const std::string& p : upd_flags.Mask()) req.mutable_update_mask()->add_paths(p);
    req.set_generate_set_password(upd_flags.generate);
    adminpb::Device resp;
    auto ctx = client.Context();
    Check(client.Admin().UpdateDevice(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::cout << "device " << resp.set_username() << " updated\n";
    if (!resp.set_password().empty())
      std::cout << "set-side password: " << resp.set_password() << "\n";
  });

  std::vector<std::string> del_users;
  auto* dev_delete = device->add_subcommand("delete", "delete devices");
  dev_delete->add_option("set_username", del_users, "set-side usernames")->required();
  dev_delete->callback([&]() {
    for (const std::string& u : del_users) {
      adminpb::DeleteDeviceRequest req;
      req.set_set_username(u);
      adminpb::DeleteDeviceResponse resp;
      auto ctx = client.Context();
      Check(client.Admin().DeleteDevice(ctx.get(), req, &resp));
      if (g.output != "json") std::cout << "device " << u << " deleted\n";
    }
  });

  std::string import_file;
  bool replace = false;
  auto* dev_import =
      device->add_subcommand("import", "import devices from a CSV file (all or nothing)");
  dev_import->add_option("file", import_file, "CSV file, - for standard input")->required();
  dev_import->add_flag("--replace", replace, "update devices that exist already");
  dev_import->callback([&]() {
    adminpb::ImportDevicesRequest req;
    req.set_csv(ReadFileOrDie(import_file));
    req.set_replace_existing(replace);
    adminpb::ImportDevicesResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ImportDevices(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::cout << "imported: " << resp.created() << " created, " << resp.updated() << " updated\n";
  });

  std::string export_file;
  auto* dev_export = device->add_subcommand("export", "export all devices as CSV (with passwords)");
  dev_export->add_option("-f,--file", export_file, "write here instead of standard output");
  dev_export->callback([&]() {
    adminpb::ExportDevicesResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ExportDevices(ctx.get(), adminpb::ExportDevicesRequest(), &resp));
    if (export_file.empty()) {
      std::cout << resp.csv();
      return;
    }
    absl::Status written =
        rwg::control::WritePrivateFile(export_file, resp.csv());  // has passwords
    if (!written.ok()) Fail(std::string(written.message()));
    std::cerr << resp.count() << " device(s) written to " << export_file << "\n";
  });

  // registration
  auto* registration = app.add_subcommand("registration", "phones registered through the SIP edge");
  registration->require_subcommand(1);
  std::string reg_filter;
  auto* reg_list = registration->add_subcommand(
      "list", "who is registered, from where, since when, on which instance");
  reg_list->add_option("--filter", reg_filter, "substring of usernames, source or instance");
  reg_list->callback([&]() {
    adminpb::ListRegistrationsRequest req;
    req.set_filter(reg_filter);
    adminpb::ListRegistrationsResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ListRegistrations(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : resp.registrations()) {
      rows.push_back({r.set_username(), r.icp_username(), r.source(), r.transport(), r.instance(),
                      r.reachable() ? "yes" : "no", FormatTime(r.since_unix()),
                      FormatTime(r.expires_at_unix())});
    }
    PrintTable({"SET USERNAME", "ICP USERNAME", "SOURCE", "TRANSPORT", "INSTANCE", "REACHABLE",
                "SINCE", "EXPIRES"},
               rows);
    std::cout << resp.registrations_size() << " registered, " << resp.licences() << " licence(s)\n";
  });
  std::string reg_user;
  auto* reg_show = registration->add_subcommand("show", "one registration in full");
  reg_show->add_option("set_username", reg_user, "set-side username")->required();
  reg_show->callback([&]() {
    adminpb::GetRegistrationRequest req;
    req.set_set_username(reg_user);
    adminpb::Registration r;
    auto ctx = client.Context();
    Check(client.Admin().GetRegistration(ctx.get(), req, &r));
    if (g.output == "json") {
      std::cout << ToJson(r);
      return;
    }
    std::vector<std::vector<std::string>> rows = {{"set_username", r.set_username()},
                                                  {"icp_username", r.icp_username()},
                                                  {"contacts", absl::StrJoin(r.contacts(), " ")},
                                                  {"source", r.source()},
                                                  {"transport", r.transport()},
                                                  {"instance", r.instance()},
                                                  {"reachable", r.reachable() ? "yes" : "no"},
                                                  {"since", FormatTime(r.since_unix())},
                                                  {"expires", FormatTime(r.expires_at_unix())}};
    PrintTable({"FIELD", "VALUE"}, rows);
  });

  // call
  auto* call = app.add_subcommand("call", "calls through the SIP edge");
  call->require_subcommand(1);
  std::string call_filter, call_id;
  auto* call_list = call->add_subcommand("list", "active calls, all instances");
  call_list->add_option("--filter", call_filter, "substring of device, number or instance");
  call_list->callback([&]() {
    adminpb::ListCallsRequest req;
    req.set_filter(call_filter);
    adminpb::ListCallsResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ListCalls(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& c : resp.calls()) {
      rows.push_back({c.id(), c.direction(), c.device(), c.number(), c.state(), c.instance(),
                      FormatTime(c.started_unix()),
                      c.answered_unix() ? FormatTime(c.answered_unix()) : "-"});
    }
    PrintTable({"ID", "DIRECTION", "DEVICE", "NUMBER", "STATE", "INSTANCE", "STARTED", "ANSWERED"},
               rows);
    std::cout << resp.calls_size() << " call(s)\n";
  });
  auto* call_show = call->add_subcommand("show", "one call in full");
  call_show->add_option("id", call_id, "the call's id (call list)")->required();
  call_show->callback([&]() {
    adminpb::GetCallRequest req;
    req.set_id(call_id);
    adminpb::Call c;
    auto ctx = client.Context();
    Check(client.Admin().GetCall(ctx.get(), req, &c));
    if (g.output == "json") {
      std::cout << ToJson(c);
      return;
    }
    PrintTable({"FIELD", "VALUE"},
               {{"id", c.id()},
                {"direction", c.direction()},
                {"device", c.device()},
                {"icp_username", c.icp_username()},
                {"number", c.number()},
                {"state", c.state()},
                {"instance", c.instance()},
                {"started", FormatTime(c.started_unix())},
                {"answered", c.answered_unix() ? FormatTime(c.answered_unix()) : "-"},
                {"relay session", c.relay_session().empty() ? "-" : c.relay_session()},
                {"relay instance", c.relay_instance().empty() ? "-" : c.relay_instance()},
                {"phone side Call-ID", c.set().call_id()},
                {"iPBX side Call-ID", c.icp().call_id()}});
  });
  auto* call_hangup = call->add_subcommand("hangup", "end a call on both sides");
  call_hangup->add_option("id", call_id, "the call's id (call list)")->required();
  call_hangup->callback([&]() {
    adminpb::HangupCallRequest req;
    req.set_id(call_id);
    adminpb::HangupCallResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().HangupCall(ctx.get(), req, &resp));
    if (g.output != "json") std::cout << "call " << call_id << " is being ended\n";
  });

  // ban
  auto* ban = app.add_subcommand("ban", "temporary bans of abusive SIP sources");
  ban->require_subcommand(1);
  ban->add_subcommand("list", "show the bans in force")->callback([&]() {
    adminpb::ListBansResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ListBans(ctx.get(), adminpb::ListBansRequest(), &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& b : resp.bans()) {
      rows.push_back({b.id(), b.kind(), b.source(), b.user().empty() ? "-" : b.user(),
                      FormatTime(b.until_unix()), b.reason()});
    }
    PrintTable({"ID", "KIND", "SOURCE", "USER", "UNTIL", "REASON"}, rows);
  });
  std::vector<std::string> ban_ids;
  auto* ban_remove = ban->add_subcommand("remove", "lift bans now");
  ban_remove->add_option("id", ban_ids, "ban ids as listed, e.g. src:198.51.100.7")->required();
  ban_remove->callback([&]() {
    for (const std::string& id : ban_ids) {
      adminpb::DeleteBanRequest req;
      req.set_id(id);
      adminpb::DeleteBanResponse resp;
      auto ctx = client.Context();
      Check(client.Admin().DeleteBan(ctx.get(), req, &resp));
      if (g.output != "json") std::cout << "ban " << id << " lifted\n";
    }
  });

  // emergency numbers by location (R-EMERG)
  auto* emergency = app.add_subcommand("emergency", "emergency numbers by location");
  emergency->require_subcommand(1);
  std::string em_location, em_number, em_dial, em_description;
  auto em_print = [&](const std::vector<const adminpb::EmergencyRoute*>& routes) {
    std::vector<std::vector<std::string>> rows;
    for (const auto* r : routes) {
      rows.push_back({r->location(), r->number(), r->dial(),
                      r->description().empty() ? "-" : r->description()});
    }
    PrintTable({"LOCATION", "NUMBER", "DIAL", "DESCRIPTION"}, rows);
  };
  auto* em_set = emergency->add_subcommand(
      "set", "route a special number for a location and the locations under it");
  em_set->add_option("location", em_location, "\"*\" (every location) or a path, e.g. FR/Paris")
      ->required();
  em_set->add_option("number", em_number, "what the phone dials, e.g. 112")->required();
  em_set->add_option("dial", em_dial, "what the iPBX receives instead")->required();
  em_set->add_option("--description", em_description, "free text");
  em_set->callback([&]() {
    adminpb::SetEmergencyRouteRequest req;
    req.mutable_route()->set_location(em_location);
    req.mutable_route()->set_number(em_number);
    req.mutable_route()->set_dial(em_dial);
    req.mutable_route()->set_description(em_description);
    adminpb::EmergencyRoute resp;
    auto ctx = client.Context();
    Check(client.Admin().SetEmergencyRoute(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::cout << "calls to " << resp.number() << " from " << resp.location() << " dial "
              << resp.dial() << "\n";
  });
  auto* em_list = emergency->add_subcommand("list", "show the emergency routes");
  em_list->add_option("--location", em_location, "only this location's own routes");
  em_list->callback([&]() {
    adminpb::ListEmergencyRoutesRequest req;
    req.set_location(em_location);
    adminpb::ListEmergencyRoutesResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ListEmergencyRoutes(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::vector<const adminpb::EmergencyRoute*> routes;
    for (const auto& r : resp.routes()) routes.push_back(&r);
    em_print(routes);
    if (!resp.damaged().empty()) {
      std::cout << "\ndamaged, not used for calls (delete and set again):\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& d : resp.damaged()) rows.push_back({d.location(), d.number(), d.error()});
      PrintTable({"LOCATION", "NUMBER", "ERROR"}, rows);
    }
  });
  auto* em_delete = emergency->add_subcommand("delete", "remove a location's route of a number");
  em_delete->add_option("location", em_location, "the route's location")->required();
  em_delete->add_option("number", em_number, "the special number")->required();
  em_delete->callback([&]() {
    adminpb::DeleteEmergencyRouteRequest req;
    req.set_location(em_location);
    req.set_number(em_number);
    adminpb::DeleteEmergencyRouteResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().DeleteEmergencyRoute(ctx.get(), req, &resp));
    if (g.output != "json") {
      std::cout << "route of " << em_number << " at " << em_location << " deleted\n";
    }
  });
  auto* em_resolve =
      emergency->add_subcommand("resolve", "which route a call from a location to a number takes");
  em_resolve->add_option("location", em_location, "a device's location, e.g. FR/Paris/15e")
      ->required();
  em_resolve->add_option("number", em_number, "the number dialled")->required();
  em_resolve->callback([&]() {
    adminpb::ResolveEmergencyRequest req;
    req.set_location(em_location);
    req.set_number(em_number);
    adminpb::ResolveEmergencyResponse resp;
    auto ctx = client.Context();
    Check(client.Admin().ResolveEmergency(ctx.get(), req, &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    if (!resp.found()) {
      std::cout << "no emergency route for " << em_number << " from " << em_location << "\n";
      return;
    }
    em_print({&resp.route()});
  });

  // relay: a media-relay instance's API (--server points at it, --token-file holds its token)
  auto* relay = app.add_subcommand(
      "relay", "sessions of a media-relay instance (--server: its API, --token-file: its token)");
  relay->require_subcommand(1);
  auto print_session = [&](const relaypb::Session& s) { std::cout << ToJson(s); };
  relay->add_subcommand("list", "sessions, ports in use")->callback([&]() {
    relaypb::ListResponse resp;
    auto ctx = client.Context();
    Check(client.Relay().List(ctx.get(), relaypb::ListRequest(), &resp));
    if (g.output == "json") {
      std::cout << ToJson(resp);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : resp.sessions()) {
      rows.push_back({s.id(), s.call_id(), absl::StrCat(s.set().local_port()), s.set().suite(),
                      absl::StrCat(s.icp().local_port()), s.icp().suite(),
                      absl::StrCat(s.set().stats().rtp_in().packets(), "/",
                                   s.icp().stats().rtp_in().packets()),
                      s.idle() ? "yes" : "no"});
    }
    PrintTable(
        {"ID", "CALL", "SET PORT", "SET SUITE", "ICP PORT", "ICP SUITE", "IN SET/ICP", "IDLE"},
        rows);
    std::cout << "ports used " << resp.ports_used() << ", free " << resp.ports_free()
              << (resp.draining() ? ", draining" : "") << "\n";
  });
  std::string relay_id, relay_call;
  RelayLegFlags relay_set, relay_icp;
  auto* r_alloc = relay->add_subcommand("allocate", "open a session (for tests and diagnosis)");
  r_alloc->add_option("--call-id", relay_call, "the call it belongs to");
  relay_set.Add(r_alloc, "set", false);
  relay_icp.Add(r_alloc, "icp", false);
  r_alloc->callback([&]() {
    relaypb::AllocateRequest req;
    req.set_call_id(relay_call);
    *req.mutable_set() = relay_set.Request("set");
    *req.mutable_icp() = relay_icp.Request("icp");
    relaypb::Session resp;
    auto ctx = client.Context();
    Check(client.Relay().Allocate(ctx.get(), req, &resp));
    print_session(resp);
  });
  auto* r_update = relay->add_subcommand("update", "new remote address or keys for a session");
  r_update->add_option("id", relay_id, "session id")->required();
  relay_set.Add(r_update, "set", true);
  relay_icp.Add(r_update, "icp", true);
  r_update->callback([&]() {
    relaypb::UpdateRequest req;
    req.set_id(relay_id);
    if (relay_set.Given()) *req.mutable_set() = relay_set.Update("set");
    if (relay_icp.Given()) *req.mutable_icp() = relay_icp.Update("icp");
    relaypb::Session resp;
    auto ctx = client.Context();
    Check(client.Relay().Update(ctx.get(), req, &resp));
    print_session(resp);
  });
  auto* r_show = relay->add_subcommand("show", "one session with its counters");
  r_show->add_option("id", relay_id, "session id")->required();
  r_show->callback([&]() {
    relaypb::GetRequest req;
    req.set_id(relay_id);
    relaypb::Session resp;
    auto ctx = client.Context();
    Check(client.Relay().Get(ctx.get(), req, &resp));
    print_session(resp);
  });
  auto* r_delete = relay->add_subcommand("delete", "close a session");
  r_delete->add_option("id", relay_id, "session id")->required();
  r_delete->callback([&]() {
    relaypb::DeleteRequest req;
    req.set_id(relay_id);
    relaypb::DeleteResponse resp;
    auto ctx = client.Context();
    Check(client.Relay().Delete(ctx.get(), req, &resp));
    if (g.output == "json") {
      print_session(resp.final());
    } else {
      std::cout << "session " << relay_id << " closed\n";
    }
  });
  relay->add_subcommand("drain", "take no new sessions (existing ones go on)")->callback([&]() {
    relaypb::DrainResponse resp;
    auto ctx = client.Context();
    Check(client.Relay().Drain(ctx.get(), relaypb::DrainRequest(), &resp));
    std::cout << "draining; " << resp.sessions() << " sessions still open\n";
  });

  // hash
  auto* hash = app.add_subcommand("hash", "provisioning hash key");
  hash->require_subcommand(1);
  hash->add_subcommand("show", "show the key and the download path")->callback([&]() {
    adminpb::HashKey h;
    auto ctx = client.Context();
    Check(client.Admin().GetHashKey(ctx.get(), adminpb::GetHashKeyRequest(), &h));
    PrintHash(h, g);
  });
  hash->add_subcommand("generate", "generate the first key")->callback([&]() {
    adminpb::HashKey h;
    auto ctx = client.Context();
    Check(client.Admin().GenerateHashKey(ctx.get(), adminpb::GenerateHashKeyRequest(), &h));
    PrintHash(h, g);
  });
  bool confirm = false;
  auto* regen =
      hash->add_subcommand("regenerate", "replace the key: EVERY DEPLOYED PHONE LOSES ITS PATH");
  regen->add_flag("--confirm", confirm, "yes, break every deployed phone's download path");
  regen->add_flag("--password-stdin", password_stdin, "read your password from standard input");
  regen->callback([&]() {
    adminpb::RegenerateHashKeyRequest req;
    req.set_confirm(confirm);
    if (confirm)
      req.set_current_password(ReadSecret("RWG_PASSWORD", "your admin password", password_stdin));
    adminpb::HashKey h;
    auto ctx = client.Context();
    Check(client.Admin().RegenerateHashKey(ctx.get(), req, &h));
    PrintHash(h, g);
  });
  std::string import_key;
  auto* himport =
      hash->add_subcommand("import", "use an existing key (e.g. from the MiVoice 5000)");
  himport->add_option("key", import_key, "32 hex digits")->required();
  himport->add_flag("--confirm", confirm, "replace an existing key");
  himport->add_flag("--password-stdin", password_stdin, "read your password from standard input");
  himport->callback([&]() {
    adminpb::ImportHashKeyRequest req;
    req.set_key(import_key);
    req.set_confirm(confirm);
    if (confirm)
      req.set_current_password(ReadSecret("RWG_PASSWORD", "your admin password", password_stdin));
    adminpb::HashKey h;
    auto ctx = client.Context();
    Check(client.Admin().ImportHashKey(ctx.get(), req, &h));
    PrintHash(h, g);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "rwgctl: " << e.what() << "\n";
    return 2;
  } catch (const Exit& e) {
    return e.code;
  }
  return 0;
}
