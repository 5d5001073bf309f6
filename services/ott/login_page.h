// rwg's login page for the admin paths of OTT domains (docs/ott.md): a plain form, no script.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace rwg::ott {

// Text made safe inside HTML element content and double-quoted attributes.
std::string HtmlEscape(absl::string_view s);
// The page: `next` goes back in a hidden field; `message` (plain text) above the form when not
// empty.
std::string LoginHtml(absl::string_view next, absl::string_view message);

}  // namespace rwg::ott
