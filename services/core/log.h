// One-line structured logs (logfmt): ts=... level=... service=... msg="..." key=value ...
// Never pass a secret as a field value.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/core/clock.h"

namespace rwg::core::log {

using Field = std::pair<absl::string_view, std::string>;

// Sets the service name and minimum level ("debug", "info", "warn", "error").
void Init(absl::string_view service, absl::string_view level);

void Debug(absl::string_view msg, std::initializer_list<Field> fields = {});
void Info(absl::string_view msg, std::initializer_list<Field> fields = {});
void Warn(absl::string_view msg, std::initializer_list<Field> fields = {});
void Error(absl::string_view msg, std::initializer_list<Field> fields = {});

// The lines of one kind (one call site), at most `burst` in each `interval`. A failure that
// repeats for every request (an overloaded iPBX, an exhausted relay, Redis gone) writes a few
// lines per interval rather than hundreds a second; the first line written after some were
// left out carries left_out=<how many>. The metrics still count every occurrence.
class Limiter {
 public:
  explicit Limiter(const Clock& clock, int burst = 5, absl::Duration interval = absl::Seconds(10))
      : clock_(clock), burst_(burst), interval_(interval) {}
  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;

  // Whether a line may be written now; *left_out is how many were refused before it since the
  // last one written.
  bool Admit(int64_t* left_out) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const Clock& clock_;
  const int burst_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int written_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t left_out_ ABSL_GUARDED_BY(mu_) = 0;
};

// Info and Warn through a Limiter.
void Info(Limiter& limiter, absl::string_view msg, std::initializer_list<Field> fields = {});
void Warn(Limiter& limiter, absl::string_view msg, std::initializer_list<Field> fields = {});

// Formats one record; exposed for tests.
std::string Format(absl::string_view level, absl::string_view msg,
                   std::initializer_list<Field> fields);

}  // namespace rwg::core::log
