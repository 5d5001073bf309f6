#include "services/sip_edge/sdp.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace rwg::sip_edge {
namespace {

// 30 bytes of key and salt, as a phone would put them in its offer.
const std::string kKey = "0123456789abcdefghijklmnopqrst";
const std::string kKeyB64 = absl::Base64Escape(kKey);

// An offer as a Mitel 6800 sends it over TLS: SRTP with two suites, RTCP on port + 1.
std::string PhoneOffer(const std::string& crypto_lines) {
  return "v=0\r\n"
         "o=MxSIP 0 1 IN IP4 192.168.1.20\r\n"
         "s=SIP Call\r\n"
         "c=IN IP4 192.168.1.20\r\n"
         "t=0 0\r\n"
         "m=audio 3000 RTP/SAVP 0 8 101\r\n"
         "a=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:8 PCMA/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\n"
         "a=fmtp:101 0-15\r\n"
         "a=ptime:20\r\n" +
         crypto_lines + "a=sendrecv\r\n";
}

std::string Crypto(int tag, const std::string& suite, const std::string& key_b64,
                   const std::string& rest = "") {
  return "a=crypto:" + std::to_string(tag) + " " + suite + " inline:" + key_b64 + rest + "\r\n";
}

TEST(SdesCryptoTest, ParsesWhatPhonesSend) {
  absl::StatusOr<SdesCrypto> c = ParseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyB64);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tag, 1);
  EXPECT_EQ(c->suite, "AES_CM_128_HMAC_SHA1_80");
  EXPECT_EQ(c->key, kKey);
  c = ParseCrypto("2 AES_CM_128_HMAC_SHA1_32 inline:" + kKeyB64 + "|2^31");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tag, 2);
  EXPECT_EQ(ParseCrypto(FormatCrypto(*c)).value(), *c) << "what rwg writes it reads back";
}

TEST(SdesCryptoTest, MalformedLinesAreInvalidUnusableOnesArePreconditions) {
  // Malformed: a 400.
  const std::vector<std::string> malformed = {
      "AES_CM_128_HMAC_SHA1_80 inline:" + kKeyB64,
      "x1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyB64,
      "1 AES_CM_128_HMAC_SHA1_80 " + kKeyB64,
      "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
      "1 AES_CM_128_HMAC_SHA1_80 inline:!!!notbase64!!!",
      "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyB64 + "|soon"};
  for (const std::string& bad : malformed) {
    absl::StatusOr<SdesCrypto> c = ParseCrypto(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << bad << ": " << c.status();
  }
  absl::StatusOr<SdesCrypto> c = ParseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=");
  EXPECT_TRUE(absl::StrContains(c.status().message(), "key must be 30 bytes")) << c.status();
  // Well formed but not usable here: a 488 unless another line is usable.
  const std::vector<std::string> unusable = {
      "1 AES_256_CM_HMAC_SHA1_80 inline:" + kKeyB64,
      "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyB64 + "|2^20|1:4",
      "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyB64 + ";inline:" + kKeyB64,
      "1 AES_CM_128_HMAC_SHA1_80 inline:" + kKeyB64 + " UNENCRYPTED_SRTCP"};
  for (const std::string& other : unusable) {
    c = ParseCrypto(other);
    EXPECT_TRUE(absl::IsFailedPrecondition(c.status())) << other << ": " << c.status();
  }
}

TEST(SdpTest, ReadsThePhonesAudioStream) {
  absl::StatusOr<AudioStream> a =
      ReadAudio(PhoneOffer(Crypto(1, "AES_CM_128_HMAC_SHA1_80", kKeyB64) +
                           Crypto(2, "AES_CM_128_HMAC_SHA1_32", kKeyB64)),
                /*require_srtp=*/true);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->address, "192.168.1.20");
  EXPECT_EQ(a->port, 3000);
  EXPECT_EQ(a->rtcp_port, 3001);
  EXPECT_TRUE(a->secure);
  ASSERT_EQ(a->crypto.size(), 2u);
  EXPECT_EQ(a->crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
  EXPECT_EQ(a->crypto[1].tag, 2);
  EXPECT_EQ(a->mode, "sendrecv");
  EXPECT_EQ(a->payload_types, (std::vector<int>{0, 8, 101}));
}

TEST(SdpTest, UnusableSuitesAreSkippedWhenAnotherOneFits) {
  absl::StatusOr<AudioStream> a =
      ReadAudio(PhoneOffer(Crypto(1, "AEAD_AES_128_GCM", kKeyB64) +
                           Crypto(2, "AES_CM_128_HMAC_SHA1_80", kKeyB64)),
                true);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->crypto.size(), 1u);
  EXPECT_EQ(a->crypto[0].tag, 2);
}

TEST(SdpTest, OffersRwgCannotAcceptSayWhy) {
  // Plain RTP from a phone that must use SRTP: 488.
  std::string plain = absl::StrReplaceAll(PhoneOffer(""), {{"RTP/SAVP", "RTP/AVP"}});
  absl::StatusOr<AudioStream> a = ReadAudio(plain, true);
  EXPECT_TRUE(absl::IsFailedPrecondition(a.status())) << a.status();
  EXPECT_TRUE(absl::StrContains(a.status().message(), "SRTP (RTP/SAVP) is required"));
  // Allowed when the device's SRTP override says so.
  a = ReadAudio(plain, false);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->secure);
  // RTP/SAVP without any a=crypto, or only unknown suites: 488 naming the reason.
  a = ReadAudio(PhoneOffer(""), true);
  EXPECT_TRUE(absl::IsFailedPrecondition(a.status())) << a.status();
  a = ReadAudio(PhoneOffer(Crypto(1, "AES_256_CM_HMAC_SHA1_80", kKeyB64)), true);
  EXPECT_TRUE(absl::IsFailedPrecondition(a.status())) << a.status();
  EXPECT_TRUE(absl::StrContains(a.status().message(), "AES_256_CM_HMAC_SHA1_80 is not supported"))
      << a.status();
  // A bogus key length: the request is malformed, 400.
  a = ReadAudio(PhoneOffer(Crypto(1, "AES_CM_128_HMAC_SHA1_80", "c2hvcnQ=")), true);
  EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
  // No audio at all, or SDP that does not parse.
  a = ReadAudio(
      "v=0\r\no=- 0 0 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
      "m=video 4000 RTP/AVP 96\r\n",
      true);
  EXPECT_TRUE(absl::IsFailedPrecondition(a.status())) << a.status();
  for (const std::string& junk :
       {std::string(""), std::string("hello"), std::string("v=0\r\nm=audio x RTP/AVP 0\r\n")}) {
    a = ReadAudio(junk, true);
    EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << junk << ": " << a.status();
  }
}

// m= lines outside RFC 4566's grammar are refused before sofia-sip parses them: its parser
// never returns on some (found by tests/fuzz/sip_edge/sdp_fuzz).
TEST(SdpTest, MalformedMediaLinesAreRefusedBeforeParsing) {
  for (const std::string m :
       {"m=audio 1 m>;", "m=audio 1m<;", "m=audio 0m>;", "m=audio 1m,;", "m=audio 1 RTP/AVP 0;",
        "m=audio 1 RTP/AVP", "m=audio 1/2/3 RTP/AVP 0", " m=audio 1 m>;", "\tm= audio\t1 m>;"}) {
    for (const std::string& sdp : {absl::StrCat("v=0\r\n", m), PhoneOffer("") + m + "\r\n"}) {
      absl::StatusOr<AudioStream> a = ReadAudio(sdp, false);
      EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << m << ": " << a.status();
      absl::StatusOr<std::string> r = RewriteAudio(sdp, "10.0.0.1", 4000, std::nullopt);
      EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << m << ": " << r.status();
    }
  }
  // What the grammar allows still parses: a port count, several formats, extra spaces.
  absl::StatusOr<AudioStream> a = ReadAudio(
      "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n"
      "m=audio 5004  RTP/AVP 0 8 101 \r\nm=application 9 UDP/BFCP *\r\n",
      false);
  EXPECT_TRUE(a.ok()) << a.status();
}

TEST(SdpTest, RtcpAttributeAndMediaLevelAddress) {
  std::string offer =
      "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n"
      "m=audio 5004 RTP/AVP 0\r\nc=IN IP4 10.2.2.2\r\na=rtcp:5010\r\na=sendonly\r\n";
  absl::StatusOr<AudioStream> a = ReadAudio(offer, false);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->address, "10.2.2.2");
  EXPECT_EQ(a->rtcp_port, 5010);
  EXPECT_EQ(a->mode, "sendonly");
}

TEST(SdpTest, RewriteHidesTheOtherSideAndCarriesTheRelaysKey) {
  const std::string offer = PhoneOffer(Crypto(1, "AES_CM_128_HMAC_SHA1_80", kKeyB64)) +
                            "m=video 3002 RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\n";
  SdesCrypto relay_key{1, "AES_CM_128_HMAC_SHA1_80", std::string(30, 'k')};
  // Toward the iPBX: RTP/AVP with a=crypto dropped...
  absl::StatusOr<std::string> icp = RewriteAudio(offer, "10.0.0.5", 21000, std::nullopt);
  ASSERT_TRUE(icp.ok()) << icp.status();
  EXPECT_FALSE(absl::StrContains(*icp, "192.168.1.20")) << *icp;
  EXPECT_FALSE(absl::StrContains(*icp, "a=crypto")) << *icp;
  absl::StatusOr<AudioStream> a = ReadAudio(*icp, false);
  ASSERT_TRUE(a.ok()) << a.status() << "\n" << *icp;
  EXPECT_EQ(a->address, "10.0.0.5");
  EXPECT_EQ(a->port, 21000);
  EXPECT_FALSE(a->secure);
  EXPECT_EQ(a->payload_types, (std::vector<int>{0, 8, 101}));
  EXPECT_TRUE(absl::StrContains(*icp, "m=video 0 ")) << "other streams refused: " << *icp;
  EXPECT_TRUE(absl::StrContains(*icp, "a=rtpmap:101 telephone-event/8000")) << *icp;
  // ...and toward a phone: RTP/SAVP with the relay's own key, IPv6 too.
  absl::StatusOr<std::string> set = RewriteAudio(offer, "2001:db8::5", 30000, relay_key);
  ASSERT_TRUE(set.ok()) << set.status();
  a = ReadAudio(*set, true);
  ASSERT_TRUE(a.ok()) << a.status() << "\n" << *set;
  EXPECT_EQ(a->address, "2001:db8::5");
  EXPECT_TRUE(absl::StrContains(*set, "c=IN IP6 2001:db8::5")) << *set;
  ASSERT_EQ(a->crypto.size(), 1u);
  EXPECT_EQ(a->crypto[0], relay_key);
  EXPECT_FALSE(absl::StrContains(*set, kKeyB64)) << "the phone's key never crosses: " << *set;
}

TEST(SdpTest, OwnOfferForADelayedOfferBecomesTheRelaysOffer) {
  // rwg's own offer alone says nothing of where media goes.
  absl::StatusOr<AudioStream> own = ReadAudio(OwnOffer(), false);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->payload_types, (std::vector<int>{0, 8, 9, 101}));
  EXPECT_EQ(own->mode, "sendrecv");
  const SdesCrypto key{1, "AES_CM_128_HMAC_SHA1_80", std::string(30, 'k')};
  absl::StatusOr<std::string> set = RewriteAudio(OwnOffer(), "192.0.2.7", 20002, key);
  ASSERT_TRUE(set.ok()) << set.status();
  absl::StatusOr<AudioStream> a = ReadAudio(*set, true);
  ASSERT_TRUE(a.ok()) << a.status() << "\n" << *set;
  EXPECT_EQ(a->address, "192.0.2.7");
  EXPECT_EQ(a->port, 20002);
  EXPECT_TRUE(a->secure);
  ASSERT_EQ(a->crypto.size(), 1u);
  EXPECT_EQ(a->crypto[0], key);
  EXPECT_FALSE(absl::StrContains(*set, "0.0.0.0")) << *set;
}

TEST(SdpTest, PortsBeyondSixteenBitsAreRefused) {
  for (const char* port : {"65535", "65536", "2147483647", "4294967295", "99999999999", "4000/2"}) {
    const std::string sdp = absl::StrCat(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio ",
        port, " RTP/AVP 0\r\n");
    absl::StatusOr<AudioStream> a = ReadAudio(sdp, false);
    EXPECT_FALSE(a.ok()) << port;
    if (!a.ok()) {
      EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
    }
  }
  const std::string highest =
      "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
      "m=audio 65534 RTP/AVP 0\r\n";
  absl::StatusOr<AudioStream> a = ReadAudio(highest, false);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->port, 65534);
  EXPECT_EQ(a->rtcp_port, 65535);
}

TEST(SdpTest, ARefusedAudioStreamStaysRefused) {
  // Port 0 (with or without a number of ports): the stream is refused, and the other side
  // must see it refused, not the relay's port (RFC 3264 §6).
  for (const char* port : {"0", "0/2"}) {
    const std::string answer = absl::StrCat(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio ",
        port, " RTP/AVP 0\r\n");
    absl::StatusOr<std::string> out = RewriteAudio(answer, "10.0.0.5", 21000, std::nullopt);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(absl::StrContains(*out, "m=audio 0 RTP/AVP 0\r\n")) << *out;
    absl::StatusOr<AudioStream> a = ReadAudio(*out, false);
    ASSERT_TRUE(a.ok()) << a.status() << "\n" << *out;
    EXPECT_EQ(a->port, 0);
  }
  // Refused with SRTP on the other side: still refused, and no key goes with it.
  const std::string srtp =
      "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
      "m=audio 0 RTP/AVP 0\r\n";
  SdesCrypto key;
  key.tag = 1;
  key.suite = "AES_CM_128_HMAC_SHA1_80";
  key.key = std::string(30, 'k');
  absl::StatusOr<std::string> refused = RewriteAudio(srtp, "10.0.0.5", 21000, key);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(absl::StrContains(*refused, "m=audio 0 ")) << *refused;
  EXPECT_FALSE(absl::StrContains(*refused, "a=crypto")) << *refused;
  // A stream in use given as "<port>/1" comes out as the relay's single port.
  const std::string one =
      "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
      "m=audio 4000/1 RTP/AVP 0\r\n";
  absl::StatusOr<std::string> out = RewriteAudio(one, "10.0.0.5", 21000, std::nullopt);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(absl::StrContains(*out, "m=audio 21000 RTP/AVP 0\r\n")) << *out;
}

TEST(SdpTest, AnRtpmapWithoutAnEncodingNameIsRefused) {
  // A form feed where the space belongs in a=rtpmap (found by sdp_fuzz): sofia-sip parses it
  // as a map without an encoding name; rwg refuses it rather than forward "(null)/0".
  for (const char* rtpmap : {"a=rtpmap:101\f\f0lephone-event/8000", "a=rtpmap:0\f\fPCMU/8000"}) {
    const std::string offer = absl::StrCat(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 30000 RTP/AVP 8 0 101\r\nc=IN IP4 192.0.2.1\r\n",
        rtpmap, "\r\na=sendonly\r\n");
    absl::StatusOr<AudioStream> in = ReadAudio(offer, false);
    EXPECT_TRUE(absl::IsInvalidArgument(in.status())) << absl::CEscape(rtpmap);
    EXPECT_TRUE(absl::StrContains(in.status().message(), "a=rtpmap:")) << in.status();
    absl::StatusOr<std::string> out = RewriteAudio(offer, "10.0.0.5", 21000, std::nullopt);
    EXPECT_TRUE(absl::IsInvalidArgument(out.status())) << (out.ok() ? *out : "");
    // In another stream too: every stream is printed in the rewrite.
    const std::string video = PhoneOffer(Crypto(1, "AES_CM_128_HMAC_SHA1_80", kKeyB64)) +
                              "m=video 3002 RTP/AVP 0 101\r\n" + rtpmap + "\r\n";
    EXPECT_TRUE(
        absl::IsInvalidArgument(RewriteAudio(video, "10.0.0.5", 21000, std::nullopt).status()));
  }
}

}  // namespace
}  // namespace rwg::sip_edge
