#include "services/control/rpc_guard.h"

#include <exception>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"

namespace rwg::control {
namespace {

absl::Status Thrown(const char* method, const std::string& what,
                    const std::function<void()>& on_throw) {
  // Neither the log nor the counter may throw in turn out of here.
  try {
    core::log::Error("rpc threw", {{"method", method}, {"error", what}});
    if (on_throw) on_throw();
  } catch (...) {
  }
  return absl::InternalError(absl::StrCat("internal error in ", method, "; see the control log"));
}

}  // namespace

absl::Status RunCatching(const char* method, const std::function<absl::Status()>& body,
                         const std::function<void()>& on_throw) {
  try {
    return body();
  } catch (const std::exception& e) {
    return Thrown(method, e.what(), on_throw);
  } catch (...) {
    return Thrown(method, "unknown exception", on_throw);
  }
}

}  // namespace rwg::control
