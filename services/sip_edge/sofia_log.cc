#include "services/sip_edge/sofia_log.h"

#include <sofia-sip/su_log.h>

#include <cstdarg>
#include <cstdio>

#include "services/core/log.h"
#include "services/sip_edge/guard.h"

namespace rwg::sip_edge {
namespace {

constexpr size_t kMaxLine = 4096;

void Logger(void*, char const* fmt, va_list ap) {
  Guard("sofia-sip log", [&] {
    char buf[1024];
    va_list copy;
    va_copy(copy, ap);
    const int n = std::vsnprintf(buf, sizeof(buf), fmt, copy);
    va_end(copy);
    if (n < 0) return;
    std::string text;
    if (static_cast<size_t>(n) < sizeof(buf)) {
      text.assign(buf, static_cast<size_t>(n));
    } else {
      text.resize(static_cast<size_t>(n) + 1);
      std::vsnprintf(text.data(), text.size(), fmt, ap);
      text.resize(static_cast<size_t>(n));
    }
    thread_local std::string pending;  // sofia-sip logs from its own thread(s)
    for (const std::string& line : SofiaLogLines(pending, text)) {
      if (!line.empty()) core::log::Warn("sofia-sip", {{"text", line}});
    }
  });
}

}  // namespace

std::vector<std::string> SofiaLogLines(std::string& pending, std::string_view chunk) {
  std::vector<std::string> out;
  for (char c : chunk) {
    if (c == '\n') {
      if (!pending.empty() && pending.back() == '\r') pending.pop_back();
      out.push_back(std::move(pending));
      pending.clear();
    } else if (pending.size() < kMaxLine) {
      pending.push_back(c);
    }
  }
  return out;
}

void RedirectSofiaLogs() { su_log_redirect(su_log_default, &Logger, nullptr); }

}  // namespace rwg::sip_edge
