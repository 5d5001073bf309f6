#include "tools/media-peer/sdp.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rwg::media_peer {
namespace {

std::string AddressType(absl::string_view address) {
  return absl::StrContains(address, ':') ? "IP6" : "IP4";
}

bool ParsePort(absl::string_view s, uint16_t* port) {
  uint32_t p = 0;
  if (!absl::SimpleAtoi(s, &p) || p > 65535) return false;
  *port = static_cast<uint16_t>(p);
  return true;
}

// "IN IP4 1.2.3.4" → "1.2.3.4"; "" when malformed.
std::string ConnectionAddress(absl::string_view value) {
  std::vector<absl::string_view> parts = absl::StrSplit(value, ' ', absl::SkipEmpty());
  if (parts.size() < 3 || parts[0] != "IN") return "";
  // Multicast TTL/count suffixes ("/127") do not apply to the unicast relays this talks to.
  return std::string(parts[2].substr(0, parts[2].find('/')));
}

}  // namespace

std::string BuildAudioSdp(const SdpAudio& audio, uint64_t session_id) {
  const std::string type = AddressType(audio.address);
  std::string sdp;
  absl::StrAppend(&sdp, "v=0\r\n");
  absl::StrAppend(&sdp, "o=rwg-media-peer ", session_id, " 1 IN ", type, " ", audio.address,
                  "\r\n");
  absl::StrAppend(&sdp, "s=rwg-media-peer\r\n");
  absl::StrAppend(&sdp, "c=IN ", type, " ", audio.address, "\r\n");
  absl::StrAppend(&sdp, "t=0 0\r\n");
  absl::StrAppend(&sdp, "m=audio ", audio.port, " ", audio.proto, " 0\r\n");
  absl::StrAppend(&sdp, "a=rtpmap:0 PCMU/8000\r\n");
  absl::StrAppend(&sdp, "a=ptime:20\r\n");
  if (audio.rtcp_port != 0) absl::StrAppend(&sdp, "a=rtcp:", audio.rtcp_port, "\r\n");
  for (const SdpCrypto& c : audio.cryptos) {
    absl::StrAppend(&sdp, "a=crypto:", c.tag, " ", c.suite, " inline:", c.inline_key, "\r\n");
  }
  absl::StrAppend(&sdp, "a=sendrecv\r\n");
  return sdp;
}

absl::StatusOr<SdpAudio> ParseAudioSdp(absl::string_view sdp) {
  SdpAudio audio;
  std::string session_address;
  bool in_audio = false;
  bool seen_audio = false;
  for (absl::string_view line : absl::StrSplit(sdp, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (line.size() < 2 || line[1] != '=') continue;
    const char type = line[0];
    absl::string_view value = line.substr(2);
    if (type == 'm') {
      if (seen_audio) break;  // only the first audio stream
      if (!absl::StartsWith(value, "audio ")) continue;
      std::vector<absl::string_view> parts = absl::StrSplit(value, ' ', absl::SkipEmpty());
      if (parts.size() < 3 || !ParsePort(parts[1].substr(0, parts[1].find('/')), &audio.port)) {
        return absl::InvalidArgumentError(absl::StrCat("SDP: bad m= line '", line, "'"));
      }
      audio.proto = std::string(parts[2]);
      for (size_t i = 3; i < parts.size(); ++i) {
        int pt = 0;
        if (absl::SimpleAtoi(parts[i], &pt)) audio.formats.push_back(pt);
      }
      in_audio = true;
      seen_audio = true;
      continue;
    }
    if (type == 'c') {
      if (in_audio) {
        audio.address = ConnectionAddress(value);
      } else if (!seen_audio) {
        session_address = ConnectionAddress(value);
      }
      continue;
    }
    if (type != 'a' || !in_audio) continue;
    if (absl::ConsumePrefix(&value, "rtcp:")) {
      std::vector<absl::string_view> parts = absl::StrSplit(value, ' ', absl::SkipEmpty());
      if (parts.empty() || !ParsePort(parts[0], &audio.rtcp_port)) {
        return absl::InvalidArgumentError(absl::StrCat("SDP: bad a=rtcp line '", line, "'"));
      }
      if (parts.size() >= 4) audio.rtcp_address = std::string(parts[3]);
    } else if (absl::ConsumePrefix(&value, "crypto:")) {
      // a=crypto:<tag> <suite> inline:<key>[|lifetime][|MKI:len] [session params]
      std::vector<absl::string_view> parts = absl::StrSplit(value, ' ', absl::SkipEmpty());
      SdpCrypto c;
      if (parts.size() < 3 || !absl::SimpleAtoi(parts[0], &c.tag)) continue;
      c.suite = std::string(parts[1]);
      absl::string_view key = parts[2];
      if (!absl::ConsumePrefix(&key, "inline:")) continue;
      c.inline_key = std::string(key.substr(0, key.find('|')));
      audio.cryptos.push_back(std::move(c));
    }
  }
  if (!seen_audio) return absl::InvalidArgumentError("SDP: no m=audio line");
  if (audio.address.empty()) audio.address = session_address;
  if (audio.address.empty()) return absl::InvalidArgumentError("SDP: no connection address (c=)");
  return audio;
}

}  // namespace rwg::media_peer
