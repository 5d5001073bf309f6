#include "services/sip_edge/gateway_config.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "services/core/devices.h"
#include "services/core/log.h"

namespace rwg::sip_edge {

namespace {

using nlohmann::json;

// The members of one object of rwg:config (`path`, "" for the top level; an absent object reads
// as empty) read with their types and ranges checked; absent members keep their defaults. The
// first problem is kept, naming the field.
class Reader {
 public:
  Reader(const json& root, std::string path) : path_(std::move(path)) {
    if (path_.empty()) {
      obj_ = &root;
    } else if (auto it = root.find(path_); it != root.end()) {
      if (it->is_object()) {
        obj_ = &*it;
      } else {
        Fail(path_, "not an object");
      }
    }
  }

  void String(const char* key, std::string* out, size_t max = 253) {
    const json* v = Find(key);
    if (v == nullptr) return;
    if (!v->is_string()) return Fail(Name(key), "not a string");
    const auto& s = v->get_ref<const std::string&>();
    if (s.size() > max) return Fail(Name(key), absl::StrCat("longer than ", max, " bytes"));
    *out = s;
  }

  void OneOf(const char* key, std::string* out, std::initializer_list<absl::string_view> allowed) {
    std::string v = *out;
    String(key, &v);
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      return Fail(Name(key), absl::StrCat("'", absl::CHexEscape(v.substr(0, 32)),
                                          "' is not one of ", absl::StrJoin(allowed, ", ")));
    }
    *out = v;
  }

  void Number(const char* key, uint32_t* out, uint64_t min, uint64_t max) {
    const json* v = Find(key);
    if (v == nullptr) return;
    // Integers only: nlohmann would truncate 5060.5 and wrap -1 and 2^32 + 5060 silently.
    if (!v->is_number_integer()) return Fail(Name(key), "not an integer");
    if (!v->is_number_unsigned() || v->get<uint64_t>() < min || v->get<uint64_t>() > max) {
      return Fail(Name(key), absl::StrCat(v->dump(), " is not in ", min, "-", max));
    }
    *out = static_cast<uint32_t>(v->get<uint64_t>());
  }

  const json* Find(const char* key) const {
    if (obj_ == nullptr) return nullptr;
    auto it = obj_->find(key);
    return it == obj_->end() ? nullptr : &*it;
  }

  std::string Name(const char* key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }

  absl::Status status() const { return status_; }

 private:
  void Fail(const std::string& field, const std::string& what) {
    if (status_.ok()) {
      status_ = absl::DataLossError(absl::StrCat("rwg:config: ", field, ": ", what));
    }
  }

  std::string path_;
  const json* obj_ = nullptr;
  absl::Status status_;
};

constexpr uint64_t kMaxPort = 65535;

}  // namespace

std::vector<std::string> ResolveHost(const std::string& host) {
  std::vector<std::string> out;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return out;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* src =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if (inet_ntop(a->ai_family, src, buf, sizeof(buf))) out.push_back(buf);
  }
  freeaddrinfo(res);
  return out;
}

absl::StatusOr<GatewayView> ParseGatewayView(const std::string& text, const HostResolver& resolve) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("rwg:config is not valid JSON");
  }
  GatewayView v;
  Reader top(j, "");
  top.String("public_name", &v.public_name);
  Reader icp(j, "icp");
  icp.String("host", &v.icp_host);
  icp.Number("sip_port", &v.icp_port, 1, kMaxPort);
  // Prefer TLS toward the ICP when it offers it, as seed §5.4.4 recommends.
  v.icp_transport = "tcp";
  absl::Status transports;
  if (const json* t = icp.Find("sip_transports"); t != nullptr) {
    if (!t->is_array()) {
      transports = absl::DataLossError("rwg:config: icp.sip_transports: not an array");
    } else {
      for (const json& e : *t) {
        if (e == "TLS") v.icp_transport = "tls";
      }
    }
  }
  Reader lic(j, "licences");
  lic.Number("teleworker", &v.licences, 0, UINT32_MAX);
  Reader sip(j, "sip");
  sip.OneOf("tls", &v.tls_exposure, {"DISABLED", "PRIVATE", "PUBLIC"});
  sip.OneOf("tcp", &v.tcp_exposure, {"DISABLED", "PRIVATE", "PUBLIC"});
  sip.OneOf("udp", &v.udp_exposure, {"DISABLED", "PRIVATE", "PUBLIC"});
  sip.OneOf("set_side_inbound", &v.set_side_inbound, {"SRTP_ONLY", "SRTP_OR_RTP", "RTP_ONLY"});
  sip.OneOf("icp_side_inbound", &v.icp_side_inbound, {"SRTP_ONLY", "SRTP_OR_RTP", "RTP_ONLY"});
  sip.OneOf("set_side_outbound", &v.set_side_outbound, {"SRTP_ONLY", "AVP_CRYPTO", "RTP_ONLY"});
  sip.OneOf("icp_side_outbound", &v.icp_side_outbound, {"SRTP_ONLY", "AVP_CRYPTO", "RTP_ONLY"});
  sip.OneOf("srtp_suite", &v.srtp_suite,
            {"", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"});
  Reader network(j, "network");
  network.String("rtp_set_side_address", &v.rtp_set_side_address);
  network.String("rtp_icp_side_address", &v.rtp_icp_side_address);
  Reader ports(j, "ports");
  ports.Number("sip_tls", &v.tls_port, 1, kMaxPort);
  ports.Number("sip_tcp", &v.tcp_port, 1, kMaxPort);
  ports.Number("sip_udp", &v.udp_port, 1, kMaxPort);
  for (const absl::Status& st : {top.status(), icp.status(), transports, lic.status(), sip.status(),
                                 network.status(), ports.status()}) {
    if (!st.ok()) return st;
  }
  if (!v.icp_host.empty()) v.icp_addresses = resolve(v.icp_host);
  return v;
}

std::string ResolveListen(const std::string& option, const GatewayView& view, ListenerKind kind) {
  if (option != "config") return option;
  const std::string& exposure = kind == ListenerKind::kTls   ? view.tls_exposure
                                : kind == ListenerKind::kTcp ? view.tcp_exposure
                                                             : view.udp_exposure;
  if (exposure == "DISABLED") return "";
  return absl::StrCat("0.0.0.0:", kind == ListenerKind::kTls   ? view.tls_port
                                  : kind == ListenerKind::kTcp ? view.tcp_port
                                                               : view.udp_port);
}

absl::Status GatewayConfigWatcher::Refresh() {
  absl::StatusOr<core::RedisReply> r = redis_.Command({"GET", core::kConfigKey});
  if (!r.ok()) return r.status();
  if (r->is_nil()) {
    return absl::FailedPreconditionError("no gateway configuration yet: start control first");
  }
  absl::StatusOr<GatewayView> v = ParseGatewayView(r->str);
  if (!v.ok()) return v.status();
  auto next = std::make_shared<const GatewayView>(*std::move(v));
  absl::MutexLock lock(&mu_);
  view_ = std::move(next);
  return absl::OkStatus();
}

absl::Status GatewayConfigWatcher::Start(std::chrono::milliseconds period) {
  absl::Status first = Refresh();
  {
    absl::MutexLock lock(&mu_);
    last_ = first;
  }
  thread_ = std::thread([this, period]() {
    bool last_ok = true;
    while (!stop_.load()) {
      for (auto waited = std::chrono::milliseconds(0); waited < period && !stop_.load();
           waited += std::chrono::milliseconds(100)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      absl::Status s = Refresh();
      {
        absl::MutexLock lock(&mu_);
        last_ = s;
      }
      if (!s.ok() && last_ok) {
        core::log::Warn("cannot refresh the gateway configuration",
                        {{"error", std::string(s.message())}});
      }
      last_ok = s.ok();
    }
  });
  return first;
}

void GatewayConfigWatcher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

absl::Status GatewayConfigWatcher::last_status() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

std::shared_ptr<const GatewayView> GatewayConfigWatcher::Get() const {
  absl::MutexLock lock(&mu_);
  return view_;
}

}  // namespace rwg::sip_edge
