// One-line structured logs (logfmt): ts=... level=... service=... msg="..." key=value ...
// Never pass a secret as a field value.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/string_view.h"

namespace rwg::core::log {

using Field = std::pair<absl::string_view, std::string>;

// Sets the service name and minimum level ("debug", "info", "warn", "error").
void Init(absl::string_view service, absl::string_view level);

void Debug(absl::string_view msg, std::initializer_list<Field> fields = {});
void Info(absl::string_view msg, std::initializer_list<Field> fields = {});
void Warn(absl::string_view msg, std::initializer_list<Field> fields = {});
void Error(absl::string_view msg, std::initializer_list<Field> fields = {});

// Formats one record; exposed for tests.
std::string Format(absl::string_view level, absl::string_view msg,
                   std::initializer_list<Field> fields);

}  // namespace rwg::core::log
