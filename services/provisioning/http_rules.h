// HTTP rules for serving the store's files (RFC 9110): validators (ETag, Last-Modified),
// conditional requests (304), single byte ranges (206/416) and content types. Pure
// functions: the server applies them, the tests check them without a socket.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace rwg::provisioning {

struct FileInfo {
  uint64_t size = 0;
  absl::Time modified;
  uint64_t inode = 0;
};

// A strong validator that changes whenever the file is replaced or rewritten.
std::string ETagFor(const FileInfo& f);

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
std::string HttpDate(absl::Time t);
// IMF-fixdate only; nullopt for anything else (the condition is then ignored).
std::optional<absl::Time> ParseHttpDate(absl::string_view s);

// True when a GET/HEAD with these headers ("" when absent) gets 304: If-None-Match (a list
// of entity tags, or "*"; weak comparison) decides when present, else If-Modified-Since
// (whole seconds).
bool NotModified(absl::string_view if_none_match, absl::string_view if_modified_since,
                 const std::string& etag, absl::Time modified);

struct ByteRange {
  uint64_t start = 0;
  uint64_t length = 0;
};

enum class RangeResult { kWhole, kPartial, kUnsatisfiable };

// A Range header against a file of `size` bytes. One range ("bytes=a-b", "bytes=a-",
// "bytes=-n") is served as 206; anything else rwg does not take (several ranges, other
// units, a malformed header) serves the whole file, as RFC 9110 allows. A range that starts
// past the end is unsatisfiable (416). `if_range` ("" when absent): the range applies only
// while it matches `etag` (or the Last-Modified date).
RangeResult ParseRange(absl::string_view range, absl::string_view if_range, uint64_t size,
                       const std::string& etag, absl::Time modified, ByteRange* out);

// Content-Type by file name: configuration files as text, XML, certificates, firmware and
// anything else as octet-stream.
const char* ContentTypeFor(absl::string_view name);

// "cfg", "xml", "cert", "firmware" or "other": the kind label of the metrics.
const char* FileKind(absl::string_view name);

}  // namespace rwg::provisioning
