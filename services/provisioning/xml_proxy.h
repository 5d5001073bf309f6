// The XML-feature proxy of the provisioning server: a request under the hash for the iPBX's
// XML features is sent on to the iPBX's XML port over TLS (Boost.Beast on Asio, on a thread of
// its own), its certificate and host name verified, under one deadline for the whole call;
// the iPBX's answer, or a 502/504 of rwg's, comes back as an Answer.
#pragma once

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/provisioning/answer.h"
#include "services/provisioning/state.h"

namespace rwg::provisioning {

struct XmlProxyOptions {
  absl::Duration timeout = absl::Seconds(5);  // the iPBX's answer must come within it (else 504)
  std::string ca_file;                        // empty: the system's CA store
  bool insecure_skip_verify = false;          // the iPBX's certificate is not verified
};

class XmlProxy {
 public:
  virtual ~XmlProxy() = default;
  // Loads the CA certificates and starts the proxy's thread.
  virtual absl::Status Start() = 0;
  // Ends the calls under way (their `done` is not called) and joins the thread.
  virtual void Stop() = 0;
  // Sends the phone's request (from `source`, for X-Forwarded-For) to `upstream`; `done` gets
  // the answer, on the proxy's thread.
  virtual void Forward(const XmlUpstream& upstream, const Request& req, const std::string& source,
                       std::function<void(Answer)> done) = 0;
  // The longest a connection waits for a proxied answer (a call ends sooner).
  virtual absl::Duration WaitLimit() const = 0;
};

// Registers rwg_provisioning_upstream_seconds in `registry`.
std::unique_ptr<XmlProxy> NewXmlProxy(XmlProxyOptions options, InternalErrors& errors,
                                      prometheus::Registry& registry);

}  // namespace rwg::provisioning
