// A raw SIP message, as a phone or the iPBX sends it, parsed by sofia-sip with the default
// message class (what nta does with every message received), then handed to the rwg code that
// reads parsed headers: the digest credentials (edge.cc's CredentialsFor), the challenge
// answer (AnswerChallenge on the text of WWW-Authenticate / Proxy-Authenticate), the headers'
// text (HeaderText), the SDP body (ReadAudio, RewriteAudio), and the helpers of calls that
// copy parts of a message into the other side's (call_sip.h: addresses, the body, options,
// session timer headers, a REFER's Replaces). Properties: what those helpers give for another
// message's headers holds no CR or LF (no header of the phone's making can be injected), and
// percent-encoding round-trips.
#include <sofia-sip/msg.h>
#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_protos.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "services/sip_edge/call_sip.h"
#include "services/sip_edge/calls.h"
#include "services/sip_edge/digest.h"
#include "services/sip_edge/sdp.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace rwg::sip_edge;

void Credentials(const msg_auth_t* au) {
  for (; au != nullptr; au = au->au_next) {
    std::vector<std::string> params;
    for (int i = 0; au->au_params && au->au_params[i]; ++i) params.push_back(au->au_params[i]);
    absl::StatusOr<DigestParams> p = ParseDigestParams(params);
    if (p.ok()) (void)p->Get("realm");
    (void)ParseDigest(HeaderText(au));
  }
}

void Challenge(const msg_auth_t* ch) {
  if (ch == nullptr) return;
  rwg::fuzz::FixedRandom rng;
  (void)AnswerChallenge(HeaderText(ch), "21001", "secret", "INVITE", "sip:21002@192.0.2.1", 1, rng);
}

void Body(const sip_t* sip) {
  if (sip->sip_payload == nullptr || sip->sip_payload->pl_len == 0) return;
  const std::string sdp(sip->sip_payload->pl_data, sip->sip_payload->pl_len);
  absl::StatusOr<AudioStream> a = ReadAudio(sdp, false);
  (void)ReadAudio(sdp, true);
  const SdesCrypto key{1, "AES_CM_128_HMAC_SHA1_80", std::string(30, 'k')};
  (void)RewriteAudio(sdp, "192.0.2.10", 20000, key, false);
  if (a.ok()) (void)RewriteAudio(sdp, "2001:db8::10", 20002, std::nullopt);
}

bool OneLine(const std::string& s) { return s.find_first_of("\r\n") == std::string::npos; }

void CallHelpers(msg_t* msg, const sip_t* sip) {
  su_home_t* home = msg_home(msg);
  for (const sip_addr_t* a : {sip->sip_from, sip->sip_to}) {
    RWG_FUZZ_CHECK("sip_message", OneLine(NameAddr(home, a)));
  }
  for (const sip_contact_t* m = sip->sip_contact; m != nullptr; m = m->m_next) {
    RWG_FUZZ_CHECK("sip_message", OneLine(UrlText(home, m->m_url)));
  }
  if (sip->sip_request != nullptr) {
    RWG_FUZZ_CHECK("sip_message", OneLine(UrlText(home, sip->sip_request->rq_url)));
  }
  const std::string body = PayloadOf(sip);
  if (!body.empty()) {
    RWG_FUZZ_CHECK("sip_message", body.size() == sip->sip_payload->pl_len);
    absl::StatusOr<AudioStream> a = ReadAudio(body, false);
    if (a.ok()) {
      const RelayRemote r = RemoteOf(*a);
      RWG_FUZZ_CHECK("sip_message", r.port == a->port && r.address == a->address);
      RWG_FUZZ_CHECK("sip_message", r.rtcp_port == 0 || r.rtcp_port == a->rtcp_port);
    }
  }
  (void)HasOption(sip, "100rel");
  (void)RequiresOption(sip, "timer");
  for (absl::string_view line : absl::StrSplit(TimerHeaders(sip), "\r\n")) {
    RWG_FUZZ_CHECK("sip_message", OneLine(std::string(line)));
  }
  if (sip->sip_refer_to != nullptr && sip->sip_refer_to->r_url->url_headers != nullptr) {
    for (absl::string_view h : absl::StrSplit(sip->sip_refer_to->r_url->url_headers, '&')) {
      const std::string decoded = PercentDecode(h);
      RWG_FUZZ_CHECK("sip_message", decoded.size() <= h.size());
      RWG_FUZZ_CHECK("sip_message", PercentDecode(PercentEncode(decoded)) == decoded);
      RWG_FUZZ_CHECK("sip_message", OneLine(PercentEncode(decoded)));
    }
  }
  if (sip->sip_call_id != nullptr && sip->sip_call_id->i_id != nullptr) {
    const std::string id = sip->sip_call_id->i_id;
    RWG_FUZZ_CHECK("sip_message", PercentDecode(PercentEncode(id)) == id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  msg_t* msg = msg_make(sip_default_mclass(), 0, data, static_cast<ssize_t>(size));
  if (msg == nullptr) return 0;
  sip_t* sip = sip_object(msg);
  if (sip != nullptr) {
    Credentials(sip->sip_authorization);
    Credentials(sip->sip_proxy_authorization);
    Challenge(sip->sip_www_authenticate);
    Challenge(sip->sip_proxy_authenticate);
    for (const void* h : {static_cast<const void*>(sip->sip_request),
                          static_cast<const void*>(sip->sip_status),
                          static_cast<const void*>(sip->sip_via),
                          static_cast<const void*>(sip->sip_route),
                          static_cast<const void*>(sip->sip_record_route),
                          static_cast<const void*>(sip->sip_from),
                          static_cast<const void*>(sip->sip_to),
                          static_cast<const void*>(sip->sip_call_id),
                          static_cast<const void*>(sip->sip_cseq),
                          static_cast<const void*>(sip->sip_contact),
                          static_cast<const void*>(sip->sip_event),
                          static_cast<const void*>(sip->sip_accept),
                          static_cast<const void*>(sip->sip_session_expires),
                          static_cast<const void*>(sip->sip_min_se),
                          static_cast<const void*>(sip->sip_refer_to),
                          static_cast<const void*>(sip->sip_referred_by),
                          static_cast<const void*>(sip->sip_replaces),
                          static_cast<const void*>(sip->sip_content_type),
                          static_cast<const void*>(sip->sip_supported),
                          static_cast<const void*>(sip->sip_require)}) {
      (void)HeaderText(h);
    }
    Body(sip);
    CallHelpers(msg, sip);
  }
  msg_destroy(msg);
  return 0;
}
