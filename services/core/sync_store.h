// The sync API's consumers and tokens (R-SYNC, docs/sync-api.md) in Redis. control writes
// consumers and approves, rejects, renews and revokes tokens (rwgctl sync ...); the sync
// service reads consumers and creates and exchanges tokens. Secrets (consumer secrets, token
// secrets, verifiers) are sealed at rest with the at-rest key; records are JSON.
//
// Redis keys (services/core/keys.h):
//   rwg:sync:consumers            hash    name -> consumer JSON (secret sealed)
//   rwg:sync:consumers:id         hash    consumer id (oauth_consumer_key) -> name
//   rwg:sync:token:<token>        string  token JSON (secret and verifier sealed), expiring
//                                         with the token
//   rwg:sync:tokens               zset    token -> expiry (unix s): every token, for listing,
//                                         reset and pruning
//   rwg:sync:callback:<name>      hash    the consumer's change-callback delivery (written by
//                                         sync; see SyncCallbackStatus)
// Every multi-key change is one Lua script: nothing is half written when Redis fails.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/core/crypto.h"
#include "services/core/redis.h"

namespace rwg::core {

// Limits of the consumer's identity (seed §5.4.6): an id of at most 40 printable ASCII
// characters (0x21-0x7E), a generated shared secret of 40 characters.
inline constexpr size_t kSyncConsumerIdMax = 40;
inline constexpr size_t kSyncConsumerSecretLength = 40;
// At most this many consumers (the per-consumer metrics stay bounded).
inline constexpr size_t kSyncConsumersMax = 64;
inline constexpr absl::Duration kSyncTemporaryTokenLife = absl::Hours(1);
inline constexpr absl::Duration kSyncAccessTokenLife = absl::Hours(24 * 365);
// Wrong verifiers accepted for one temporary token before it is void.
inline constexpr int kSyncVerifierAttempts = 5;

struct SyncConsumer {
  std::string name;    // the admin's name for it: 1-64 of [A-Za-z0-9._-]
  std::string id;      // oauth_consumer_key (kSyncConsumerIdMax printable ASCII)
  std::string secret;  // the shared secret (plain here, sealed in Redis)
  bool enabled = true;
  // Addresses or CIDRs the consumer may call from; empty: the iPBX's host in the gateway
  // configuration (icp.host).
  std::vector<std::string> sources;
  absl::Time created = absl::UnixEpoch();
  // Where rwg POSTs a signed notice when a set-side password changes (docs/sync-api.md,
  // "Change callbacks"): an https:// URL (ValidateSyncCallbackUrl), empty for none.
  std::string callback_url;
  // The device revision current when callback_url was set: notices start after it (no
  // backlog), and a delivery status recorded for another (url, from) is not this one's.
  int64_t callback_from = 0;
};

inline constexpr size_t kSyncCallbackUrlMax = 512;

// An https:// URL split as a client needs it.
struct HttpsUrl {
  std::string host;  // name or address (an IPv6 address without its brackets)
  int port = 443;
  std::string target;       // path and query, at least "/"
  std::string host_header;  // as the Host header and the signature want it: host[:port]
};
// Refuses (InvalidArgument naming "callback_url") anything but https://host[:port][/path][?q]
// of at most kSyncCallbackUrlMax printable ASCII characters without user info or fragment.
absl::StatusOr<HttpsUrl> ParseSyncCallbackUrl(absl::string_view url);

// The delivery of a consumer's change callbacks, as sync last left it. A status recorded for
// another URL or another callback_from (the URL was set again since) does not count: the
// delivery starts afresh at callback_from.
struct SyncCallbackStatus {
  int64_t delivered_revision = 0;  // every notice up to this revision is delivered (or skipped)
  int failures = 0;                // consecutive failed attempts
  std::string last_error;          // of the last attempt that failed, or a skip; "" after a success
  absl::Time last_attempt = absl::UnixEpoch();  // epoch: none yet
  absl::Time next_attempt = absl::UnixEpoch();  // not before this after a failure
};

enum class SyncTokenKind { kTemporary, kAccess };

// A temporary token is pending until the admin approves it (a verifier is made) or rejects
// it; exchanged, it is used. An access token is active until revoked.
enum class SyncTokenState { kPending, kApproved, kRejected, kUsed, kActive, kRevoked };

struct SyncToken {
  std::string token;   // oauth_token: public, the record's key
  std::string secret;  // oauth_token_secret (plain here, sealed in Redis)
  SyncTokenKind kind = SyncTokenKind::kTemporary;
  SyncTokenState state = SyncTokenState::kPending;
  std::string consumer;  // the consumer's name
  std::string source;    // the address that asked for it
  absl::Time created = absl::UnixEpoch();
  absl::Time expires = absl::UnixEpoch();
  std::string verifier;       // approved temporary tokens (plain here, sealed in Redis)
  int verifier_failures = 0;  // wrong verifiers given so far
  std::string access_token;   // a used temporary token: the access token it became
};

absl::string_view SyncTokenKindName(SyncTokenKind kind);     // "temporary", "access"
absl::string_view SyncTokenStateName(SyncTokenState state);  // "pending", ..., "revoked"

// What checking a consumer's fields found wrong, naming the field ("id: 41 characters, at
// most 40"); OK when valid.
absl::Status ValidateSyncConsumer(const SyncConsumer& c);

class SyncStore {
 public:
  SyncStore(RedisClient& redis, const SecretBox& box) : redis_(redis), box_(box) {}

  // Consumers. AddConsumer refuses (AlreadyExists naming the field) a name or id in use, and
  // (ResourceExhausted) more than kSyncConsumersMax.
  absl::Status AddConsumer(const SyncConsumer& c);
  absl::StatusOr<std::optional<SyncConsumer>> ConsumerByName(const std::string& name);
  absl::StatusOr<std::optional<SyncConsumer>> ConsumerById(const std::string& id);
  absl::StatusOr<std::vector<SyncConsumer>> ListConsumers();  // sorted by name
  // NotFound when there is no such consumer.
  absl::Status SetConsumerEnabled(const std::string& name, bool enabled);
  // Replaces the secret and revokes every token of the consumer, in one step (the seed's
  // "change the login settings"); returns how many tokens were revoked.
  absl::StatusOr<int> ResetConsumer(const std::string& name, const std::string& new_secret);
  // Sets (or, with "", clears) the consumer's callback URL, validated; notices start after
  // the device revision current now. NotFound when there is no such consumer.
  absl::Status SetConsumerCallback(const std::string& name, const std::string& url);
  // The delivery status of `c`'s callbacks (fresh at c.callback_from when none is recorded
  // for its URL), and its replacement (recorded for c's URL and callback_from; nothing is
  // written once the consumer is deleted or its URL set again).
  absl::StatusOr<SyncCallbackStatus> CallbackStatus(const SyncConsumer& c);
  absl::Status PutCallbackStatus(const SyncConsumer& c, const SyncCallbackStatus& status);
  // Deletes the consumer and its tokens; false when there was none.
  absl::StatusOr<bool> DeleteConsumer(const std::string& name);

  // Tokens. PutToken writes a new token (AlreadyExists if the token exists).
  absl::Status PutToken(const SyncToken& t);
  absl::StatusOr<std::optional<SyncToken>> GetToken(const std::string& token);
  // Every token not yet expired, newest first.
  absl::StatusOr<std::vector<SyncToken>> ListTokens();
  // Pending → approved with `verifier`; FailedPrecondition naming the state otherwise,
  // NotFound when there is none (or it expired).
  absl::Status ApproveToken(const std::string& token, const std::string& verifier);
  // Pending or approved → rejected.
  absl::Status RejectToken(const std::string& token);
  // A wrong verifier for an approved temporary token: counts it; at kSyncVerifierAttempts
  // the token becomes rejected. Returns the failures so far.
  absl::StatusOr<int> CountVerifierFailure(const std::string& token);
  // The exchange (RFC 5849 §2.3), atomically: the temporary token `temporary`, still
  // approved with `verifier_failures` unchanged since it was read, becomes used and
  // `access` is written. FailedPrecondition when the temporary token changed meanwhile (used
  // by a concurrent exchange, rejected, expired).
  absl::Status ExchangeToken(const SyncToken& temporary, const SyncToken& access);
  // An active access token's expiry moved to `expires`.
  absl::Status RenewToken(const std::string& token, absl::Time expires);
  // Any token → revoked (kept until it would have expired, so that its use is refused as
  // revoked rather than unknown).
  absl::Status RevokeToken(const std::string& token);

 private:
  // Reads the consumer `name` and its tokens, applies `change` (null: deletes them all; false:
  // nothing written, InvalidArgument) and writes the consumer and the tokens whose state
  // changed in one script, if nothing changed meanwhile. Returns the tokens changed, -1 when
  // something changed meanwhile (the caller tries again), NotFound when there is no consumer.
  absl::StatusOr<int> ChangeConsumer(
      const std::string& name,
      const std::function<bool(SyncConsumer&, std::vector<SyncToken>&)>& change);
  // Reads the token, applies `change` and writes it back (a new expiry if given) if it did not
  // change meanwhile, retrying a few times. Returns its verifier failures.
  absl::StatusOr<int> ChangeToken(const std::string& token,
                                  const std::function<absl::Status(SyncToken&)>& change,
                                  std::optional<absl::Time> expires = std::nullopt);

  RedisClient& redis_;
  const SecretBox& box_;
};

}  // namespace rwg::core
