// What a phone's request asks for (R-PROV, R-HASH): `/<hash>/ftp_67xxi/<file>` is a file of
// the store, any other path under the hash goes to the iPBX's XML port. Everything about the
// request target that can be judged without the store or the hash is judged here, so that a
// hostile target never reaches the file system.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::provisioning {

// The longest request target taken (longer ones get 400).
inline constexpr size_t kMaxTarget = 2048;
// The directory phones fetch their files from.
inline constexpr char kFilesDir[] = "ftp_67xxi";

struct RequestPath {
  std::string hash;  // the first segment, as sent
  enum class Kind { kFile, kProxy } kind = Kind::kFile;
  // kFile: the store's name for the file (a MAC file's name in upper case).
  std::string file;
};

// Parses an origin-form request target. InvalidArgument (400) for what no client should send
// (not starting with '/', over kMaxTarget, a bad or NUL percent-escape, an encoded '/' or
// '\', a raw '\' or control character); NotFound (404) for paths that cannot name anything
// served (an empty, "." or ".." segment, a file name outside [A-Za-z0-9._-] or starting with
// '.', a query on a file, a directory of the store).
absl::StatusOr<RequestPath> ParseRequestPath(absl::string_view target);

// `target` with its first segment (the hash) replaced by "<hash>", for logs.
std::string RedactHash(absl::string_view target);

// A MAC file name ("0800aabbccdd.cfg", any case) in the store's form ("0800AABBCCDD.cfg");
// other names unchanged.
std::string StoreName(absl::string_view file);

// The MAC address a per-phone file name starts with, in upper case: 12 hex digits followed by
// '.' or '-' ("0800a1b2c3d4.cfg", "0800A1B2C3D4.tuz", "0800A1B2C3D4-local.cfg" give
// "0800A1B2C3D4"); empty for other names (aastra.cfg, 6867i.cfg, security.tuz, firmware...).
std::string MacOfFile(absl::string_view name);

// The MAC address of a phone's own configuration file, given by its store name
// ("0800A1B2C3D4.cfg", as StoreName makes it of "0800a1b2c3d4.cfg"): "0800A1B2C3D4"; empty
// for any other name ("0800A1B2C3D4.tuz", "0800A1B2C3D4-local.cfg", "aastra.cfg"...).
std::string MacOfConfigFile(absl::string_view store_name);

// Whether `name` may be a file of the store: [A-Za-z0-9._-], not starting with '.' (names
// starting with '.' are the store's own temporary files), 1 to 255 characters.
bool IsStoreName(absl::string_view name);

}  // namespace rwg::provisioning
