// What the serving threads write back for one request (Answer: a status, header lines, and a
// body from a text, from memory or from an open file of the store), and how failures inside
// the service while serving are counted and logged (InternalErrors). Shared by the request
// handling (request_handler.h), the XML proxy (xml_proxy.h) and the connection workers
// (worker.h).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "services/provisioning/file_cache.h"

namespace rwg::provisioning {

using Request = boost::beast::http::request<boost::beast::http::empty_body>;

// The answer to one request: status, headers and a body of one of three kinds.
struct Answer {
  boost::beast::http::status status = boost::beast::http::status::ok;
  std::string kind = "other";
  std::string text;  // error bodies
  std::shared_ptr<OpenFile> file;
  std::shared_ptr<const std::string> memory;
  std::shared_ptr<const FileCache::Entry> entry;  // a file's prebuilt header lines
  bool with_type = false;                         // ...its Content-Type line too
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<std::pair<boost::beast::http::field, std::string>> headers;
  bool head = false;
  bool close = false;  // end the connection after this answer
  bool proxy = false;  // to be answered by the iPBX's XML port (XmlProxy)
};

// Failures inside the service while serving: counted (rwg_provisioning_internal_errors_total)
// and logged; the service keeps serving.
class InternalErrors {
 public:
  explicit InternalErrors(prometheus::Registry& registry);
  // Counts and logs what was thrown while serving (`where`); never throws itself.
  void Record(const char* where, const std::exception_ptr& thrown) noexcept;
  // The answer to a request whose handling threw: 500, and the connection ends.
  Answer AnswerFor(const char* where, const std::exception_ptr& thrown, const char* kind);

 private:
  prometheus::Counter& counter_;
};

}  // namespace rwg::provisioning
