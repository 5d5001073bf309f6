// Counting and logging of failures inside the provisioning server while serving, and the
// 500 answer they get (see answer.h).
#include "services/provisioning/answer.h"

#include "services/core/log.h"

namespace rwg::provisioning {

InternalErrors::InternalErrors(prometheus::Registry& registry)
    : counter_(prometheus::BuildCounter()
                   .Name("rwg_provisioning_internal_errors_total")
                   .Help("Failures inside the service while serving (the request got "
                         "500, or its connection was closed); it keeps serving")
                   .Register(registry)
                   .Add({})) {}

void InternalErrors::Record(const char* where, const std::exception_ptr& thrown) noexcept {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(thrown);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  try {
    counter_.Increment();
    core::log::Error("internal error while serving", {{"where", where}, {"error", what}});
  } catch (...) {
  }
}

Answer InternalErrors::AnswerFor(const char* where, const std::exception_ptr& thrown,
                                 const char* kind) {
  Record(where, thrown);
  Answer a;
  a.status = boost::beast::http::status::internal_server_error;
  a.kind = kind;
  a.text = "internal error\n";
  a.close = true;
  return a;
}

}  // namespace rwg::provisioning
