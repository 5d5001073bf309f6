#include "services/core/log.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rwg::core::log {
namespace {

ABSL_CONST_INIT absl::Mutex g_mu(absl::kConstInit);
std::string g_service ABSL_GUARDED_BY(g_mu) = "rwg";

// Levels, lowest first; a line is written when its level is at least the one set.
enum Level : int { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };
std::atomic<int> g_level{kInfo};

// The name Init gets: trace, debug, info, warn(ing), err(or), critical or off; anything else
// writes nothing (as "off").
int LevelNamed(absl::string_view name) {
  if (name == "trace") return kTrace;
  if (name == "debug") return kDebug;
  if (name == "info") return kInfo;
  if (name == "warn" || name == "warning") return kWarn;
  if (name == "err" || name == "error") return kError;
  if (name == "critical") return kCritical;
  return kOff;
}

// Lines go to standard error, each with one write(2) (whole even when several threads log:
// the writes are in turn). A write that fails drops the line; the service goes on.
ABSL_CONST_INIT absl::Mutex g_write_mu(absl::kConstInit);
void WriteLine(const std::string& line) {
  absl::MutexLock lock(&g_write_mu);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n > 0) {
      p += n;
      left -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return;
    }
  }
}

// Values longer than this are cut (a hostile peer's 60 KB header stays a short line).
constexpr size_t kMaxValueBytes = 1024;

// Per byte: 1 when a value holding it is quoted (space, '"', '=', '\\', controls, DEL and
// every byte of 0x80 and above); 2 when, inside quotes, it cannot go as it is (controls, DEL,
// '"', '\\' and 0x80 and above, which are checked as UTF-8). One table look-up per byte.
constexpr std::array<uint8_t, 256> kByteClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const bool plain = c >= ' ' && c < 0x7f && c != '"' && c != '\\';
    t[c] = static_cast<uint8_t>((plain && c != ' ' && c != '=' ? 0 : 1) | (plain ? 0 : 2));
  }
  return t;
}();

bool NeedsQuotes(absl::string_view v) {
  if (v.empty() || v.size() > kMaxValueBytes) return true;
  for (unsigned char c : v) {
    if ((kByteClass[c] & 1) != 0) return true;
  }
  return false;
}

void AppendHex(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.append("\\x");
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 15]);
}

// The length of the well-formed UTF-8 sequence at the start of `v` (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), 0 when it is not one.
size_t Utf8SequenceLength(absl::string_view v, uint32_t* code_point) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(v[i]); };
  const unsigned char c = b(0);
  size_t n = 0;
  uint32_t cp = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0f;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07;
    if (c == 0xf0) lo = 0x90;  // overlong
    if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
  } else {
    return 0;
  }
  if (v.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i) & 0x3f);
  }
  *code_point = cp;
  return n;
}

// Quotes and escapes a value so that the record stays one line of valid UTF-8: control
// characters (C0, DEL, C1, U+2028, U+2029) and bytes that are not UTF-8 become \xNN.
void AppendValue(std::string& out, absl::string_view v) {
  if (!NeedsQuotes(v)) {
    out.append(v.data(), v.size());
    return;
  }
  const size_t total = v.size();
  if (v.size() > kMaxValueBytes) v = v.substr(0, kMaxValueBytes);
  out.push_back('"');
  for (size_t i = 0; i < v.size();) {
    // A run of printable ASCII other than the quote and the backslash goes as it is, at once.
    size_t run = i;
    while (run < v.size() && (kByteClass[static_cast<unsigned char>(v[run])] & 2) == 0) ++run;
    if (run > i) {
      out.append(v.data() + i, run - i);
      i = run;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(v[i]);
    if (c >= 0x80) {
      uint32_t cp = 0;
      const size_t n = Utf8SequenceLength(v.substr(i), &cp);
      if (n == 0 || cp < 0xa0 || cp == 0x2028 || cp == 0x2029) {
        for (size_t k = 0; k < std::max<size_t>(n, 1); ++k) {
          AppendHex(out, static_cast<unsigned char>(v[i + k]));
        }
        i += std::max<size_t>(n, 1);
      } else {
        out.append(v.data() + i, n);
        i += n;
      }
      continue;
    }
    ++i;
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
          AppendHex(out, c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  if (total > v.size()) absl::StrAppend(&out, "...(", total, " bytes)");
  out.push_back('"');
}

void AppendRange(std::string& out, absl::string_view level, absl::string_view msg,
                 const Field* begin, const Field* end);

bool Enabled(int lvl) { return lvl >= g_level.load(std::memory_order_relaxed); }

// Formats the line in a buffer the thread keeps (no allocation once it has grown), then
// writes it.
void EmitRange(absl::string_view name, absl::string_view msg, const Field* begin,
               const Field* end) {
  thread_local std::string line;
  line.clear();
  AppendRange(line, name, msg, begin, end);
  line.push_back('\n');
  WriteLine(line);
  // A rare very long line does not keep its memory in every thread that wrote one.
  if (line.capacity() > 16384) std::string().swap(line);
}

void Emit(int lvl, absl::string_view name, absl::string_view msg,
          std::initializer_list<Field> fields) {
  if (!Enabled(lvl)) return;
  EmitRange(name, msg, fields.begin(), fields.end());
}

void EmitLimited(Limiter& limiter, int lvl, absl::string_view name, absl::string_view msg,
                 std::initializer_list<Field> fields) {
  if (!Enabled(lvl)) return;
  int64_t left_out = 0;
  if (!limiter.Admit(&left_out)) return;
  if (left_out == 0) {
    EmitRange(name, msg, fields.begin(), fields.end());
    return;
  }
  std::vector<Field> all(fields.begin(), fields.end());
  all.emplace_back("left_out", std::to_string(left_out));
  EmitRange(name, msg, all.data(), all.data() + all.size());
}

}  // namespace

void Init(absl::string_view service, absl::string_view level) {
  {
    absl::MutexLock lock(&g_mu);
    g_service = std::string(service);
  }
  g_level.store(LevelNamed(level), std::memory_order_relaxed);
}

// The timestamp (2026-12-07T21:30:05.123Z): the date and time formatted once per second per
// thread, the milliseconds put in by hand (busy services log many lines a millisecond).
static const std::string& Timestamp() {
  thread_local int64_t last_s = INT64_MIN;
  thread_local int64_t last_ms = -1;
  thread_local std::string text;
  const absl::Time now = absl::Now();
  const int64_t ms = absl::ToUnixMillis(now);
  if (ms == last_ms) return text;
  last_ms = ms;
  const int64_t s = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;  // floor, before 1970 too
  if (s != last_s) {
    last_s = s;
    text =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S.000Z", absl::FromUnixSeconds(s), absl::UTCTimeZone());
  }
  const int64_t milli = ms - s * 1000;
  char* digits = text.data() + text.size() - 4;  // the "000" before the Z
  digits[0] = static_cast<char>('0' + milli / 100);
  digits[1] = static_cast<char>('0' + milli / 10 % 10);
  digits[2] = static_cast<char>('0' + milli % 10);
  return text;
}

std::string Format(absl::string_view level, absl::string_view msg,
                   std::initializer_list<Field> fields) {
  std::string out;
  out.reserve(160);
  AppendRange(out, level, msg, fields.begin(), fields.end());
  return out;
}

namespace {
void AppendRange(std::string& out, absl::string_view level, absl::string_view msg,
                 const Field* begin, const Field* end) {
  // Appended piece by piece (absl::StrAppend zero-fills what it appends first).
  const std::string& ts = Timestamp();
  out.append("ts=").append(ts).append(" level=").append(level.data(), level.size());
  out.append(" service=");
  {
    absl::MutexLock lock(&g_mu);
    out.append(g_service);
  }
  out.append(" msg=");
  AppendValue(out, msg);
  for (const Field* f = begin; f != end; ++f) {
    out.push_back(' ');
    out.append(f->first.data(), f->first.size());
    out.push_back('=');
    AppendValue(out, f->second);
  }
}
}  // namespace

void Debug(absl::string_view msg, std::initializer_list<Field> f) { Emit(kDebug, "debug", msg, f); }
void Info(absl::string_view msg, std::initializer_list<Field> f) { Emit(kInfo, "info", msg, f); }
void Warn(absl::string_view msg, std::initializer_list<Field> f) { Emit(kWarn, "warn", msg, f); }
void Error(absl::string_view msg, std::initializer_list<Field> f) { Emit(kError, "error", msg, f); }

bool Limiter::Admit(int64_t* left_out) {
  absl::MutexLock lock(&mu_);
  // Read under the lock, so that the times seen are in order; a clock set back by more than
  // an interval starts a new window rather than holding lines back until it catches up.
  const absl::Time now = clock_.Now();
  if (now - window_start_ >= interval_ || now < window_start_ - interval_) {
    window_start_ = now;
    written_ = 0;
  }
  if (written_ >= std::max(burst_, 1)) {
    ++left_out_;
    *left_out = 0;
    return false;
  }
  ++written_;
  *left_out = left_out_;
  left_out_ = 0;
  return true;
}

void Info(Limiter& limiter, absl::string_view msg, std::initializer_list<Field> f) {
  EmitLimited(limiter, kInfo, "info", msg, f);
}
void Warn(Limiter& limiter, absl::string_view msg, std::initializer_list<Field> f) {
  EmitLimited(limiter, kWarn, "warn", msg, f);
}

}  // namespace rwg::core::log
