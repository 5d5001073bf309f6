// No exception unwinds through sofia-sip's or hiredis' C frames: every entry point rwg hands
// to them runs its body through Guard, which logs and counts what was thrown and returns a
// fallback (for a request: 500, answered by sofia-sip). The SIP thread keeps running.
#pragma once

#include <prometheus/counter.h>

#include <exception>
#include <utility>

#include "services/core/log.h"

namespace rwg::sip_edge {

// The counter Guard increments (rwg_sip_edge_internal_errors_total); set once at start.
void SetGuardCounter(prometheus::Counter* counter);
void CountGuarded(const char* where, const char* what) noexcept;

template <typename R, typename F>
R Guard(const char* where, R fallback, F&& body) noexcept {
  try {
    return std::forward<F>(body)();
  } catch (const std::exception& e) {
    CountGuarded(where, e.what());
  } catch (...) {
    CountGuarded(where, "unknown exception");
  }
  return fallback;
}

template <typename F>
void Guard(const char* where, F&& body) noexcept {
  try {
    std::forward<F>(body)();
  } catch (const std::exception& e) {
    CountGuarded(where, e.what());
  } catch (...) {
    CountGuarded(where, "unknown exception");
  }
}

}  // namespace rwg::sip_edge
