#include "services/sip_edge/held_request.h"

#include <sofia-sip/msg.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>

#include <string>

#include "services/core/log.h"
#include "services/sip_edge/guard.h"
#include "services/sip_edge/sip_methods.h"

namespace rwg::sip_edge {

void HeldRequest::Resume(const char* where, const std::function<int(const sip_t*)>& body) {
  const char* method = nta_incoming_method_name(irq_);
  if (method == nullptr) method = "";
  if (released_ && nta_incoming_status(irq_) >= 200) {
    // Answered while it waited (a CANCEL): nothing of its handling happens any more.
    core::log::Debug("held request answered meanwhile",
                     {{"method", method}, {"status", std::to_string(nta_incoming_status(irq_))}});
    nta_incoming_destroy(irq_);
    return;
  }
  msg_t* msg = nta_incoming_getrequest(irq_);
  const sip_t* sip = sip_object(msg);
  const int status = Guard(where, 500, [&] { return sip != nullptr ? body(sip) : 500; });
  msg_destroy(msg);
  if (!released_) {
    status_ = status;
    return;
  }
  if (status == 0) return;
  if (nta_incoming_status(irq_) < 200) {
    const char* phrase = sip_status_phrase(status);
    nta_incoming_treply(irq_, status, phrase != nullptr ? phrase : "", TAG_END());
    responses_.Add({{"method", MethodLabel(method)}, {"code", std::to_string(status)}}).Increment();
  }
  nta_incoming_destroy(irq_);
}

int HeldRequest::Release() {
  released_ = true;
  return status_;
}

}  // namespace rwg::sip_edge
