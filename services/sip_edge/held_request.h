// A request whose handling waits on Redis (docs/sip-edge.md §1.1): its leg callback returns 0
// and rwg keeps the server transaction; when the reply comes, the request is read back from
// the transaction, the rest of its handling runs, and the transaction is answered (unless
// already) and destroyed. The lookup may also answer at once (a cached device, Redis known
// down), before the leg callback returned: the status then goes back to sofia-sip as the
// callback's. SIP thread only.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

#include <functional>

namespace rwg::sip_edge {

// Made (std::make_shared) by the leg callback before the lookup starts, and shared with the
// lookup's callback: whichever of the two ends last frees it.
class HeldRequest {
 public:
  // `responses` counts the answers given here (by method and code).
  HeldRequest(nta_incoming_t* irq, prometheus::Family<prometheus::Counter>& responses)
      : irq_(irq), responses_(responses) {}
  HeldRequest(const HeldRequest&) = delete;
  HeldRequest& operator=(const HeldRequest&) = delete;

  // From the lookup's callback: `body` handles the request and returns the status it answered
  // (0: something else now owns the transaction). Before the leg callback returned, that
  // status is the callback's (Release). After, a status `body` did not send yet is answered,
  // and the transaction destroyed; and when the request was answered meanwhile (its INVITE
  // cancelled: sofia-sip answered it 487), `body` does not run at all: an emergency call is
  // not started, an INVITE not proxied to another instance. What `body` throws is counted
  // (Guard, as `where`) and answered 500.
  void Resume(const char* where, const std::function<int(const sip_t*)>& body);

  // From the leg callback, once the lookup is started: what the callback returns (the status
  // of a request handled at once, else 0: the request is held).
  int Release();

  // True once the leg callback has returned: the request is held.
  bool held() const { return released_; }

 private:
  nta_incoming_t* const irq_;
  prometheus::Family<prometheus::Counter>& responses_;
  bool released_ = false;
  int status_ = 0;  // the status of a request handled at once
};

}  // namespace rwg::sip_edge
