#include "tools/media-peer/rwg_relay.h"

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "rwg/relay/v1/relay.grpc.pb.h"

namespace rwg::media_peer {
namespace {

namespace relaypb = ::rwg::relay::v1;
using media_relay::SrtpKey;
using media_relay::SrtpSuite;

// The gRPC code's name (gRPC and absl share the numbering), e.g. "INVALID_ARGUMENT".
std::string CodeName(grpc::StatusCode code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "ERROR" : name;
}

// "Allocate: UNAVAILABLE: failed to connect ..." with the matching absl code.
absl::Status FromGrpc(absl::string_view rpc, const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(rpc, ": ", CodeName(s.error_code()), ": ", s.error_message()));
}

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read ", what, " ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string SuiteForApi(SrtpSuite suite) {
  return suite == SrtpSuite::kNone ? "RTP" : media_relay::SuiteName(suite);
}

void FillLeg(const EndpointPlan& end, relaypb::LegRequest* leg) {
  leg->set_suite(SuiteForApi(end.key.suite));
  leg->set_remote_key(end.key.master);
  leg->set_remote_address(end.rtp.Host());
  leg->set_remote_port(end.rtp.Port());
  // 0 asks for the usual RTP port + 1; anything else is signalled as SDP's a=rtcp would.
  if (end.rtcp.Port() != end.rtp.Port() + 1) leg->set_remote_rtcp_port(end.rtcp.Port());
}

// Per-leg counters summed over every released session.
struct LegTotals {
  uint64_t rtp_in = 0;
  uint64_t rtp_out = 0;
  uint64_t rtcp_in = 0;
  uint64_t rtcp_out = 0;
  uint64_t dropped_foreign_source = 0;
  uint64_t dropped_auth_failure = 0;
  uint64_t dropped_replay = 0;
  uint64_t dropped_malformed = 0;

  void Add(const relaypb::LegStats& s) {
    rtp_in += s.rtp_in().packets();
    rtp_out += s.rtp_out().packets();
    rtcp_in += s.rtcp_in().packets();
    rtcp_out += s.rtcp_out().packets();
    dropped_foreign_source += s.dropped_foreign_source();
    dropped_auth_failure += s.dropped_auth_failure();
    dropped_replay += s.dropped_replay();
    dropped_malformed += s.dropped_malformed();
  }

  nlohmann::json ToJson() const {
    return {{"rtp_in", rtp_in},
            {"rtp_out", rtp_out},
            {"rtcp_in", rtcp_in},
            {"rtcp_out", rtcp_out},
            {"dropped_foreign_source", dropped_foreign_source},
            {"dropped_auth_failure", dropped_auth_failure},
            {"dropped_replay", dropped_replay},
            {"dropped_malformed", dropped_malformed}};
  }
};

class RwgRelay : public RelayControl {
 public:
  RwgRelay(std::shared_ptr<grpc::Channel> channel, std::string token, std::string relay_host,
           absl::Duration timeout)
      : stub_(relaypb::RelayService::NewStub(std::move(channel))),
        token_(std::move(token)),
        relay_host_(std::move(relay_host)),
        timeout_(timeout) {}

  absl::Status Probe() override { return absl::OkStatus(); }

  absl::StatusOr<Allocation> Allocate(const StreamPlan& plan) override {
    relaypb::AllocateRequest req;
    req.set_call_id(plan.call_id);
    FillLeg(plan.phone, req.mutable_set());
    FillLeg(plan.ipbx, req.mutable_icp());
    relaypb::Session session;
    auto ctx = Context();
    if (grpc::Status s = stub_->Allocate(ctx.get(), req, &session); !s.ok()) {
      return FromGrpc("Allocate", s);
    }
    Allocation a;
    a.id = session.id();
    absl::StatusOr<RelayLeg> set = ToRelayLeg("set", session.set());
    absl::StatusOr<RelayLeg> icp = ToRelayLeg("icp", session.icp());
    absl::Status bad = !set.ok() ? set.status() : icp.status();
    if (!bad.ok()) {
      (void)Delete(a.id);
      return absl::Status(bad.code(),
                          absl::StrCat("Allocate: session ", a.id, ": ", bad.message()));
    }
    a.set = std::move(*set);
    a.icp = std::move(*icp);
    return a;
  }

  absl::Status Release(const StreamPlan& /*plan*/, const Allocation& allocation) override {
    return Delete(allocation.id);
  }

  nlohmann::json ReleaseSummary() const override {
    if (released_ == 0) return nullptr;
    return {{"sessions", released_}, {"set", set_totals_.ToJson()}, {"icp", icp_totals_.ToJson()}};
  }

 private:
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
    return ctx;
  }

  absl::Status Delete(const std::string& id) {
    relaypb::DeleteRequest req;
    req.set_id(id);
    relaypb::DeleteResponse resp;
    auto ctx = Context();
    if (grpc::Status s = stub_->Delete(ctx.get(), req, &resp); !s.ok()) {
      return FromGrpc("Delete", s);
    }
    ++released_;
    set_totals_.Add(resp.final().set().stats());
    icp_totals_.Add(resp.final().icp().stats());
    return absl::OkStatus();
  }

  absl::StatusOr<RelayLeg> ToRelayLeg(absl::string_view name, const relaypb::Leg& leg) const {
    RelayLeg out;
    if (leg.local_port() == 0 || leg.local_port() >= 65535) {
      return absl::InternalError(
          absl::StrCat(name, ".local_port ", leg.local_port(), " is not a usable RTP port"));
    }
    // A relay bound to every address reports the wildcard; its API host is then the one
    // media can reach too.
    const std::string& host = leg.local_address();
    absl::StatusOr<SocketAddress> rtp = SocketAddress::FromNumeric(host, leg.local_port());
    if (host.empty() || (rtp.ok() && rtp->IsUnspecified())) {
      rtp = SocketAddress::Resolve(relay_host_, leg.local_port());
    }
    if (!rtp.ok()) {
      return absl::InternalError(absl::StrCat(name, ".local_address: ", rtp.status().message()));
    }
    out.rtp = *rtp;
    out.rtcp = *rtp;
    out.rtcp.SetPort(static_cast<uint16_t>(leg.local_port() + 1));
    const std::string& suite = leg.suite();
    if (suite.empty() || absl::AsciiStrToUpper(suite) == "RTP") {
      out.key = SrtpKey{SrtpSuite::kNone, ""};
    } else {
      absl::StatusOr<SrtpSuite> parsed = media_relay::ParseSuite(suite);
      if (!parsed.ok()) {
        return absl::InternalError(absl::StrCat(name, ".suite: ", parsed.status().message()));
      }
      out.key = SrtpKey{*parsed, leg.local_key()};
    }
    if (absl::Status s = media_relay::ValidateKey(out.key); !s.ok()) {
      return absl::InternalError(absl::StrCat(name, ".local_key: ", s.message()));
    }
    return out;
  }

  std::unique_ptr<relaypb::RelayService::Stub> stub_;
  std::string token_;
  std::string relay_host_;
  absl::Duration timeout_;
  uint64_t released_ = 0;
  LegTotals set_totals_;
  LegTotals icp_totals_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RelayControl>> MakeRwgRelay(const RwgRelayOptions& options) {
  absl::StatusOr<std::pair<std::string, uint16_t>> host_port = SplitHostPort(options.target);
  if (!host_port.ok()) return host_port.status();
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.ca_file.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    absl::StatusOr<std::string> pem = ReadFile(options.ca_file, "CA file");
    if (!pem.ok()) return pem.status();
    if (pem->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat("CA file ", options.ca_file, " holds no PEM certificate"));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = std::move(*pem);
    creds = grpc::SslCredentials(ssl);
  }
  std::string token;
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> content = ReadFile(options.token_file, "token file");
    if (!content.ok()) return content.status();
    token = std::string(absl::StripAsciiWhitespace(*content));
    if (token.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("token file ", options.token_file, " is empty"));
    }
  }
  grpc::ChannelArguments args;
  auto channel = grpc::CreateCustomChannel(options.target, creds, args);
  return std::unique_ptr<RelayControl>(
      new RwgRelay(std::move(channel), std::move(token), host_port->first, options.timeout));
}

}  // namespace rwg::media_peer
