// Which phones fetched their configuration file: provisioning records the last successful
// fetch (200, 206 or 304 to a GET) of each phone's `<MAC>.cfg` in the Redis hash
// `rwg:prov:fetched` (kPhoneFetchesKey): field the MAC address (12 upper-case hex digits),
// value "<unix ms>,<source address>". Only files the store has are recorded (a 404 never
// writes), so the hash is bounded by the store. The deployment inventory (R-TMA) reads it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/core/redis.h"

namespace rwg::core {

struct PhoneFetch {
  std::string mac;     // 12 upper-case hex digits
  absl::Time time;     // kept to the millisecond
  std::string source;  // the phone's address as provisioning saw it
  bool operator==(const PhoneFetch&) const = default;
};

// Whether `mac` is a MAC address as the hash's fields are: 12 upper-case hex digits.
bool IsPhoneFetchMac(absl::string_view mac);

// A fetch's value in the hash ("<unix ms>,<source>"), and back: DataLoss naming the MAC and
// the part when the value is damaged.
std::string EncodePhoneFetch(const PhoneFetch& fetch);
absl::StatusOr<PhoneFetch> DecodePhoneFetch(absl::string_view mac, absl::string_view value);

class PhoneFetches {
 public:
  using Fetch = PhoneFetch;

  explicit PhoneFetches(RedisClient& redis) : redis_(redis) {}

  // Writes the fetches in one HSET (one round trip); of several for one MAC, the newest.
  // InvalidArgument naming the entry for a MAC that is not 12 upper-case hex digits (nothing
  // is written then); Unavailable when Redis cannot be reached. Nothing to write: no command.
  absl::Status Record(const std::vector<Fetch>& fetches);
  // The last fetch of each MAC given (HMGET); a MAC never fetched, or whose value is damaged
  // (logged), is absent from the map. InvalidArgument naming the entry for a malformed MAC.
  absl::StatusOr<std::map<std::string, Fetch>> Get(const std::vector<std::string>& macs);
  // Every fetch recorded (HSCAN, in pages); damaged values are skipped and logged.
  absl::StatusOr<std::map<std::string, Fetch>> All();
  // Removes the MACs' fetches (HDEL), e.g. for phones taken out of a deployment.
  absl::Status Forget(const std::vector<std::string>& macs);

 private:
  RedisClient& redis_;
};

}  // namespace rwg::core
