// Request handling of the provisioning server (see request_handler.h): bans, the hash, the
// path's rules, files of the store, and the misses that ban a source.
#include "services/provisioning/request_handler.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/provisioning/http_rules.h"
#include "services/provisioning/request_path.h"

namespace rwg::provisioning {

namespace http = boost::beast::http;

namespace {

// Sources whose unknown-MAC requests are counted at once: each may hold up to
// --ban-mac-misses MAC addresses, so fewer than the hash misses' 100,000.
constexpr size_t kMaxMacMissSources = 10000;

Answer Error(http::status s, const char* text, const char* kind = "other") {
  Answer a;
  a.status = s;
  a.kind = kind;
  a.text = text;
  return a;
}

// Answers that give the phone its file: whole, a range of it, or "yours is current".
bool Fetched(http::status s) {
  return s == http::status::ok || s == http::status::partial_content ||
         s == http::status::not_modified;
}

}  // namespace

RequestHandler::RequestHandler(const ServerOptions& options, SharedState& state, core::Clock& clock,
                               prometheus::Registry& registry)
    : options_(options),
      state_(state),
      misses_(options_.ban_misses, options_.ban_window, clock),
      mac_misses_(options_.ban_mac_misses, options_.ban_window, clock, kMaxMacMissSources),
      requests_(prometheus::BuildCounter()
                    .Name("rwg_provisioning_requests_total")
                    .Help("Requests answered, by status and file kind")
                    .Register(registry)),
      bytes_(prometheus::BuildCounter()
                 .Name("rwg_provisioning_bytes_total")
                 .Help("Body bytes sent")
                 .Register(registry)
                 .Add({})),
      hash_misses_(prometheus::BuildCounter()
                       .Name("rwg_provisioning_hash_misses_total")
                       .Help("Requests under a wrong or missing hash")
                       .Register(registry)
                       .Add({})),
      mac_misses_total_(prometheus::BuildCounter()
                            .Name("rwg_provisioning_mac_misses_total")
                            .Help("Requests under the hash for a MAC file the store does not "
                                  "have")
                            .Register(registry)
                            .Add({})),
      bans_(prometheus::BuildCounter()
                .Name("rwg_provisioning_bans_total")
                .Help("Sources banned for missing the hash, or asking for unknown MAC files, "
                      "too often")
                .Register(registry)
                .Add({})) {}

RequestHandler::~RequestHandler() { CloseStore(); }

absl::Status RequestHandler::OpenStore() {
  store_fd_ = ::open(options_.store_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (store_fd_ < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("store-dir: cannot open '", options_.store_dir, "': ", strerror(errno)));
  }
  return absl::OkStatus();
}

void RequestHandler::CloseStore() {
  if (store_fd_ >= 0) ::close(store_fd_);
  store_fd_ = -1;
}

void RequestHandler::Count(const Answer& a, uint64_t body_bytes) {
  // Each thread keeps the counters it used (Family::Add hashes the labels under a lock).
  thread_local std::unordered_map<std::string, prometheus::Counter*> counters;
  std::string key = absl::StrCat(static_cast<int>(a.status), "/", a.kind);
  auto it = counters.find(key);
  if (it == counters.end()) {
    prometheus::Counter& c =
        requests_.Add({{"status", std::to_string(static_cast<int>(a.status))}, {"kind", a.kind}});
    it = counters.emplace(std::move(key), &c).first;
  }
  it->second->Increment();
  bytes_.Increment(static_cast<double>(body_bytes));
}

void RequestHandler::BanFor(const std::string& source, const std::string& reason) {
  state_.Ban(source, reason, options_.ban_length);
  bans_.Increment();
  core::log::Warn(
      "provisioning source banned",
      {{"source", source}, {"reason", reason}, {"for", absl::FormatDuration(options_.ban_length)}});
}

Answer RequestHandler::Miss(const std::string& source) {
  hash_misses_.Increment();
  if (misses_.Miss(source)) {
    BanFor(source, absl::StrCat(options_.ban_misses, " hash misses within ",
                                absl::FormatDuration(options_.ban_window)));
  }
  return Error(http::status::not_found, "not found\n");
}

// A MAC file the store does not have, asked for under the right hash: a phone that is not
// provisioned yet asks for its own again and again (one miss), someone enumerating MAC
// addresses for many (many misses). Files every phone asks for that a site may not have
// (aastra.cfg, startup.cfg, <model>.cfg, security.tuz, firmware, certificates...) do not
// carry a MAC and are not counted.
void RequestHandler::MacMiss(const std::string& source, const std::string& mac) {
  if (mac.empty()) return;
  mac_misses_total_.Increment();
  if (mac_misses_.Miss(source, mac)) {
    BanFor(source, absl::StrCat(options_.ban_mac_misses, " unknown MAC files within ",
                                absl::FormatDuration(options_.ban_window)));
  }
}

Answer RequestHandler::Handle(const Request& req, const std::string& source,
                              const std::string& address) {
  if (state_.Banned(source)) {
    Answer a = Error(http::status::forbidden, "forbidden\n");
    a.close = true;
    return a;
  }
  const bool head = req.method() == http::verb::head;
  if (req.method() != http::verb::get && !head) {
    Answer a = Error(http::status::method_not_allowed, "method not allowed\n");
    a.headers.push_back({http::field::allow, "GET, HEAD"});
    return a;
  }
  const absl::string_view target(req.target().data(), req.target().size());
  // The hash is judged first, in constant time, on the raw first segment: a wrong one gets
  // the same 404 whatever the rest of the path.
  std::shared_ptr<const std::string> key = state_.Hash();
  const size_t end = target.size() > 1 ? target.find_first_of("/?", 1) : absl::string_view::npos;
  const absl::string_view first =
      target.size() > 1 && target[0] == '/'
          ? target.substr(1, end == absl::string_view::npos ? absl::string_view::npos : end - 1)
          : absl::string_view();
  if (key == nullptr || key->empty() || !core::ConstantTimeEquals(first, *key)) {
    Answer a = Miss(source);
    a.head = head;
    return a;
  }
  absl::StatusOr<RequestPath> path = ParseRequestPath(target);
  if (!path.ok()) {
    Answer a = absl::IsInvalidArgument(path.status())
                   ? Error(http::status::bad_request, "bad request\n")
                   : Error(http::status::not_found, "not found\n");
    a.head = head;
    return a;
  }
  if (path->kind == RequestPath::Kind::kProxy) {
    Answer a;
    a.kind = "xml";
    a.proxy = true;
    return a;
  }
  Answer a = ServeFile(req, path->file);
  if (a.status == http::status::not_found) {
    MacMiss(source, MacOfFile(path->file));
  } else if (!head && Fetched(a.status) && state_.fetches() != nullptr) {
    // The phone has its configuration (a 304: the one it has is current). Noted in memory
    // only: the state's thread writes it to Redis.
    if (std::string mac = MacOfConfigFile(path->file); !mac.empty()) {
      state_.fetches()->Fetched(mac, address);
    }
  }
  a.head = head;
  return a;
}

Answer RequestHandler::ServeFile(const Request& req, const std::string& name) {
  const char* kind = FileKind(name);
  std::optional<FileCache::Found> found = cache_.Open(store_fd_, name);
  if (!found) return Error(http::status::not_found, "not found\n", kind);
  const std::shared_ptr<const FileCache::Entry>& cached = found->entry;
  const FileInfo& info = cached->info;
  const std::string& etag = cached->etag;
  Answer a;
  a.kind = kind;
  a.entry = cached;
  auto header = [&](http::field f) {
    auto it = req.find(f);
    return it == req.end() ? absl::string_view()
                           : absl::string_view(it->value().data(), it->value().size());
  };
  if (NotModified(header(http::field::if_none_match), header(http::field::if_modified_since), etag,
                  info.modified)) {
    a.status = http::status::not_modified;
    return a;
  }
  ByteRange range;
  switch (ParseRange(header(http::field::range), header(http::field::if_range), info.size, etag,
                     info.modified, &range)) {
    case RangeResult::kUnsatisfiable:
      a.status = http::status::range_not_satisfiable;
      a.headers.push_back({http::field::content_range, absl::StrCat("bytes */", info.size)});
      return a;
    case RangeResult::kPartial:
      a.status = http::status::partial_content;
      a.headers.push_back({http::field::content_range,
                           absl::StrCat("bytes ", range.start, "-", range.start + range.length - 1,
                                        "/", info.size)});
      a.offset = range.start;
      a.length = range.length;
      break;
    case RangeResult::kWhole:
      a.length = info.size;
      break;
  }
  a.with_type = true;
  if (cached->data != nullptr) {
    a.memory = cached->data;
  } else {
    a.file = std::move(found->file);
  }
  return a;
}

}  // namespace rwg::provisioning
