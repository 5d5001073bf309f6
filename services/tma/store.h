// What tma keeps in Redis (keys in services/core/keys.h, docs/tma.md "State"): download
// servers (passwords sealed), deployments, the events log, the inventory and, per server, the
// SHA-256 of each file tma last wrote there. Everything a running deployment needs is here,
// so another instance (or the same one restarted) carries on where it stopped.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rwg/tma/v1/tma.pb.h"
#include "services/core/clock.h"
#include "services/core/crypto.h"
#include "services/core/redis.h"

namespace rwg::tma {

namespace pb = ::rwg::tma::v1;

// One file of a deployment's plan.
struct PlannedFile {
  std::string name;
  std::string role;  // "phone", "global", "firmware", "certificate", "other"
  std::string sha256;
  uint64_t size = 0;
  // Phone files: whose.
  std::string mac;
  std::string device;
  std::string site;
};

struct StoreLimits {
  size_t max_deployments = 100;  // kept; the oldest finished ones are forgotten
  size_t max_events = 200000;    // in the whole log
  size_t max_events_per_deployment = 50000;
};

class TmaStore {
 public:
  TmaStore(core::RedisClient& redis, const core::SecretBox& box, core::Clock& clock,
           StoreLimits limits = {});

  // Servers. The password travels in clear in `s` and is sealed here; what is read back has
  // it only with `with_password`.
  absl::StatusOr<bool> AddServer(const pb::Server& s);  // false: the name exists
  absl::Status ReplaceServer(const pb::Server& s);      // the server exists (checked by caller)
  absl::StatusOr<std::optional<pb::Server>> GetServer(const std::string& name, bool with_password);
  absl::StatusOr<bool> DeleteServer(const std::string& name);
  absl::StatusOr<std::vector<pb::Server>> ListServers();

  // A new deployment, PENDING: its record, plan and files' content, in the set of those to
  // run, and its first event. `record` has id, server, description, phones, warnings.
  absl::Status CreateDeployment(const pb::Deployment& record, const std::vector<PlannedFile>& plan,
                                const std::vector<std::string>& contents);
  absl::StatusOr<std::optional<pb::Deployment>> GetDeployment(const std::string& id);
  absl::StatusOr<std::vector<pb::Deployment>> ListDeployments();  // newest first
  absl::StatusOr<std::vector<PlannedFile>> Plan(const std::string& id);
  absl::StatusOr<std::set<std::string>> DoneFiles(const std::string& id);
  // NOT_FOUND once the deployment completed (contents are dropped then).
  absl::StatusOr<std::string> Content(const std::string& id, const std::string& name);
  // Several files' contents in one round trip, in the order of `names`; NOT_FOUND as above.
  absl::StatusOr<std::vector<std::string>> Contents(const std::string& id,
                                                    const std::vector<std::string>& names);
  absl::StatusOr<std::vector<std::string>> Active();

  // The lease of the instance running a deployment: taken when free or already `owner`'s.
  absl::StatusOr<bool> TakeLease(const std::string& id, const std::string& owner,
                                 absl::Duration ttl);
  absl::Status ReleaseLease(const std::string& id, const std::string& owner);

  absl::Status SetRunning(const std::string& id);
  // COMPLETED or FAILED: out of the active set; contents dropped when completed.
  absl::Status Finish(const std::string& id, pb::DeploymentState state, const std::string& error);
  // FAILED → PENDING again (contents still there); false when not FAILED.
  absl::StatusOr<bool> Resume(const std::string& id);

  // A file is on the server with its content: counted once however often this is called (a
  // restart may write a file twice, never count it twice), the server's manifest, the
  // inventory for a phone file, and an event, in one step. False: already counted.
  absl::StatusOr<bool> FileDone(const std::string& id, const std::string& server,
                                const PlannedFile& f, bool unchanged);
  // FileDone for several files in one step (one round trip); how many were newly counted.
  struct Done {
    const PlannedFile* file;
    bool unchanged;
  };
  absl::StatusOr<size_t> FilesDone(const std::string& id, const std::string& server,
                                   const std::vector<Done>& files);

  absl::Status AddEvent(const std::string& deployment, const std::string& action,
                        const std::string& file, const std::string& detail);
  // AddEvent where the work it records goes on whether or not Redis took the event: a failure
  // is logged (the work's own outcome is in the deployment's record).
  void RecordEvent(const std::string& deployment, const std::string& action,
                   const std::string& file, const std::string& detail);
  absl::StatusOr<std::vector<pb::Event>> Events(const std::string& deployment, uint64_t after_seq,
                                                size_t limit);

  // File name → SHA-256 of what tma last wrote on `server`.
  absl::StatusOr<std::map<std::string, std::string>> Manifest(const std::string& server);
  absl::Status ForgetFiles(const std::string& server, const std::vector<std::string>& names);

  // Entries with mac, site, device, deployment, server, file, sha256, deployed_unix_ms.
  absl::StatusOr<std::vector<pb::InventoryEntry>> Inventory();
  absl::Status DeleteInventory(const std::vector<std::string>& macs);

 private:
  absl::StatusOr<std::string> EventJson(const std::string& deployment, const std::string& action,
                                        const std::string& file, const std::string& detail) const;
  absl::Status ForgetOldDeployments();

  core::RedisClient& redis_;
  const core::SecretBox& box_;
  core::Clock& clock_;
  StoreLimits limits_;
};

}  // namespace rwg::tma
