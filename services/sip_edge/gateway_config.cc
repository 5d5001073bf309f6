#include "services/sip_edge/gateway_config.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/core/devices.h"
#include "services/core/log.h"

namespace rwg::sip_edge {

namespace {

absl::StatusOr<GatewayView> ReadView(const nlohmann::json& j);

}  // namespace

absl::StatusOr<GatewayView> ParseGatewayView(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("rwg:config is not valid JSON");
  }
  try {
    return ReadView(j);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type
    return absl::DataLossError(absl::StrCat("rwg:config: ", e.what()));
  }
}

namespace {

absl::StatusOr<GatewayView> ReadView(const nlohmann::json& j) {
  GatewayView v;
  v.public_name = j.value("public_name", v.public_name);
  const nlohmann::json icp = j.value("icp", nlohmann::json::object());
  v.icp_host = icp.value("host", "");
  v.icp_port = icp.value("sip_port", 5060u);
  // Prefer TLS toward the ICP when it offers it, as seed §5.4.4 recommends.
  v.icp_transport = "tcp";
  for (const auto& t : icp.value("sip_transports", nlohmann::json::array())) {
    if (t == "TLS") v.icp_transport = "tls";
  }
  const nlohmann::json lic = j.value("licences", nlohmann::json::object());
  v.licences = lic.value("teleworker", 0u);
  const nlohmann::json sip = j.value("sip", nlohmann::json::object());
  v.tls_exposure = sip.value("tls", v.tls_exposure);
  v.tcp_exposure = sip.value("tcp", v.tcp_exposure);
  v.udp_exposure = sip.value("udp", v.udp_exposure);
  v.set_side_inbound = sip.value("set_side_inbound", v.set_side_inbound);
  v.set_side_outbound = sip.value("set_side_outbound", v.set_side_outbound);
  v.icp_side_inbound = sip.value("icp_side_inbound", v.icp_side_inbound);
  v.icp_side_outbound = sip.value("icp_side_outbound", v.icp_side_outbound);
  v.srtp_suite = sip.value("srtp_suite", v.srtp_suite);
  const nlohmann::json network = j.value("network", nlohmann::json::object());
  v.rtp_set_side_address = network.value("rtp_set_side_address", "");
  v.rtp_icp_side_address = network.value("rtp_icp_side_address", "");
  const nlohmann::json ports = j.value("ports", nlohmann::json::object());
  v.tls_port = ports.value("sip_tls", v.tls_port);
  v.tcp_port = ports.value("sip_tcp", v.tcp_port);
  v.udp_port = ports.value("sip_udp", v.udp_port);
  if (!v.icp_host.empty()) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(v.icp_host.c_str(), nullptr, &hints, &res) == 0) {
      for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {};
        const void* src =
            a->ai_family == AF_INET
                ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
        if (inet_ntop(a->ai_family, src, buf, sizeof(buf))) v.icp_addresses.push_back(buf);
      }
      freeaddrinfo(res);
    }
  }
  return v;
}

}  // namespace

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
