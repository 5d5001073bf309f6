#include "tools/media-peer/rtpengine_relay.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/media-peer/bencode.h"
#include "tools/media-peer/sdp.h"

namespace rwg::media_peer {
namespace {

using media_relay::SrtpKey;
using media_relay::SrtpSuite;

// Each request is sent again after this long without an answer, until the command timeout.
constexpr absl::Duration kRetransmit = absl::Seconds(1);
constexpr size_t kMaxResponse = 65535;

constexpr absl::string_view kPhoneTag = "phone";
constexpr absl::string_view kIpbxTag = "ipbx";

std::string Proto(SrtpSuite suite) { return suite == SrtpSuite::kNone ? "RTP/AVP" : "RTP/SAVP"; }

// One request/response exchange at a time over a connected UDP socket. rtpengine matches
// retransmissions by cookie and answers them from its cache, so resending is safe.
class NgClient {
 public:
  NgClient(UdpSocket socket, SocketAddress server, absl::Duration timeout)
      : socket_(std::move(socket)), server_(server), timeout_(timeout) {}

  // The response dictionary of a request whose result is not "error".
  absl::StatusOr<Bencode> Call(const Bencode& request) {
    const std::string command = request.GetString("command");
    const std::string cookie = absl::StrCat(getpid(), "_", ++sequence_);
    const std::string wire = absl::StrCat(cookie, " ", request.Encode());
    const absl::Time deadline = absl::Now() + timeout_;
    std::string buf(kMaxResponse, '\0');
    while (true) {
      if (send(socket_.fd(), wire.data(), wire.size(), 0) < 0) {
        return Failure(command, errno);
      }
      const absl::Time resend = std::min(deadline, absl::Now() + kRetransmit);
      while (true) {
        const absl::Duration left = resend - absl::Now();
        if (left <= absl::ZeroDuration()) break;
        pollfd pfd{socket_.fd(), POLLIN, 0};
        const int ready = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        const ssize_t n = recv(socket_.fd(), buf.data(), buf.size(), 0);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          return Failure(command, errno);
        }
        absl::string_view reply(buf.data(), static_cast<size_t>(n));
        const size_t space = reply.find(' ');
        if (space == absl::string_view::npos || reply.substr(0, space) != cookie) continue;
        absl::StatusOr<Bencode> dict = Bencode::Decode(reply.substr(space + 1));
        if (!dict.ok()) {
          return absl::InternalError(
              absl::StrCat("ng ", command, ": bad response: ", dict.status().message()));
        }
        if (!dict->is_dict()) {
          return absl::InternalError(
              absl::StrCat("ng ", command, ": response is not a dictionary"));
        }
        const std::string result = dict->GetString("result");
        if (result == "error") {
          return absl::FailedPreconditionError(
              absl::StrCat("ng ", command, ": rtpengine: ", dict->GetString("error-reason")));
        }
        if (result != "ok" && result != "pong") {
          return absl::FailedPreconditionError(
              absl::StrCat("ng ", command, ": unexpected result '", result, "'"));
        }
        return dict;
      }
      if (absl::Now() >= deadline) {
        return absl::UnavailableError(absl::StrCat("ng ", command, ": no response from ",
                                                   server_.ToString(), " within ",
                                                   absl::FormatDuration(timeout_)));
      }
    }
  }

 private:
  absl::Status Failure(absl::string_view command, int err) const {
    if (err == ECONNREFUSED) {
      return absl::UnavailableError(absl::StrCat("ng ", command, ": ", server_.ToString(),
                                                 " refused (is rtpengine listening there?)"));
    }
    return absl::UnavailableError(
        absl::StrCat("ng ", command, ": ", server_.ToString(), ": ", strerror(err)));
  }

  UdpSocket socket_;
  SocketAddress server_;
  absl::Duration timeout_;
  uint64_t sequence_ = 0;
};

// The relay leg described by an SDP rtpengine produced; `suite` is the suite this end uses
// (kNone: plain RTP, no key expected).
absl::StatusOr<RelayLeg> LegFromSdp(absl::string_view what, absl::string_view sdp_text,
                                    SrtpSuite suite, int* crypto_tag) {
  absl::StatusOr<SdpAudio> sdp = ParseAudioSdp(sdp_text);
  if (!sdp.ok()) return absl::InternalError(absl::StrCat(what, ": ", sdp.status().message()));
  RelayLeg leg;
  absl::StatusOr<SocketAddress> rtp = SocketAddress::FromNumeric(sdp->address, sdp->port);
  if (!rtp.ok()) return absl::InternalError(absl::StrCat(what, ": ", rtp.status().message()));
  leg.rtp = *rtp;
  const uint16_t rtcp_port = sdp->rtcp_port != 0 ? sdp->rtcp_port : sdp->port + 1;
  absl::StatusOr<SocketAddress> rtcp = SocketAddress::FromNumeric(
      sdp->rtcp_address.empty() ? sdp->address : sdp->rtcp_address, rtcp_port);
  if (!rtcp.ok()) return absl::InternalError(absl::StrCat(what, ": ", rtcp.status().message()));
  leg.rtcp = *rtcp;
  if (suite == SrtpSuite::kNone) {
    leg.key = SrtpKey{SrtpSuite::kNone, ""};
    return leg;
  }
  const std::string name = media_relay::SuiteName(suite);
  for (const SdpCrypto& c : sdp->cryptos) {
    if (c.suite != name) continue;
    absl::StatusOr<std::string> master = media_relay::DecodeInlineKey(c.inline_key);
    if (!master.ok()) {
      return absl::InternalError(
          absl::StrCat(what, ": a=crypto:", c.tag, " ", name, ": ", master.status().message()));
    }
    leg.key = SrtpKey{suite, std::move(*master)};
    if (crypto_tag != nullptr) *crypto_tag = c.tag;
    return leg;
  }
  std::vector<std::string> offered;
  for (const SdpCrypto& c : sdp->cryptos) offered.push_back(c.suite);
  return absl::InternalError(absl::StrCat(
      what, ": no a=crypto for ", name, " (", sdp->proto,
      offered.empty() ? ", no a=crypto at all" : ", offered: ", absl::StrJoin(offered, " "), ")"));
}

SdpAudio EndpointSdp(const EndpointPlan& end, int crypto_tag) {
  SdpAudio audio;
  audio.address = end.rtp.Host();
  audio.port = end.rtp.Port();
  audio.proto = Proto(end.key.suite);
  if (end.rtcp.Port() != end.rtp.Port() + 1) audio.rtcp_port = end.rtcp.Port();
  if (end.key.suite != SrtpSuite::kNone) {
    audio.cryptos.push_back(SdpCrypto{crypto_tag, media_relay::SuiteName(end.key.suite),
                                      media_relay::EncodeInlineKey(end.key.master)});
  }
  return audio;
}

class RtpengineRelay : public RelayControl {
 public:
  RtpengineRelay(NgClient client, std::vector<std::string> extra_flags)
      : client_(std::move(client)), extra_flags_(std::move(extra_flags)) {}

  absl::Status Probe() override {
    Bencode ping = Bencode::Dict();
    ping.Set("command", Bencode::String("ping"));
    return client_.Call(ping).status();
  }

  absl::StatusOr<Allocation> Allocate(const StreamPlan& plan) override {
    const uint64_t session_id = static_cast<uint64_t>(getpid()) * 1000000 + plan.index;

    // The phone offers SRTP (or RTP); rtpengine rewrites the offer for the iPBX into the
    // iPBX's protocol, with itself as the media address.
    Bencode offer = Request("offer", plan);
    offer.Set("sdp", Bencode::String(BuildAudioSdp(EndpointSdp(plan.phone, 1), session_id)));
    offer.Set("transport-protocol", Bencode::String(Proto(plan.ipbx.key.suite)));
    absl::StatusOr<Bencode> offered = client_.Call(offer);
    if (!offered.ok()) return offered.status();
    int icp_tag = 1;
    absl::StatusOr<RelayLeg> icp = LegFromSdp(
        "ng offer: SDP for the iPBX", offered->GetString("sdp"), plan.ipbx.key.suite, &icp_tag);
    if (!icp.ok()) {
      (void)Delete(plan);
      return icp.status();
    }

    // The iPBX answers in its protocol (with the crypto tag it accepted); rtpengine rewrites
    // the answer for the phone, with its own SDES key.
    Bencode answer = Request("answer", plan);
    answer.Set("to-tag", Bencode::String(kIpbxTag));
    answer.Set("sdp",
               Bencode::String(BuildAudioSdp(EndpointSdp(plan.ipbx, icp_tag), session_id + 1)));
    absl::StatusOr<Bencode> answered = client_.Call(answer);
    if (!answered.ok()) {
      (void)Delete(plan);
      return answered.status();
    }
    absl::StatusOr<RelayLeg> set = LegFromSdp(
        "ng answer: SDP for the phone", answered->GetString("sdp"), plan.phone.key.suite, nullptr);
    if (!set.ok()) {
      (void)Delete(plan);
      return set.status();
    }
    return Allocation{plan.call_id, std::move(*set), std::move(*icp)};
  }

  absl::Status Release(const StreamPlan& plan, const Allocation& /*allocation*/) override {
    return Delete(plan);
  }

 private:
  Bencode Request(absl::string_view command, const StreamPlan& plan) const {
    Bencode req = Bencode::Dict();
    req.Set("command", Bencode::String(command));
    req.Set("call-id", Bencode::String(plan.call_id));
    req.Set("from-tag", Bencode::String(kPhoneTag));
    req.Set("ICE", Bencode::String("remove"));
    req.Set("replace", Bencode::StringList({"origin", "session-connection"}));
    std::vector<std::string> flags = {"trust-address"};
    flags.insert(flags.end(), extra_flags_.begin(), extra_flags_.end());
    req.Set("flags", Bencode::StringList(flags));
    return req;
  }

  absl::Status Delete(const StreamPlan& plan) {
    Bencode del = Bencode::Dict();
    del.Set("command", Bencode::String("delete"));
    del.Set("call-id", Bencode::String(plan.call_id));
    // The whole call, now (rtpengine otherwise keeps a deleted branch for 30 s).
    del.Set("delete-delay", Bencode::Integer(0));
    return client_.Call(del).status();
  }

  NgClient client_;
  std::vector<std::string> extra_flags_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RelayControl>> MakeRtpengineRelay(const RtpengineOptions& options) {
  absl::StatusOr<std::pair<std::string, uint16_t>> host_port = SplitHostPort(options.ng);
  if (!host_port.ok()) return host_port.status();
  absl::StatusOr<SocketAddress> server =
      SocketAddress::Resolve(host_port->first, host_port->second);
  if (!server.ok()) return server.status();
  absl::StatusOr<UdpSocket> socket =
      UdpSocket::Bind(server->family() == AF_INET6 ? "::" : "0.0.0.0", 0);
  if (!socket.ok()) return socket.status();
  if (connect(socket->fd(), server->sa(), server->len()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("ng: connect ", server->ToString(), ": ", strerror(errno)));
  }
  return std::unique_ptr<RelayControl>(new RtpengineRelay(
      NgClient(std::move(*socket), *server, options.timeout), options.extra_flags));
}

}  // namespace rwg::media_peer
