#include "services/ott/login_page.h"

#include "absl/strings/str_cat.h"

namespace rwg::ott {

std::string HtmlEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string LoginHtml(absl::string_view next, absl::string_view message) {
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>rwg login</title><style>"
      "body{font-family:sans-serif;background:#f3f4f6;margin:0}"
      "main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;"
      "border-radius:8px;box-shadow:0 1px 4px #0002}"
      "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;"
      "box-sizing:border-box}button{margin-top:1.2rem;padding:.5rem 1.2rem}"
      ".error{color:#b91c1c}</style></head><body><main>"
      "<h1>Remote access</h1><p>This page needs an rwg account first.</p>",
      message.empty()
          ? ""
          : absl::StrCat("<p class=\"error\" id=\"error\">", HtmlEscape(message), "</p>"),
      "<form method=\"post\" action=\"/.rwg/login\">"
      "<input type=\"hidden\" name=\"next\" value=\"",
      HtmlEscape(next),
      "\"><label for=\"name\">Name</label>"
      "<input id=\"name\" name=\"name\" autocomplete=\"username\" required autofocus>"
      "<label for=\"password\">Password</label>"
      "<input id=\"password\" name=\"password\" type=\"password\" "
      "autocomplete=\"current-password\" required>"
      "<button type=\"submit\" id=\"login\">Log in</button></form></main></body></html>\n");
}

}  // namespace rwg::ott
