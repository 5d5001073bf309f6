#include "services/core/phone_fetches.h"

#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/keys.h"
#include "services/core/log.h"

namespace rwg::core {
namespace {

// Fields asked for in one HSCAN page.
constexpr char kScanCount[] = "1000";

absl::Status CheckMacs(const std::vector<std::string>& macs, absl::string_view what) {
  for (size_t i = 0; i < macs.size(); ++i) {
    if (!IsPhoneFetchMac(macs[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "[", i, "]: '", macs[i], "' is not 12 upper-case hex digits"));
    }
  }
  return absl::OkStatus();
}

// Adds a field and value read from the hash to `out`; a damaged value is logged and skipped.
void Take(const std::string& mac, const RedisReply& value, std::map<std::string, PhoneFetch>& out) {
  if (value.type != RedisReply::Type::kString) return;
  if (!IsPhoneFetchMac(mac)) {
    log::Warn("phone fetch of a field that is not a MAC skipped", {{"field", mac}});
    return;
  }
  absl::StatusOr<PhoneFetch> f = DecodePhoneFetch(mac, value.str);
  if (!f.ok()) {
    log::Warn("damaged phone fetch skipped", {{"error", std::string(f.status().message())}});
    return;
  }
  out[mac] = *std::move(f);
}

}  // namespace

bool IsPhoneFetchMac(absl::string_view mac) {
  if (mac.size() != 12) return false;
  for (char c : mac) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && (c < 'A' || c > 'F')) return false;
  }
  return true;
}

std::string EncodePhoneFetch(const PhoneFetch& fetch) {
  return absl::StrCat(absl::ToUnixMillis(fetch.time), ",", fetch.source);
}

absl::StatusOr<PhoneFetch> DecodePhoneFetch(absl::string_view mac, absl::string_view value) {
  const size_t comma = value.find(',');
  if (comma == absl::string_view::npos) {
    return absl::DataLossError(
        absl::StrCat("phone fetch ", mac, ": not '<unix ms>,<source address>'"));
  }
  int64_t ms = 0;
  if (!absl::SimpleAtoi(value.substr(0, comma), &ms)) {
    return absl::DataLossError(absl::StrCat("phone fetch ", mac, ": time: not a number"));
  }
  PhoneFetch f;
  f.mac = std::string(mac);
  f.time = absl::FromUnixMillis(ms);
  f.source = std::string(value.substr(comma + 1));
  return f;
}

absl::Status PhoneFetches::Record(const std::vector<Fetch>& fetches) {
  std::map<std::string, const Fetch*> newest;
  for (size_t i = 0; i < fetches.size(); ++i) {
    const Fetch& f = fetches[i];
    if (!IsPhoneFetchMac(f.mac)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fetches[", i, "].mac: '", f.mac, "' is not 12 upper-case hex digits"));
    }
    const Fetch*& kept = newest[f.mac];
    if (kept == nullptr || kept->time <= f.time) kept = &f;
  }
  if (newest.empty()) return absl::OkStatus();
  std::vector<std::string> args;
  args.reserve(2 + 2 * newest.size());
  args.emplace_back("HSET");
  args.emplace_back(kPhoneFetchesKey);
  for (const auto& [mac, f] : newest) {
    args.push_back(mac);
    args.push_back(EncodePhoneFetch(*f));
  }
  absl::StatusOr<RedisReply> r = redis_.Command(args);
  return r.status();
}

absl::StatusOr<std::map<std::string, PhoneFetch>> PhoneFetches::Get(
    const std::vector<std::string>& macs) {
  if (absl::Status s = CheckMacs(macs, "macs"); !s.ok()) return s;
  std::map<std::string, Fetch> out;
  if (macs.empty()) return out;
  std::vector<std::string> args = {"HMGET", kPhoneFetchesKey};
  args.insert(args.end(), macs.begin(), macs.end());
  absl::StatusOr<RedisReply> r = redis_.Command(args);
  if (!r.ok()) return r.status();
  if (r->type != RedisReply::Type::kArray || r->elements.size() != macs.size()) {
    return absl::InternalError("HMGET rwg:prov:fetched: unexpected reply");
  }
  for (size_t i = 0; i < macs.size(); ++i) Take(macs[i], r->elements[i], out);
  return out;
}

absl::StatusOr<std::map<std::string, PhoneFetch>> PhoneFetches::All() {
  std::map<std::string, Fetch> out;
  std::string cursor = "0";
  do {
    absl::StatusOr<RedisReply> r =
        redis_.Command({"HSCAN", kPhoneFetchesKey, cursor, "COUNT", kScanCount});
    if (!r.ok()) return r.status();
    if (r->type != RedisReply::Type::kArray || r->elements.size() != 2 ||
        r->elements[1].type != RedisReply::Type::kArray ||
        r->elements[1].elements.size() % 2 != 0) {
      return absl::InternalError("HSCAN rwg:prov:fetched: unexpected reply");
    }
    cursor = r->elements[0].str;
    const std::vector<RedisReply>& page = r->elements[1].elements;
    for (size_t i = 0; i + 1 < page.size(); i += 2) Take(page[i].str, page[i + 1], out);
  } while (cursor != "0");
  return out;
}

absl::Status PhoneFetches::Forget(const std::vector<std::string>& macs) {
  if (absl::Status s = CheckMacs(macs, "macs"); !s.ok()) return s;
  if (macs.empty()) return absl::OkStatus();
  std::vector<std::string> args = {"HDEL", kPhoneFetchesKey};
  args.insert(args.end(), macs.begin(), macs.end());
  return redis_.Command(args).status();
}

}  // namespace rwg::core
