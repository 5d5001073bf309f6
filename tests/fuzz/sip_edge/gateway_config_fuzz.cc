// rwg:config as the SIP edge reads it back from Redis every few seconds (ParseGatewayView; the
// ICP host resolved by a stand-in, never by DNS) and the listeners it derives (ResolveListen).
// Properties: a view that is accepted has its ports in 1-65535 and its modes among the ones
// the edge knows, and every listener it derives is "" or "0.0.0.0:<that port>".
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/sip_edge/gateway_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace rwg::sip_edge;

namespace {

bool OneOf(const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed) {
    if (v == a) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  int resolved = 0;
  absl::StatusOr<GatewayView> v = ParseGatewayView(text, [&](const std::string& host) {
    ++resolved;
    return std::vector<std::string>{"192.0.2.1"};
  });
  if (!v.ok()) {
    RWG_FUZZ_CHECK("gateway_config", resolved == 0);
    return 0;
  }
  RWG_FUZZ_CHECK("gateway_config", resolved == (v->icp_host.empty() ? 0 : 1));
  for (uint32_t port : {v->icp_port, v->tls_port, v->tcp_port, v->udp_port}) {
    RWG_FUZZ_CHECK("gateway_config", port >= 1 && port <= 65535);
  }
  RWG_FUZZ_CHECK("gateway_config", v->icp_transport == "tcp" || v->icp_transport == "tls");
  for (const std::string* e : {&v->tls_exposure, &v->tcp_exposure, &v->udp_exposure}) {
    RWG_FUZZ_CHECK("gateway_config", OneOf(*e, {"DISABLED", "PRIVATE", "PUBLIC"}));
  }
  for (const std::string* m : {&v->set_side_inbound, &v->icp_side_inbound}) {
    RWG_FUZZ_CHECK("gateway_config", OneOf(*m, {"SRTP_ONLY", "SRTP_OR_RTP", "RTP_ONLY"}));
  }
  for (const std::string* m : {&v->set_side_outbound, &v->icp_side_outbound}) {
    RWG_FUZZ_CHECK("gateway_config", OneOf(*m, {"SRTP_ONLY", "AVP_CRYPTO", "RTP_ONLY"}));
  }
  RWG_FUZZ_CHECK("gateway_config", v->public_name.size() <= 253 && v->icp_host.size() <= 253);
  const std::pair<ListenerKind, uint32_t> listeners[] = {{ListenerKind::kTls, v->tls_port},
                                                         {ListenerKind::kTcp, v->tcp_port},
                                                         {ListenerKind::kUdp, v->udp_port}};
  for (const auto& [kind, port] : listeners) {
    const std::string l = ResolveListen("config", *v, kind);
    RWG_FUZZ_CHECK("gateway_config", l.empty() || l == absl::StrCat("0.0.0.0:", port));
  }
  return 0;
}
