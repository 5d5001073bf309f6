#include "services/ott/paths.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace rwg::ott {
namespace {

TEST(NormalizePath, DropsQueryAndCollapsesSlashes) {
  EXPECT_EQ(*NormalizePath("/a//b///c?x=1#f"), "/a/b/c");
  EXPECT_EQ(*NormalizePath("/"), "/");
}

TEST(NormalizePath, DecodesUnreservedAndKeepsOtherEscapesUpperCase) {
  // What is checked is what the application gets: "/%61dmin/" is "/admin/".
  EXPECT_EQ(*NormalizePath("/%61dmin/x"), "/admin/x");
  EXPECT_EQ(*NormalizePath("/a%7eb"), "/a~b");
  EXPECT_EQ(*NormalizePath("/a%20b%3f"), "/a%20b%3F");
}

TEST(NormalizePath, RefusesTraversalAndEncodedSeparators) {
  for (const char* bad :
       {"/a/../admin", "/a/./b", "/..", "/a/%2e%2e/b", "/a%2fb", "/a%5cb", "/a%25b", "/a%00",
        "/a\\b", "/a%zz", "/a%4", "/a%", "a/b", "", "http://x/", "/a\x80", "/a b", "/a\tb"}) {
    EXPECT_FALSE(NormalizePath(bad).ok()) << bad;
  }
}

TEST(NormalizePath, APathAlreadyNormalIsKeptAndNearMissesAreNot) {
  for (const char* same : {"/app/page.html", "/a/.b/..c/.../b.", "/a/b/", "/~x-y_z.html"}) {
    EXPECT_EQ(*NormalizePath(same), same);
  }
  EXPECT_EQ(*NormalizePath("/a//b/"), "/a/b/");
  EXPECT_EQ(*NormalizePath("//a"), "/a");
  for (const char* bad : {"/.", "/a/.", "/a/..", "/./a", "/../a", "/a/./", "/a/../"}) {
    EXPECT_FALSE(NormalizePath(bad).ok()) << bad;
  }
}

// Whatever a path normalizes to is its own normal form (random paths over the characters the
// rules are about).
TEST(NormalizePath, TheNormalFormIsStable) {
  const std::string alphabet = "/./a%2eF5c\\ ~?";
  uint32_t seed = 12345;
  const auto next = [&seed] {
    seed = seed * 1103515245u + 12345u;
    return seed >> 16;
  };
  int normalized = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string path = "/";
    const size_t length = next() % 14;
    for (size_t k = 0; k < length; ++k) path += alphabet[next() % alphabet.size()];
    absl::StatusOr<std::string> once = NormalizePath(path);
    if (!once.ok()) continue;
    ++normalized;
    // A normal form: no empty, "." or ".." segment, printable ASCII without '\\', and an
    // escape only for what is not unreserved, in upper case.
    const std::string& n = *once;
    EXPECT_EQ(n.find("//"), std::string::npos) << path << " -> " << n;
    for (absl::string_view segment : absl::StrSplit(absl::string_view(n).substr(1), '/')) {
      EXPECT_TRUE(segment != "." && segment != "..") << path << " -> " << n;
    }
    for (size_t k = 0; k < n.size(); ++k) {
      const unsigned char c = static_cast<unsigned char>(n[k]);
      EXPECT_TRUE(c > 0x20 && c < 0x7f && c != '\\') << path << " -> " << n;
      if (c != '%') continue;
      ASSERT_LE(k + 2, n.size() - 1) << path << " -> " << n;
      const std::string hex = n.substr(k + 1, 2);
      EXPECT_EQ(hex, absl::AsciiStrToUpper(hex)) << path << " -> " << n;
      const char decoded = static_cast<char>(std::stoi(hex, nullptr, 16));
      EXPECT_FALSE(absl::ascii_isalnum(static_cast<unsigned char>(decoded)) || decoded == '-' ||
                   decoded == '_' || decoded == '~' || decoded == '.')
          << path << " -> " << n;
    }
    absl::StatusOr<std::string> twice = NormalizePath(*once);
    ASSERT_TRUE(twice.ok()) << path << " -> " << *once << ": " << twice.status();
    EXPECT_EQ(*twice, *once) << path;
  }
  EXPECT_GT(normalized, 1000);
}

TEST(NormalizePath, RefusesOverLongPaths) {
  EXPECT_FALSE(NormalizePath("/" + std::string(5000, 'a')).ok());
  EXPECT_TRUE(NormalizePath("/" + std::string(100, 'a')).ok());
}

pb::PathLists Lists() {
  pb::PathLists l;
  l.add_user("/portal/");
  l.add_admin("/admin/");
  l.add_common("/favicon.ico");
  l.add_common("/static/");
  return l;
}

TEST(Classify, PrefixesExactPathsAndOrder) {
  const pb::PathLists l = Lists();
  EXPECT_EQ(Classify(l, "/portal/"), Access::kUser);
  EXPECT_EQ(Classify(l, "/portal"), Access::kUser);
  EXPECT_EQ(Classify(l, "/portal/a/b"), Access::kUser);
  EXPECT_EQ(Classify(l, "/portalx"), Access::kRefused);
  EXPECT_EQ(Classify(l, "/favicon.ico"), Access::kCommon);
  EXPECT_EQ(Classify(l, "/favicon.icox"), Access::kRefused);
  EXPECT_EQ(Classify(l, "/static/x.css"), Access::kCommon);
  EXPECT_EQ(Classify(l, "/admin/users"), Access::kAdmin);
  EXPECT_EQ(Classify(l, "/"), Access::kRefused);
}

TEST(Classify, AdminPathsInAnyCase) {
  // An application that does not tell the cases apart must not be reached around the login.
  EXPECT_EQ(Classify(Lists(), "/ADMIN/users"), Access::kAdmin);
  EXPECT_EQ(Classify(Lists(), "/Admin"), Access::kAdmin);
  EXPECT_EQ(Classify(Lists(), "/PORTAL/"), Access::kRefused);
}

TEST(Classify, AdminBeforeUserWhenBothMatch) {
  pb::PathLists l;
  l.add_user("/");
  l.add_admin("/admin/");
  EXPECT_EQ(Classify(l, "/admin/x"), Access::kAdmin);
  EXPECT_EQ(Classify(l, *NormalizePath("/%61dmin/x")), Access::kAdmin);
  EXPECT_EQ(Classify(l, "/other"), Access::kUser);
}

TEST(Services, EachHasANameAndDefaults) {
  for (const pb::ServiceInfo& s : Services()) {
    EXPECT_FALSE(s.name().empty());
    EXPECT_EQ(*ParseService(s.name(), "service"), s.service());
    const pb::PathLists& p = s.default_paths();
    EXPECT_GT(p.user_size() + p.admin_size() + p.common_size(), 0) << s.name();
    for (const auto* list : {&p.user(), &p.admin(), &p.common()}) {
      for (const std::string& e : *list) EXPECT_TRUE(ValidatePathEntry(e, "x").ok()) << e;
    }
  }
  EXPECT_FALSE(ParseService("portal", "service").ok());
  EXPECT_EQ(DefaultPaths(pb::SERVICE_WEB_ADMIN).admin(0), "/");
}

TEST(EffectivePaths, DomainListsReplaceTheDefaults) {
  pb::Domain d;
  d.set_service(pb::SERVICE_WEB_ADMIN);
  EXPECT_EQ(EffectivePaths(d).admin_size(), 1);
  d.mutable_paths()->add_user("/x/");
  EXPECT_EQ(EffectivePaths(d).admin_size(), 0);
  EXPECT_EQ(EffectivePaths(d).user(0), "/x/");
}

TEST(ValidatePathEntry, NamesTheFieldAndTheEntry) {
  absl::Status s = ValidatePathEntry("admin/", "paths.admin");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("paths.admin"), absl::string_view::npos);
  EXPECT_NE(s.message().find("admin/"), absl::string_view::npos);
  for (const char* bad : {"/a b", "/a?", "/a#", "/a%20", "/a/../b", "/.", "/a\\"}) {
    EXPECT_FALSE(ValidatePathEntry(bad, "p").ok()) << bad;
  }
  EXPECT_FALSE(ValidatePathEntry("/" + std::string(300, 'a'), "p").ok());
}

}  // namespace
}  // namespace rwg::ott
