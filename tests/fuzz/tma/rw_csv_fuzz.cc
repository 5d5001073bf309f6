// Remote Worker CSV (rwgctl tma check / deploy → CheckRemoteWorkerCsv) on an uploaded file,
// then what a deployment does with an accepted one: RenderPhoneFile for each phone.
// Properties: the problems are sorted, UTF-8 (they go into protobuf strings) and decide ok();
// an accepted file's phones have normalized MACs and parameters a phone file can hold; each
// phone's file parses back (ParsePhoneFile) to its parameters; the phones written out by
// ExportRemoteWorkerCsv check again, without a problem, to the same MACs and line credentials.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "services/core/json.h"
#include "services/tma/mac.h"
#include "services/tma/phone_file.h"
#include "services/tma/rw_csv.h"
#include "tests/fuzz/fuzz_support.h"

using rwg::tma::CheckedCsv;
using rwg::tma::CsvProblem;
using rwg::tma::DeviceFacts;
using rwg::tma::Param;
using rwg::tma::Phone;

namespace {

constexpr char kHarness[] = "rw_csv";

bool IsUtf8(const std::string& s) { return rwg::core::ValidUtf8(s) == s; }

// Declared devices: user names starting with a digit, password "pw-<user>"; those ending in
// '9' have a MAC.
std::optional<DeviceFacts> DeclaredOne(const std::string& user) {
  if (user.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(user[0]))) {
    return std::nullopt;
  }
  DeviceFacts d;
  d.set_username = user;
  d.set_password = "pw-" + user;
  if (user.back() == '9') d.mac = "08:00:0f:00:00:09";
  return d;
}

// The check asks for each user name once, all in one call.
std::vector<std::optional<DeviceFacts>> Declared(const std::vector<std::string>& users) {
  RWG_FUZZ_CHECK(kHarness, !users.empty());
  RWG_FUZZ_CHECK(kHarness,
                 std::set<std::string>(users.begin(), users.end()).size() == users.size());
  std::vector<std::optional<DeviceFacts>> out;
  for (const std::string& user : users) out.push_back(DeclaredOne(user));
  return out;
}

const Param* Find(const Phone& phone, const std::string& name) {
  for (const Param& p : phone.params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string csv(reinterpret_cast<const char*>(data) + 1, size - 1);

  rwg::tma::SystemData system;
  if (mode & 1) {
    system.sip_proxy_ip = "rw.example.com";
    system.sip_registrar_ip = "rw.example.com";
    system.https_server = "prov.example.com";
    system.https_path = "0123abcd/ftp_67xxi";
    system.keyboard_script = "https://ipbx.example/kb?x=1";
  }
  const bool system_columns = mode & 2;
  rwg::tma::CsvLimits limits;
  if (mode & 4) {
    limits.max_rows = 8;
    limits.max_cell = 32;
    limits.max_columns = 16;
  }
  limits.max_bytes = 1 << 20;

  const CheckedCsv checked = rwg::tma::CheckRemoteWorkerCsv(csv, system, Declared, limits);
  bool errors = false;
  for (size_t i = 0; i < checked.problems.size(); ++i) {
    const CsvProblem& p = checked.problems[i];
    errors |= !p.warning;
    RWG_FUZZ_CHECK(kHarness, p.row >= 0);
    RWG_FUZZ_CHECK(kHarness, i == 0 || checked.problems[i - 1].row <= p.row);
    RWG_FUZZ_CHECK(kHarness, !p.message.empty());
    RWG_FUZZ_CHECK(kHarness, IsUtf8(p.message) && IsUtf8(p.column));
  }
  RWG_FUZZ_CHECK(kHarness, checked.ok() == !errors);
  if (!checked.ok()) {
    RWG_FUZZ_CHECK(kHarness, checked.phones.empty());
    return 0;
  }
  RWG_FUZZ_CHECK(kHarness, !checked.phones.empty());
  RWG_FUZZ_CHECK(kHarness, checked.phones.size() <= limits.max_rows);

  rwg::tma::PhoneFileOptions options;
  options.trusted_certificate = "CA_Mitel.pem";
  options.comment = "rw_csv_fuzz";
  std::vector<DeviceFacts> devices;
  std::map<std::string, DeviceFacts> by_user;
  for (const Phone& phone : checked.phones) {
    absl::StatusOr<std::string> mac = rwg::tma::NormalizeMac(phone.mac);
    RWG_FUZZ_CHECK(kHarness, mac.ok() && *mac == phone.mac);
    for (const Param& p : phone.params) {
      RWG_FUZZ_CHECK(kHarness, rwg::tma::IsParameterName(p.name));
      RWG_FUZZ_CHECK(kHarness, !p.value.empty() && IsUtf8(p.value));
      RWG_FUZZ_CHECK(kHarness, p.value.find_first_of("\r\n") == std::string::npos);
    }
    absl::StatusOr<std::vector<Param>> parsed =
        rwg::tma::ParsePhoneFile(rwg::tma::RenderPhoneFile(phone.params, options));
    RWG_FUZZ_CHECK(kHarness, parsed.ok());
    RWG_FUZZ_CHECK(kHarness, parsed->size() >= phone.params.size());
    RWG_FUZZ_CHECK(kHarness, std::vector<Param>(
                                 parsed->end() - static_cast<std::ptrdiff_t>(phone.params.size()),
                                 parsed->end()) == phone.params);

    const Param* user = Find(phone, "sip line1 user name");
    const Param* auth = Find(phone, "sip line1 auth name");
    const Param* password = Find(phone, "sip line1 password");
    RWG_FUZZ_CHECK(kHarness, user && auth && password && user->value == phone.user);
    DeviceFacts d;
    d.set_username = phone.user;
    d.set_password = password->value;
    d.mac = phone.mac;
    d.auth_name = auth->value;
    by_user[d.set_username] = d;
    devices.push_back(std::move(d));
  }

  const rwg::tma::ExportedCsv exported =
      rwg::tma::ExportRemoteWorkerCsv(devices, system, system_columns);
  RWG_FUZZ_CHECK(kHarness, exported.skipped.empty());
  rwg::tma::CsvLimits roomy;
  roomy.max_bytes = 64 << 20;
  const CheckedCsv again = rwg::tma::CheckRemoteWorkerCsv(
      exported.csv, system_columns ? rwg::tma::SystemData{} : system,
      [&by_user](const std::vector<std::string>& users) {
        std::vector<std::optional<DeviceFacts>> out;
        for (const std::string& u : users) {
          auto it = by_user.find(u);
          out.push_back(it == by_user.end() ? std::nullopt : std::optional(it->second));
        }
        return out;
      },
      roomy);
  RWG_FUZZ_CHECK(kHarness, again.ok() && again.problems.empty());
  RWG_FUZZ_CHECK(kHarness, again.phones.size() == devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    const Phone& phone = again.phones[i];
    RWG_FUZZ_CHECK(kHarness, phone.mac == devices[i].mac && phone.user == devices[i].set_username);
    const Param* auth = Find(phone, "sip line1 auth name");
    const Param* password = Find(phone, "sip line1 password");
    RWG_FUZZ_CHECK(kHarness, auth && auth->value == devices[i].auth_name);
    RWG_FUZZ_CHECK(kHarness, password && password->value == devices[i].set_password);
  }
  return 0;
}
