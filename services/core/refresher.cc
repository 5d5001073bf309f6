#include "services/core/refresher.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "services/core/log.h"

namespace rwg::core {

absl::Status Refresher::SafeRefresh() {
  try {
    return refresh_();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("refresh failed: ", e.what()));
  } catch (...) {
    return absl::InternalError("refresh failed");
  }
}

absl::Status Refresher::Start(absl::Duration period) {
  absl::Status first = SafeRefresh();
  {
    absl::MutexLock lock(&mu_);
    last_ = first;
  }
  thread_ = std::thread([this, period]() {
    bool was_ok = true;
    while (!stop_.load()) {
      for (absl::Duration waited; waited < period && !stop_.load();
           waited += absl::Milliseconds(50)) {
        absl::SleepFor(absl::Milliseconds(50));
      }
      absl::Status s = SafeRefresh();
      {
        absl::MutexLock lock(&mu_);
        last_ = s;
      }
      if (!s.ok() && was_ok) {
        log::Warn(absl::StrCat("cannot refresh ", what_), {{"error", std::string(s.message())}});
      }
      was_ok = s.ok();
    }
  });
  return first;
}

void Refresher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

absl::Status Refresher::last_status() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

}  // namespace rwg::core
