#include "services/core/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rwg::core::log {
namespace {

std::mutex g_mu;
std::string g_service = "rwg";
std::shared_ptr<spdlog::logger> g_logger;

spdlog::logger& Logger() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_logger) {
    g_logger =
        std::make_shared<spdlog::logger>("rwg", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    g_logger->set_pattern("%v");
    g_logger->flush_on(spdlog::level::trace);
  }
  return *g_logger;
}

bool NeedsQuotes(absl::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) return true;
  }
  return false;
}

void AppendValue(std::string& out, absl::string_view v) {
  if (!NeedsQuotes(v)) {
    out.append(v.data(), v.size());
    return;
  }
  out.push_back('"');
  for (unsigned char c : v) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (c < ' ' || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out.append("\\x");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

void Emit(spdlog::level::level_enum lvl, absl::string_view name, absl::string_view msg,
          std::initializer_list<Field> fields) {
  spdlog::logger& logger = Logger();
  if (!logger.should_log(lvl)) return;
  logger.log(lvl, "{}", Format(name, msg, fields));
}

}  // namespace

void Init(absl::string_view service, absl::string_view level) {
  spdlog::logger& logger = Logger();
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_service = std::string(service);
  }
  logger.set_level(spdlog::level::from_str(std::string(level)));
}

// The timestamp, formatted once per millisecond per thread (busy services log many lines a
// millisecond).
static const std::string& Timestamp() {
  thread_local int64_t last_ms = -1;
  thread_local std::string text;
  const absl::Time now = absl::Now();
  const int64_t ms = absl::ToUnixMillis(now);
  if (ms != last_ms) {
    last_ms = ms;
    text = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone());
  }
  return text;
}

std::string Format(absl::string_view level, absl::string_view msg,
                   std::initializer_list<Field> fields) {
  std::string out;
  out.reserve(160);
  absl::StrAppend(&out, "ts=", Timestamp(), " level=", level, " service=");
  {
    std::lock_guard<std::mutex> lock(g_mu);
    out.append(g_service);
  }
  out.append(" msg=");
  AppendValue(out, msg);
  for (const Field& f : fields) {
    out.push_back(' ');
    out.append(f.first.data(), f.first.size());
    out.push_back('=');
    AppendValue(out, f.second);
  }
  return out;
}

void Debug(absl::string_view msg, std::initializer_list<Field> f) {
  Emit(spdlog::level::debug, "debug", msg, f);
}
void Info(absl::string_view msg, std::initializer_list<Field> f) {
  Emit(spdlog::level::info, "info", msg, f);
}
void Warn(absl::string_view msg, std::initializer_list<Field> f) {
  Emit(spdlog::level::warn, "warn", msg, f);
}
void Error(absl::string_view msg, std::initializer_list<Field> f) {
  Emit(spdlog::level::err, "error", msg, f);
}

}  // namespace rwg::core::log
