// The URL paths a domain lets through (R-OTT, docs/ott.md "Services and paths"): each
// service's default lists, the normalization a request's path goes through before it is
// checked, and the check itself.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rwg/ott/v1/ott.pb.h"

namespace rwg::ott {

namespace pb = ::rwg::ott::v1;

// "user-portal", "web-client", "embedded-user-portal", "web-admin"; "" for UNSPECIFIED.
absl::string_view ServiceName(pb::Service service);
// The service named so (as above, or the enum's name); InvalidArgument naming `field`.
absl::StatusOr<pb::Service> ParseService(absl::string_view name, absl::string_view field);
pb::PathLists DefaultPaths(pb::Service service);
std::vector<pb::ServiceInfo> Services();
// The domain's lists when any is given, else the service's.
pb::PathLists EffectivePaths(const pb::Domain& domain);
// Checks a list entry: starts with '/', printable ASCII without spaces, '?', '#', '%' or
// '\\', no "." or ".." segment, at most 256 bytes. The error names `field` and the entry.
absl::Status ValidatePathEntry(absl::string_view entry, absl::string_view field);

// The path of a request target ("/a//b/%7Ec?x=1" → "/a/b/~c"): the query and fragment dropped,
// repeated '/' collapsed, percent-encoded unreserved characters decoded (others kept encoded,
// upper case). What is checked is what the application gets. InvalidArgument for a target that is
// not an origin-form path, a "." or ".." segment, a percent-encoded '/', '\\', '.', '%' or NUL, a
// bad percent escape, a byte outside printable ASCII, or more than `max_length` bytes.
absl::StatusOr<std::string> NormalizePath(absl::string_view target, size_t max_length = 4096);

enum class Access { kRefused, kUser, kAdmin, kCommon };
// Which list lets `path` (normalized) through: common first, then admin (compared in any
// case), then user. An entry ending in '/' is a prefix ("/portal/" lets "/portal/" and
// "/portal/x" through, and "/portal" too); any other entry is the exact path.
Access Classify(const pb::PathLists& lists, absl::string_view path);

}  // namespace rwg::ott
