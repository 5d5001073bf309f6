// Request handling of the provisioning server: what a parsed request gets. A banned source
// 403, a wrong hash (judged first, in constant time) the same 404 whatever it is, counted
// against its source; then the path's rules (request_path.h), and either the XML proxy or a
// file of the store with its validators, conditions and ranges (http_rules.h, file_cache.h).
// Unknown MAC files asked for under the right hash are counted too; a source over either
// threshold is banned. A phone's fetch of its own <MAC>.cfg is noted for the deployment
// inventory (fetch_recorder.h). No sockets here: the connection workers (worker.h) call it.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "services/core/clock.h"
#include "services/provisioning/answer.h"
#include "services/provisioning/file_cache.h"
#include "services/provisioning/misses.h"
#include "services/provisioning/server.h"
#include "services/provisioning/state.h"

namespace rwg::provisioning {

class RequestHandler {
 public:
  // Registers the request, byte, miss and ban counters in `registry`.
  RequestHandler(const ServerOptions& options, SharedState& state, core::Clock& clock,
                 prometheus::Registry& registry);
  ~RequestHandler();
  RequestHandler(const RequestHandler&) = delete;
  RequestHandler& operator=(const RequestHandler&) = delete;

  // Opens the store directory (options.store_dir); CloseStore closes it.
  absl::Status OpenStore();
  void CloseStore();

  // `source` is the requester's core::SourceKey (what misses and bans go by), `address` its
  // address. A GET of a phone's <MAC>.cfg answered with the file (200, 206, 304) is noted in
  // the state's FetchRecorder with `address`; a HEAD is not a fetch.
  Answer Handle(const Request& req, const std::string& source, const std::string& address);
  // Counts an answer written (rwg_provisioning_requests_total, _bytes_total).
  void Count(const Answer& a, uint64_t body_bytes);

 private:
  Answer Miss(const std::string& source);
  void MacMiss(const std::string& source, const std::string& mac);
  void BanFor(const std::string& source, const std::string& reason);
  Answer ServeFile(const Request& req, const std::string& name);

  const ServerOptions& options_;
  SharedState& state_;
  MissCounter misses_;
  MissCounter mac_misses_;
  FileCache cache_;
  int store_fd_ = -1;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& bytes_;
  prometheus::Counter& hash_misses_;
  prometheus::Counter& mac_misses_total_;
  prometheus::Counter& bans_;
};

}  // namespace rwg::provisioning
