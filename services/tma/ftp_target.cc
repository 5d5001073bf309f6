// FTP and explicit FTPS download targets through libcurl. One easy handle per target keeps
// the control connection (and the TLS session) across calls; curl_easy_reset between
// operations clears the per-operation options, not the connection. Commands name files by
// their full path (CURLFTPMETHOD_NOCWD), so no call depends on the directory another left.
// A put is STOR to "<name>.rwg-tmp-<random hex>", SIZE (the server has it all: an FTP upload's
// end cannot tell a cut data connection from a complete one), RNFR/RNTO into place; on failure
// DELE of the temporary file.
//
// Operations run through a multi handle of the target's own (Perform), not curl_easy_perform:
// libcurl 7.88, between the server's answer to EPSV/PASV and opening the data connection,
// sometimes has no socket to wait on and no timer due before its connect timeout, and
// curl_easy_perform then sleeps a whole second in its poll. It happened to about 2% of the
// uploads to a local pyftpdlib, most of a deployment's time. Perform sees that state (no socket
// to wait on) and lets libcurl go on at once.
#include <curl/curl.h>
#include <sys/select.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/core/random.h"
#include "services/tma/target.h"

namespace rwg::tma {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool IsFileName(absl::string_view name) {
  if (name.empty() || name.size() > 255 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

absl::Status CheckName(const std::string& name) {
  if (IsFileName(name)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("'", absl::CHexEscape(name.substr(0, 64)),
                   "' is not a file name phones can fetch ([A-Za-z0-9._-], not starting with "
                   "'.', at most 255 characters)"));
}

// RFC 3986 percent-encoding of one path segment.
std::string Escape(absl::string_view segment) {
  std::string out;
  for (const char c : segment) {
    const auto u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppend(&out, "%", absl::Hex(u, absl::kZeroPad2));
    }
  }
  return out;
}

size_t AppendTo(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

struct Reader {
  absl::string_view rest;
};

size_t ReadFrom(char* buf, size_t size, size_t n, void* user) {
  auto* r = static_cast<Reader*>(user);
  const size_t len = std::min(size * n, r->rest.size());
  r->rest.copy(buf, len);
  r->rest.remove_prefix(len);
  return len;
}

// FTP server replies arrive through the header callback: the last one goes in error messages.
size_t KeepReply(char* data, size_t size, size_t n, void* user) {
  absl::string_view line(data, size * n);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (line.size() >= 3 && absl::ascii_isdigit(static_cast<unsigned char>(line[0]))) {
    *static_cast<std::string*>(user) = std::string(line.substr(0, 200));
  }
  return size * n;
}

class SlistDeleter {
 public:
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

Slist Commands(std::initializer_list<std::string> commands) {
  curl_slist* l = nullptr;
  for (const std::string& c : commands) l = curl_slist_append(l, c.c_str());
  return Slist(l);
}

constexpr absl::string_view kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};

bool IsMonth(absl::string_view s) {
  return std::find(std::begin(kMonths), std::end(kMonths), absl::AsciiStrToLower(s)) !=
         std::end(kMonths);
}

// One line of MLSD ("type=file;size=12;modify=...; name"): a regular file, or nothing.
bool ParseMlsd(absl::string_view line, RemoteFile* out) {
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos) return false;
  bool file = false;
  bool sized = false;
  for (absl::string_view fact : absl::StrSplit(line.substr(0, space), ';', absl::SkipEmpty())) {
    const size_t eq = fact.find('=');
    if (eq == absl::string_view::npos) continue;
    const std::string key = absl::AsciiStrToLower(fact.substr(0, eq));
    const absl::string_view value = fact.substr(eq + 1);
    if (key == "type") file = absl::EqualsIgnoreCase(value, "file");
    if (key == "size") sized = absl::SimpleAtoi(value, &out->size);
  }
  out->name = std::string(line.substr(space + 1));
  return file && sized && !out->name.empty();
}

// One line of a Unix LIST ("-rw-r--r-- 1 owner group 1234 Jan  1 12:00 name", the group
// column optional): true with `file` set when it parses, `file->name` empty when it is not a
// regular file.
bool ParseUnixList(absl::string_view line, RemoteFile* file) {
  file->name.clear();
  std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
  // The size is the column before the month; the name starts after day and time or year.
  for (size_t i = 2; i + 3 < f.size(); ++i) {
    if (!IsMonth(f[i])) continue;
    uint64_t size = 0;
    if (!absl::SimpleAtoi(f[i - 1], &size)) continue;
    if (line.empty() || line[0] != '-') return true;  // a directory, a link, a device
    // The name is the rest of the line after the year-or-time column (it may hold spaces).
    const size_t at = static_cast<size_t>(f[i + 2].data() + f[i + 2].size() - line.data());
    absl::string_view name = line.substr(at);
    if (!name.empty()) name.remove_prefix(1);
    file->name = std::string(name);
    file->size = size;
    return !file->name.empty();
  }
  return false;
}

class FtpTarget final : public Target {
 public:
  explicit FtpTarget(FtpTargetOptions options)
      : options_(std::move(options)), curl_(curl_easy_init()), multi_(curl_multi_init()) {
    // The URL's path: "/", then the directory's segments, escaped, an absolute directory's
    // first as "%2F" (curl's spelling of "from the root, not the login directory").
    std::vector<std::string> raw = absl::StrSplit(options_.directory, '/', absl::SkipEmpty());
    std::vector<std::string> escaped;
    escaped.reserve(raw.size());
    for (const std::string& seg : raw) escaped.push_back(Escape(seg));
    const bool absolute = absl::StartsWith(options_.directory, "/");
    const bool v6 = absl::StrContains(options_.host, ':');
    url_ = absl::StrCat("ftp://", v6 ? "[" : "", options_.host, v6 ? "]" : "", ":", options_.port,
                        "/", absolute ? "%2F" : "", absl::StrJoin(escaped, "/"),
                        escaped.empty() ? "" : "/");
    // The same directory as FTP commands (RNFR, RNTO, DELE) name it.
    prefix_ = absl::StrCat(absolute ? "/" : "", absl::StrJoin(raw, "/"), raw.empty() ? "" : "/");
    where_ = absl::StrCat(options_.tls ? "ftps" : "ftp", "://", options_.login, "@", v6 ? "[" : "",
                          options_.host, v6 ? "]" : "", ":", options_.port, options_.directory);
  }

  ~FtpTarget() override {
    // The connection (and its QUIT) belongs to the multi handle's cache: closed first.
    if (multi_ != nullptr) curl_multi_cleanup(multi_);
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
  }
  FtpTarget(const FtpTarget&) = delete;
  FtpTarget& operator=(const FtpTarget&) = delete;

  absl::Status Put(const std::string& name, std::string_view content) override {
    if (absl::Status s = CheckName(name); !s.ok()) return s;
    if (absl::Status s = Usable(); !s.ok()) return s;
    const std::string temp =
        absl::StrCat(name, ".rwg-tmp-", core::RandomHex(core::Random::System(), 8));
    Prepare();
    Reader reader{absl::string_view(content.data(), content.size())};
    const std::string url = url_ + temp;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl_, CURLOPT_READFUNCTION, &ReadFrom);
    curl_easy_setopt(curl_, CURLOPT_READDATA, &reader);
    curl_easy_setopt(curl_, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(content.size()));
    // The size the server stored, asked on the same request right after the transfer ('*': a
    // server without SIZE does not fail the upload); its answer is the last reply kept.
    Slist size = Commands({"*SIZE " + prefix_ + temp});
    curl_easy_setopt(curl_, CURLOPT_POSTQUOTE, size.get());
    CURLcode rc = Perform();
    absl::Status failed;
    int64_t stored = -1;  // unknown: the rename that follows finds out whether it is there
    if (rc == CURLE_OK && absl::StartsWith(reply_, "213 ") &&
        !absl::SimpleAtoi(absl::string_view(reply_).substr(4), &stored)) {
      stored = -1;
    }
    if (rc != CURLE_OK) {
      failed = Error(rc, absl::StrCat("put ", name));
    } else if (stored >= 0 && static_cast<uint64_t>(stored) != content.size()) {
      // The server answered 226 for less than was sent: a data connection cut short (the
      // client cannot tell from the transfer itself). The caller may try again.
      failed = absl::UnavailableError(absl::StrCat(where_, ": put ", name, ": the server stored ",
                                                   stored, " of ", content.size(),
                                                   " bytes (the upload was cut short)"));
    } else {
      // Renamed into place in one step: the old file or the new one, never part of one.
      rc = Quote({"RNFR " + prefix_ + temp, "RNTO " + prefix_ + name});
      if (rc == CURLE_OK) return absl::OkStatus();
      failed = Error(rc, absl::StrCat("put ", name, " (renaming ", temp, ")"));
    }
    // Nothing was written when the server could not be reached or refused the login.
    if (rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST &&
        rc != CURLE_LOGIN_DENIED && rc != CURLE_PEER_FAILED_VERIFICATION &&
        rc != CURLE_SSL_CONNECT_ERROR && rc != CURLE_USE_SSL_FAILED) {
      // The failure reported is the upload's; a temporary file this cannot remove is removed
      // by the deployment's next run (Runner::RunOne cleans `.rwg-tmp-` files first).
      (void)Quote({"DELE " + prefix_ + temp});
    }
    return failed;
  }

  absl::StatusOr<std::string> Get(const std::string& name) override {
    if (absl::Status s = CheckName(name); !s.ok()) return s;
    if (absl::Status s = Usable(); !s.ok()) return s;
    Prepare();
    std::string body;
    const std::string url = url_ + Escape(name);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &AppendTo);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &body);
    const CURLcode rc = Perform();
    if (rc == CURLE_OK) return body;
    if ((rc == CURLE_REMOTE_FILE_NOT_FOUND || rc == CURLE_FTP_COULDNT_RETR_FILE) &&
        ResponseCode() == 550) {
      return absl::NotFoundError(
          absl::StrCat(where_, ": get ", name, ": no such file (server: ", reply_, ")"));
    }
    return Error(rc, absl::StrCat("get ", name));
  }

  absl::Status Delete(const std::string& name) override {
    if (absl::Status s = CheckName(name); !s.ok()) return s;
    if (absl::Status s = Usable(); !s.ok()) return s;
    const CURLcode rc = Quote({"DELE " + prefix_ + name});
    if (rc == CURLE_OK) return absl::OkStatus();
    absl::Status failed = Error(rc, absl::StrCat("delete ", name));
    if (rc != CURLE_QUOTE_ERROR || ResponseCode() != 550) return failed;
    // 550 is both "no such file" and "not allowed": the listing tells which.
    absl::StatusOr<std::vector<RemoteFile>> files = List();
    if (!files.ok()) return failed;
    const bool there = std::any_of(files->begin(), files->end(),
                                   [&](const RemoteFile& f) { return f.name == name; });
    return there ? failed : absl::OkStatus();
  }

  absl::StatusOr<std::vector<RemoteFile>> List() override {
    if (absl::Status s = Usable(); !s.ok()) return s;
    if (mlsd_) {
      std::string body;
      const CURLcode rc = Listing("MLSD", &body);
      if (rc == CURLE_OK) {
        std::vector<RemoteFile> files;
        for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipWhitespace())) {
          RemoteFile f;
          if (ParseMlsd(absl::StripTrailingAsciiWhitespace(line), &f)) {
            files.push_back(std::move(f));
          }
        }
        return Sorted(std::move(files));
      }
      // 500/502/504: the server has no MLSD (RFC 3659 is an extension); LIST from now on.
      const long code = ResponseCode();
      if (code != 500 && code != 502 && code != 504) return Error(rc, "list (MLSD)");
      mlsd_ = false;
    }
    std::string body;
    const CURLcode rc = Listing(nullptr, &body);
    if (rc != CURLE_OK) return Error(rc, "list");
    std::vector<RemoteFile> files;
    for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipWhitespace())) {
      line = absl::StripTrailingAsciiWhitespace(line);
      if (absl::StartsWith(line, "total ")) continue;
      RemoteFile f;
      if (!ParseUnixList(line, &f)) {
        return absl::UnimplementedError(
            absl::StrCat(where_, ": list: the server's LIST is not in the Unix format (\"",
                         absl::CHexEscape(line.substr(0, 80)), "\") and it has no MLSD"));
      }
      if (!f.name.empty()) files.push_back(std::move(f));
    }
    return Sorted(std::move(files));
  }

 private:
  static std::vector<RemoteFile> Sorted(std::vector<RemoteFile> files) {
    std::sort(files.begin(), files.end(),
              [](const RemoteFile& a, const RemoteFile& b) { return a.name < b.name; });
    return files;
  }

  // The operation set up on curl_, to its end, through multi_ (see the top of the file).
  CURLcode Perform() {
    if (const CURLMcode added = curl_multi_add_handle(multi_, curl_); added != CURLM_OK) {
      return MultiFailed(added);
    }
    int running = 1;
    int idle = 0;  // passes in a row where libcurl had no socket to wait on
    CURLMcode mc = CURLM_OK;
    while (mc == CURLM_OK) {
      mc = curl_multi_perform(multi_, &running);
      if (mc != CURLM_OK || running == 0) break;
      long timeout = -1;  // NOLINT(google-runtime-int): libcurl's type
      curl_multi_timeout(multi_, &timeout);
      fd_set readable;
      fd_set writable;
      fd_set failed;
      FD_ZERO(&readable);
      FD_ZERO(&writable);
      FD_ZERO(&failed);
      int max_fd = -1;
      curl_multi_fdset(multi_, &readable, &writable, &failed, &max_fd);
      if (max_fd < 0 && ++idle <= 2) continue;  // nothing to wait for: libcurl can go on now
      // Waiting: for a socket, libcurl's next timer, or (its resolver thread, a socket this
      // fd_set cannot hold) 10 ms before asking again.
      long wait = max_fd < 0 ? 10 : 1000;  // NOLINT(google-runtime-int)
      if (timeout >= 0 && timeout < wait) wait = timeout;
      if (max_fd >= 0) idle = 0;
      mc = curl_multi_poll(multi_, nullptr, 0, static_cast<int>(wait), nullptr);
    }
    bool done = false;
    CURLcode result = CURLE_OK;
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
      if (m->msg == CURLMSG_DONE && m->easy_handle == curl_) {
        result = m->data.result;
        done = true;
      }
    }
    curl_multi_remove_handle(multi_, curl_);
    if (!done) return MultiFailed(mc);
    return result;
  }

  // An operation that libcurl's multi interface could not run (not the transfer's own
  // failure): the error says so in libcurl's words, not as a failed initialisation.
  CURLcode MultiFailed(CURLMcode mc) {
    if (error_[0] == '\0') {
      absl::SNPrintF(error_, sizeof(error_), "libcurl could not run the transfer: %s",
                     mc == CURLM_OK ? "it ended without a result" : curl_multi_strerror(mc));
    }
    return mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
  }

  absl::Status Usable() const {
    if (curl_ == nullptr || multi_ == nullptr) {
      return absl::InternalError("libcurl could not make a handle");
    }
    if (options_.host.empty()) return absl::InvalidArgumentError("ftp target: no host");
    for (const std::string* s :
         {&options_.host, &options_.directory, &options_.login, &options_.password}) {
      if (std::any_of(s->begin(), s->end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
        return absl::InvalidArgumentError(
            "ftp target: a control character in the host, directory, login or password");
      }
    }
    return absl::OkStatus();
  }

  // The options every operation has; the connection stays open across curl_easy_reset.
  void Prepare() {
    curl_easy_reset(curl_);
    reply_.clear();
    error_[0] = '\0';
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "ftp");
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    // Each data connection would be one more entry of libcurl's DNS cache, which every
    // request walks: with thousands of files that walk was most of the CPU. The control
    // connection is kept open, so nothing is looked up again anyway.
    curl_easy_setopt(curl_, CURLOPT_DNS_CACHE_TIMEOUT, 0L);
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error_);
    curl_easy_setopt(curl_, CURLOPT_USERNAME, options_.login.c_str());
    curl_easy_setopt(curl_, CURLOPT_PASSWORD, options_.password.c_str());
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout +
                                                                 options_.transfer_timeout)));
    curl_easy_setopt(curl_, CURLOPT_SERVER_RESPONSE_TIMEOUT,
                     static_cast<long>(absl::ToInt64Seconds(options_.transfer_timeout)));
    curl_easy_setopt(curl_, CURLOPT_FTP_FILEMETHOD, static_cast<long>(CURLFTPMETHOD_NOCWD));
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Discard);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &KeepReply);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &reply_);
    if (options_.tls) {
      curl_easy_setopt(curl_, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
      curl_easy_setopt(curl_, CURLOPT_FTPSSLAUTH, static_cast<long>(CURLFTPAUTH_TLS));
      curl_easy_setopt(curl_, CURLOPT_SSLVERSION,
                       options_.tls13 ? static_cast<long>(CURL_SSLVERSION_TLSv1_2)
                                      : static_cast<long>(CURL_SSLVERSION_TLSv1_2) |
                                            static_cast<long>(CURL_SSLVERSION_MAX_TLSv1_2));
      curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
      curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
      if (!options_.ca_file.empty()) {
        curl_easy_setopt(curl_, CURLOPT_CAINFO, options_.ca_file.c_str());
      }
    }
  }

  // Commands alone, in order, on the directory (no transfer).
  CURLcode Quote(std::initializer_list<std::string> list) {
    Prepare();
    Slist commands = Commands(list);
    curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(curl_, CURLOPT_QUOTE, commands.get());
    return Perform();
  }

  // The directory's listing by `command` (LIST when null).
  CURLcode Listing(const char* command, std::string* body) {
    Prepare();
    curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
    if (command != nullptr) curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, command);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &AppendTo);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, body);
    return Perform();
  }

  long ResponseCode() {
    long code = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }

  // The status of a failed operation: the code from curl's error and the server's reply, the
  // message with both (and never the password).
  absl::Status Error(CURLcode rc, absl::string_view what) {
    const long code = ResponseCode();
    std::string detail = error_[0] != '\0' ? std::string(error_) : curl_easy_strerror(rc);
    std::string message = absl::StrCat(where_, ": ", what, ": ", detail);
    if (!reply_.empty()) absl::StrAppend(&message, " (server: ", absl::CHexEscape(reply_), ")");
    if (!options_.password.empty()) {
      absl::StrReplaceAll({{options_.password, "<password>"}}, &message);
    }
    absl::StatusCode status = absl::StatusCode::kUnknown;
    switch (rc) {
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_OPERATION_TIMEDOUT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_PARTIAL_FILE:
      case CURLE_FTP_ACCEPT_FAILED:
      case CURLE_FTP_ACCEPT_TIMEOUT:
      case CURLE_FTP_CANT_GET_HOST:
      case CURLE_FTP_WEIRD_PASV_REPLY:
      case CURLE_FTP_WEIRD_227_FORMAT:
      case CURLE_FTP_PORT_FAILED:
      case CURLE_WEIRD_SERVER_REPLY:
      case CURLE_SSL_CONNECT_ERROR:
        status = absl::StatusCode::kUnavailable;
        break;
      case CURLE_LOGIN_DENIED:
      case CURLE_REMOTE_ACCESS_DENIED:
        status = absl::StatusCode::kPermissionDenied;
        break;
      case CURLE_REMOTE_DISK_FULL:
        status = absl::StatusCode::kResourceExhausted;
        break;
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_USE_SSL_FAILED:
        // A certificate that does not verify, a server without TLS: configuration, not luck.
        status = absl::StatusCode::kFailedPrecondition;
        break;
      case CURLE_URL_MALFORMAT:
        status = absl::StatusCode::kInvalidArgument;
        break;
      case CURLE_OUT_OF_MEMORY:
        status = absl::StatusCode::kResourceExhausted;
        break;
      default:
        // A command the server refused (STOR, RNFR/RNTO, DELE, a listing): its reply says.
        if (code == 452 || code == 552) {
          status = absl::StatusCode::kResourceExhausted;
        } else if (code == 553) {
          status = absl::StatusCode::kInvalidArgument;  // "file name not allowed"
        } else if (code == 530 || code == 532 || code == 550) {
          status = absl::StatusCode::kPermissionDenied;
        } else if (code == 421 || code == 425 || code == 426 || code == 450 || code == 451) {
          status = absl::StatusCode::kUnavailable;
        } else if (code >= 500) {
          status = absl::StatusCode::kFailedPrecondition;
        }
    }
    if (code == 452 || code == 552) status = absl::StatusCode::kResourceExhausted;
    return absl::Status(status, message);
  }

  const FtpTargetOptions options_;
  CURL* const curl_;
  CURLM* const multi_;  // drives curl_ and keeps its connection between operations
  std::string url_;     // ftp://host:port/<directory>/, escaped
  std::string prefix_;  // the directory as FTP commands name it, with a trailing '/'
  std::string where_;   // the target, for messages (no password)
  std::string reply_;   // the server's last reply of the operation
  char error_[CURL_ERROR_SIZE] = {};
  bool mlsd_ = true;  // until the server says it has no MLSD
};

}  // namespace

std::unique_ptr<Target> NewFtpTarget(const FtpTargetOptions& options) {
  GlobalInit();
  return std::make_unique<FtpTarget>(options);
}

}  // namespace rwg::tma
