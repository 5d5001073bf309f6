#include "services/sip_edge/sip_methods.h"

namespace rwg::sip_edge {

const char* MethodLabel(absl::string_view method) {
  static constexpr const char* kKnown[] = {"ACK",      "BYE",       "CANCEL",  "INFO",  "INVITE",
                                           "MESSAGE",  "NOTIFY",    "OPTIONS", "PRACK", "PUBLISH",
                                           "REGISTER", "SUBSCRIBE", "REFER",   "UPDATE"};
  for (const char* m : kKnown) {
    if (method == m) return m;
  }
  return "other";
}

}  // namespace rwg::sip_edge
