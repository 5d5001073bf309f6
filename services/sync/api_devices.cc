// The sync API's device calls: the list, devices_mbg.csv, the iPBX's device writes and the
// change feed (devices.h writes devices out).
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/core/device_changes.h"
#include "services/core/log.h"
#include "services/sync/api_internal.h"

namespace rwg::sync {

HttpResponse SyncApi::Impl::Devices(absl::string_view query) {
  int page_size = 1000;
  if (std::optional<std::string> p = QueryValue(query, "page_size")) {
    if (!absl::SimpleAtoi(*p, &page_size) || page_size < 1 || page_size > 10000) {
      return JsonError(400, "page_size: between 1 and 10000");
    }
  }
  const std::string after = QueryValue(query, "page_token").value_or("");
  absl::StatusOr<DeviceSnapshot> snap = devices_.Read();
  if (!snap.ok()) return Fail(snap.status());
  HttpResponse r;
  r.status = 200;
  r.content_type = "application/json";
  r.body = DevicesJson(*snap, after, static_cast<size_t>(page_size));
  return r;
}

HttpResponse SyncApi::Impl::DevicesCsv() {
  absl::StatusOr<DeviceSnapshot> snap = devices_.Read();
  if (!snap.ok()) return Fail(snap.status());
  HttpResponse r;
  r.status = 200;
  r.content_type = "text/csv; charset=utf-8";
  r.headers.emplace_back("Content-Disposition", "attachment; filename=\"devices_mbg.csv\"");
  r.headers.emplace_back("X-Rwg-Revision", std::to_string(snap->revision));
  r.body = MbgCsv(*snap);
  return r;
}

HttpResponse SyncApi::Impl::WriteDevice(Endpoint e, const Caller& caller,
                                        const std::string& set_username) {
  if (e == Endpoint::kDeviceDelete) {
    if (absl::Status s = writes_.Delete(set_username); !s.ok()) return Fail(s);
    core::log::Info("device deleted through the sync API",
                    {{"consumer", caller.consumer.name}, {"device", set_username}});
    return Json(200, {{"deleted", set_username}});
  }
  // The fields come signed: from the form body (or the query), never from oauth_* names.
  admin::v1::Device d;
  std::vector<std::string> mask;
  bool generate = false;
  std::map<std::string, std::string> given;
  for (const auto& [name, value] : caller.params.all) {
    if (absl::StartsWith(name, "oauth_")) continue;
    if (!given.emplace(name, value).second) {
      return JsonError(400, absl::StrCat(name, ": given twice"));
    }
  }
  for (const auto& [name, value] : given) {
    if (name == "set_username" && e == Endpoint::kDeviceCreate) {
      d.set_set_username(value);
    } else if (name == "set_password") {
      d.set_set_password(value);
    } else if (name == "icp_username") {
      d.set_icp_username(value);
    } else if (name == "icp_password") {
      d.set_icp_password(value);
    } else if (name == "description") {
      d.set_description(value);
    } else if (name == "mac") {
      d.set_mac(value);
    } else if (name == "site") {
      d.set_site(value);
    } else if (name == "location") {
      d.set_location(value);
    } else if (name == "srtp_optional" || name == "generate_set_password") {
      bool b = false;
      if (value == "true" || value == "yes" || value == "1") {
        b = true;
      } else if (value != "false" && value != "no" && value != "0" && !value.empty()) {
        return JsonError(400, absl::StrCat(name, ": true or false"));
      }
      if (name == "srtp_optional") {
        d.set_srtp_optional(b);
      } else {
        generate = b;
        continue;
      }
    } else {
      return JsonError(400,
                       absl::StrCat(name,
                                    ": not a device field (set_username on create, set_password, "
                                    "icp_username, icp_password, description, mac, site, location, "
                                    "srtp_optional, generate_set_password)"));
    }
    if (name != "set_username") mask.push_back(name);
  }
  absl::StatusOr<admin::v1::Device> written;
  int64_t revision = 0;
  if (e == Endpoint::kDeviceCreate) {
    written = writes_.Create(d, generate, &revision);
  } else {
    d.set_set_username(set_username);
    written = writes_.Update(d, mask, generate, &revision);
  }
  if (!written.ok()) return Fail(written.status());
  core::log::Info(e == Endpoint::kDeviceCreate ? "device created through the sync API"
                                               : "device updated through the sync API",
                  {{"consumer", caller.consumer.name},
                   {"device", written->set_username()},
                   {"fields", absl::StrJoin(mask, ",")}});
  written->clear_icp_password();
  HttpResponse r;
  r.status = e == Endpoint::kDeviceCreate ? 201 : 200;
  r.body = absl::StrCat("{\"device\":", DeviceJson(SyncDevice{*std::move(written), revision}), "}");
  return r;
}

std::optional<HttpResponse> SyncApi::Impl::Changes(int64_t since, size_t limit, bool final_answer) {
  absl::StatusOr<core::DeviceChangeLog> log = core::ReadDeviceChanges(redis_, since, limit);
  if (!log.ok()) return Fail(log.status());
  if (log->lost) {
    return Json(
        410, {{"error", absl::StrCat("changes since revision ", since, " are not kept (kept: from ",
                                     log->oldest, " to ", log->revision,
                                     "): read the whole list again (GET /api/v1/devices)")},
              {"revision", log->revision}});
  }
  if (log->changes.empty() && !final_answer) return std::nullopt;
  absl::StatusOr<std::string> body = ChangesJson(*log, devices_);
  if (!body.ok()) return Fail(body.status());
  HttpResponse r;
  r.body = *std::move(body);
  return r;
}

}  // namespace rwg::sync
