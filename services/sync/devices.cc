#include "services/sync/devices.h"

#include <csv.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "services/control/device_csv.h"
#include "services/control/store.h"
#include "services/core/devices.h"
#include "services/core/keys.h"
#include "services/core/log.h"

namespace rwg::sync {

namespace adminpb = ::rwg::admin::v1;

namespace {

// KEYS: revision, devices, revisions. The revision, every device record and every device's
// revision, read at one instant.
constexpr char kReadAll[] = R"lua(
return {redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2]),
        redis.call('HGETALL', KEYS[3])}
)lua";

int64_t RevisionOf(const core::RedisReply& r) {
  int64_t rev = 0;
  return r.type == core::RedisReply::Type::kString && absl::SimpleAtoi(r.str, &rev) ? rev : 0;
}

nlohmann::json DeviceObject(const SyncDevice& s) {
  const adminpb::Device& d = s.device;
  return {{"id", d.set_username()},
          {"set_username", d.set_username()},
          {"set_password", d.set_password()},
          {"icp_username", d.icp_username()},
          {"description", d.description()},
          {"mac", d.mac()},
          {"site", d.site()},
          {"location", d.location()},
          {"updated", d.update_time_unix()},
          {"revision", s.revision}};
}

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void CsvCell(std::string& out, const std::string& raw, bool last) {
  const std::string v = control::EscapeCsvCell(raw);
  std::string buf(v.size() * 2 + 2, '\0');
  const size_t n = csv_write(buf.data(), buf.size(), v.data(), v.size());
  out.append(buf.data(), n);
  out.append(last ? "\r\n" : ",");
}

}  // namespace

absl::StatusOr<adminpb::Device> DeviceReader::Open(const std::string& user,
                                                   const std::string& json) const {
  absl::StatusOr<adminpb::Device> d = control::DeviceFromJson(json);
  if (!d.ok()) return d.status();
  if (d->set_username() != user) {
    return absl::DataLossError("the record's set_username is not its key");
  }
  absl::StatusOr<std::string> password =
      box_.Open(d->set_password(), core::DeviceSecretContext(user, "set_password"));
  if (!password.ok()) return absl::DataLossError("the set-side password does not open");
  d->set_set_password(*password);
  d->clear_icp_password();
  return d;
}

absl::StatusOr<DeviceSnapshot> DeviceReader::Read() {
  absl::StatusOr<core::RedisReply> r = redis_.Eval(
      kReadAll, {core::kDevicesRevisionKey, core::kDevicesKey, core::kDeviceRevisionsKey}, {});
  if (!r.ok()) return r.status();
  if (r->elements.size() != 3) return absl::InternalError("unexpected reply reading devices");
  DeviceSnapshot s;
  if (!absl::SimpleAtoi(r->elements[0].str, &s.revision)) {
    return absl::DataLossError("rwg:devices:rev is not a number");
  }
  const std::vector<core::RedisReply>& kv = r->elements[1].elements;
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    absl::StatusOr<adminpb::Device> d = Open(kv[i].str, kv[i + 1].str);
    if (!d.ok()) {
      ++s.damaged;
      core::log::Error("device left out of the sync answer",
                       {{"device", kv[i].str}, {"error", std::string(d.status().message())}});
      continue;
    }
    s.devices.emplace(kv[i].str, SyncDevice{*std::move(d), 0});
  }
  const std::vector<core::RedisReply>& revs = r->elements[2].elements;
  for (size_t i = 0; i + 1 < revs.size(); i += 2) {
    auto it = s.devices.find(revs[i].str);
    if (it != s.devices.end()) it->second.revision = RevisionOf(revs[i + 1]);
  }
  return s;
}

absl::StatusOr<std::map<std::string, SyncDevice>> DeviceReader::ReadSome(
    const std::vector<std::string>& set_usernames) {
  std::map<std::string, SyncDevice> out;
  if (set_usernames.empty()) return out;
  std::vector<std::string> records = {"HMGET", core::kDevicesKey};
  records.insert(records.end(), set_usernames.begin(), set_usernames.end());
  std::vector<std::string> revisions = {"HMGET", core::kDeviceRevisionsKey};
  revisions.insert(revisions.end(), set_usernames.begin(), set_usernames.end());
  // One round trip of two reads (sent again to a new master after a failover); a device
  // written between them shows its new record with the revision before: each change of the
  // feed carries its own revision anyway.
  absl::StatusOr<std::vector<core::RedisReply>> got = redis_.Pipeline({records, revisions});
  if (!got.ok()) return got.status();
  if (got->size() != 2 || (*got)[0].elements.size() != set_usernames.size() ||
      (*got)[1].elements.size() != set_usernames.size()) {
    return absl::InternalError("unexpected reply reading devices");
  }
  const core::RedisReply& rec = (*got)[0];
  const core::RedisReply& rev = (*got)[1];
  for (size_t i = 0; i < set_usernames.size() && i < rec.elements.size(); ++i) {
    if (rec.elements[i].is_nil()) continue;
    absl::StatusOr<adminpb::Device> d = Open(set_usernames[i], rec.elements[i].str);
    if (!d.ok()) {
      core::log::Error(
          "device left out of the sync answer",
          {{"device", set_usernames[i]}, {"error", std::string(d.status().message())}});
      continue;
    }
    const int64_t revision = i < rev.elements.size() ? RevisionOf(rev.elements[i]) : 0;
    out.emplace(set_usernames[i], SyncDevice{*std::move(d), revision});
  }
  return out;
}

std::string DeviceJson(const SyncDevice& d) { return Dump(DeviceObject(d)); }

std::string DevicesJson(const DeviceSnapshot& s, const std::string& after, size_t page_size) {
  nlohmann::json list = nlohmann::json::array();
  auto it = after.empty() ? s.devices.begin() : s.devices.upper_bound(after);
  for (; it != s.devices.end() && list.size() < page_size; ++it) {
    list.push_back(DeviceObject(it->second));
  }
  nlohmann::json out = {{"revision", s.revision}, {"devices", std::move(list)}};
  if (it != s.devices.end()) {
    out["next_page_token"] = std::prev(it)->first;
  }
  return Dump(out);
}

std::string MbgCsv(const DeviceSnapshot& s) {
  std::string out = "Login,NA,Password\r\n";
  out.reserve(s.devices.size() * 48 + out.size());
  for (const auto& [user, entry] : s.devices) {
    const adminpb::Device& d = entry.device;
    CsvCell(out, d.set_username(), false);
    CsvCell(out, d.icp_username(), false);
    CsvCell(out, d.set_password(), true);
  }
  return out;
}

absl::StatusOr<std::string> ChangesJson(const core::DeviceChangeLog& log, DeviceReader& reader) {
  std::vector<std::string> users;
  users.reserve(log.changes.size());
  for (const core::DeviceChange& c : log.changes) {
    if (c.op != "deleted") users.push_back(c.set_username);
  }
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  absl::StatusOr<std::map<std::string, SyncDevice>> now = reader.ReadSome(users);
  if (!now.ok()) return now.status();
  nlohmann::json changes = nlohmann::json::array();
  for (const core::DeviceChange& c : log.changes) {
    nlohmann::json one = {{"revision", c.revision},
                          {"op", c.op},
                          {"set_username", c.set_username},
                          {"set_password_changed", c.set_password_changed}};
    auto d = now->find(c.set_username);
    if (c.op != "deleted" && d != now->end()) one["device"] = DeviceObject(d->second);
    changes.push_back(std::move(one));
  }
  const int64_t last = log.changes.empty() ? log.revision : log.changes.back().revision;
  return Dump({{"revision", log.more ? last : log.revision},
               {"changes", std::move(changes)},
               {"more", log.more}});
}

}  // namespace rwg::sync
