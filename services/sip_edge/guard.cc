#include "services/sip_edge/guard.h"

#include <atomic>

namespace rwg::sip_edge {
namespace {
std::atomic<prometheus::Counter*> g_counter{nullptr};
}  // namespace

void SetGuardCounter(prometheus::Counter* counter) { g_counter.store(counter); }

void CountGuarded(const char* where, const char* what) noexcept {
  try {
    if (prometheus::Counter* c = g_counter.load()) c->Increment();
    core::log::Error("internal error; the request or event is dropped",
                     {{"where", where}, {"error", what}});
  } catch (...) {  // logging itself failed: nothing more can be done
  }
}

}  // namespace rwg::sip_edge
