// Calls through the SIP edge, as kept in Redis (SIP edge part 2): each active call's dialog
// state, so that `rwgctl call list|show|hangup` sees every instance's calls and a surviving
// instance can end the calls of one that died.
//
// Redis: rwg:call:<id> holds the call's JSON record (24 h expiry, rewritten at each change),
// the set rwg:calls their ids; control asks the instance holding a call to end it by publishing
// "hangup <id>" on rwg:edge:events.
//
// The record's one codec is here: sip-edge writes it (EncodeCallRecord) and reads it back to
// end the calls of a dead instance, control reads it for `rwgctl call` (DecodeCallRecord).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "services/core/keys.h"
#include "services/core/redis.h"

namespace rwg::core {

// One of a call's two dialogs ("set": toward the phone, "icp": toward the iPBX), as far as
// another instance needs it to send a BYE in it.
struct CallLegRecord {
  std::string call_id;
  std::string local_uri;  // name-addr without tag
  std::string local_tag;
  std::string remote_uri;
  std::string remote_tag;
  std::string remote_target;
  std::vector<std::string> route;  // Route header values for in-dialog requests
  uint32_t cseq = 0;               // the last CSeq rwg sent in this dialog
  bool operator==(const CallLegRecord&) const = default;
};

// The media relay session of a call.
struct CallRelayRecord {
  std::string id;
  std::string instance;
  std::string grpc;  // the relay instance's API address
  bool operator==(const CallRelayRecord&) const = default;
};

// The record of rwg:call:<id>. JSON object, field names as below ("started_unix", ...; the
// legs "set" and "icp", "relay" only when the call has a session). A missing field is its
// default; unknown fields are ignored.
struct CallRecord {
  std::string id;
  std::string instance;   // the sip-edge instance holding the call
  std::string direction;  // "outbound" (phone -> iPBX) or "inbound"
  std::string device;     // the device's set-side username
  std::string icp_username;
  std::string number;  // dialled (outbound) or calling (inbound)
  std::string state;   // "setup", "early", "confirmed" or "ending"
  int64_t started_unix = 0;
  int64_t answered_unix = 0;  // 0: not answered
  CallLegRecord set;
  CallLegRecord icp;
  std::optional<CallRelayRecord> relay;
  bool operator==(const CallRecord&) const = default;
};

// `r` as its JSON record. Bytes of its strings that are not UTF-8 become U+FFFD (JsonDump).
std::string EncodeCallRecord(const CallRecord& r);

// The record `text` (never throws). DataLoss when it is not a JSON object or a field has the
// wrong type or range; the message names the field ("call record: set.cseq: not a number").
absl::StatusOr<CallRecord> DecodeCallRecord(std::string_view text);

// The instance that wrote `text`, even when the rest of the record is damaged: its "instance"
// when that is a string; empty otherwise (not JSON, no owner). For dropping the damaged
// records of a dead instance.
std::string CallRecordOwner(std::string_view text);

// The records of the calls `ids`, in order (nil for a call gone since), read a few hundred at
// a time (MGET).
absl::StatusOr<std::vector<RedisReply>> ReadCallRecords(RedisClient& redis,
                                                        const std::vector<std::string>& ids);

}  // namespace rwg::core
