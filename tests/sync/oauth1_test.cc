// OAuth 1.0a signatures against RFC 5849's examples and against signatures made by oauthlib
// (python3-oauthlib 3.2.2, an independent implementation), and the refusals.
#include "services/sync/oauth1.h"

#include <gtest/gtest.h>

namespace rwg::sync {
namespace {

// RFC 5849 §3.4.1: the request of the section's example and its base string.
SignedRequest RfcSection341() {
  SignedRequest r;
  r.method = "POST";
  r.scheme = "http";
  r.host = "example.com";
  r.path = "/request";
  r.query = "b5=%3D%253D&a3=a&c%40=&a2=r%20b";
  r.authorization =
      "OAuth realm=\"Example\",\n"
      "                oauth_consumer_key=\"9djdj82h48djs9d2\",\n"
      "                oauth_token=\"kkk9d7dh3k39sjv7\",\n"
      "                oauth_signature_method=\"HMAC-SHA1\",\n"
      "                oauth_timestamp=\"137131201\",\n"
      "                oauth_nonce=\"7d8f3e4a\",\n"
      "                oauth_signature=\"bYT5CMsGcbgUdFHObYMEfcx6bsw%3D\"";
  r.form_body = "c2&a3=2+q";
  return r;
}

TEST(OAuth1Test, TheBaseStringOfRfc5849Section341) {
  SignedRequest r = RfcSection341();
  absl::StatusOr<Parameters> p = CollectParameters(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->oauth.count("realm"), 0u);
  EXPECT_EQ(p->oauth.at("oauth_signature"), "bYT5CMsGcbgUdFHObYMEfcx6bsw=");
  EXPECT_EQ(SignatureBaseString(r, *p),
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D"
            "%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_"
            "nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201"
            "%26oauth_token%3Dkkk9d7dh3k39sjv7");
}

SignedRequest Photos(const std::string& authorization) {
  SignedRequest r;
  r.method = "GET";
  r.scheme = "http";
  r.host = "photos.example.net";
  r.path = "/photos";
  r.query = "file=vacation.jpg&size=original";
  r.authorization = authorization;
  return r;
}

TEST(OAuth1Test, HmacSha1AsOauthlibSignsRfc5849Section12) {
  // oauthlib's Client("dpf43f3p2l4k3l03", "kd94hf93k423kf44", "nnch734d00sl2jdk",
  // "pfkkdhi9sl3r4s00", timestamp 137131202, nonce chapoH) on the RFC's photo request.
  SignedRequest r = Photos(
      "OAuth oauth_nonce=\"chapoH\", oauth_timestamp=\"137131202\", oauth_version=\"1.0\", "
      "oauth_signature_method=\"HMAC-SHA1\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", "
      "oauth_token=\"nnch734d00sl2jdk\", oauth_signature=\"1IAE9RzK%2BDqSqVTdQ%2F0zWANXVzs%3D\"");
  absl::StatusOr<Parameters> p = CollectParameters(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(VerifySignature(r, *p, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00").ok());
  absl::Status wrong = VerifySignature(r, *p, "kd94hf93k423kf44", "another-token-secret");
  EXPECT_EQ(ProblemOf(wrong), "signature_invalid") << wrong;
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
}

TEST(OAuth1Test, HmacSha256WithAFormBodyANonDefaultPortAndEscapesAsOauthlibSignsThem) {
  // oauthlib: Client("MiVOAppSuite", client_secret="s3cr3t/with+chars=",
  // resource_owner_key="tok en", resource_owner_secret="t~s&", HMAC-SHA256,
  // timestamp 1796432254, nonce "n0nce-é", verifier "ABC123"), POST
  // https://RWG.Example.com:8443/oauth/access_token?x=1&y=%C3%A9, body "a=b+c&d=%21".
  SignedRequest r;
  r.method = "POST";
  r.scheme = "https";
  r.host = "RWG.Example.com:8443";
  r.path = "/oauth/access_token";
  r.query = "x=1&y=%C3%A9";
  r.form_body = "a=b+c&d=%21";
  r.authorization =
      "OAuth oauth_nonce=\"n0nce-%C3%A9\", oauth_timestamp=\"1796432254\", "
      "oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA256\", "
      "oauth_consumer_key=\"MiVOAppSuite\", oauth_token=\"tok%20en\", "
      "oauth_verifier=\"ABC123\", "
      "oauth_signature=\"nZEkICnegj4kJyaiuX0p77rXVL82ctsNbbkJilLbzVY%3D\"";
  absl::StatusOr<Parameters> p = CollectParameters(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->oauth.at("oauth_token"), "tok en");
  EXPECT_EQ(BaseStringUri(r), "https://rwg.example.com:8443/oauth/access_token");
  absl::Status s = VerifySignature(r, *p, "s3cr3t/with+chars=", "t~s&");
  EXPECT_TRUE(s.ok()) << s;
  // The body is covered: one byte changed and the signature no longer holds.
  r.form_body = "a=b+c&d=%22";
  p = CollectParameters(r);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(ProblemOf(VerifySignature(r, *p, "s3cr3t/with+chars=", "t~s&")), "signature_invalid");
}

TEST(OAuth1Test, TheDefaultPortIsLeftOutAndSchemeAndHostAreLowerCase) {
  SignedRequest r;
  r.scheme = "HTTPS";
  r.host = "Sync.Example.COM:443";
  r.path = "/api/v1/devices";
  EXPECT_EQ(BaseStringUri(r), "https://sync.example.com/api/v1/devices");
  r.host = "[2001:DB8::1]:443";
  EXPECT_EQ(BaseStringUri(r), "https://[2001:db8::1]/api/v1/devices");
  r.host = "[2001:db8::1]";
  EXPECT_EQ(BaseStringUri(r), "https://[2001:db8::1]/api/v1/devices");
  r.scheme = "http";
  r.host = "10.0.0.1:80";
  EXPECT_EQ(BaseStringUri(r), "http://10.0.0.1/api/v1/devices");
}

TEST(OAuth1Test, PercentEncodingIsRfc3986WithUpperCaseHex) {
  EXPECT_EQ(PercentEncode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
  EXPECT_EQ(PercentEncode("An encoded string!"), "An%20encoded%20string%21");
  EXPECT_EQ(PercentEncode("Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
  EXPECT_EQ(PercentEncode("\xe2\x98\x83"), "%E2%98%83");
  EXPECT_EQ(PercentEncode("-._~"), "-._~");
  EXPECT_EQ(*PercentDecode("a+b%2Bc", true), "a b+c");
  EXPECT_EQ(*PercentDecode("a+b", false), "a+b");
  EXPECT_FALSE(PercentDecode("%", false).ok());
  EXPECT_FALSE(PercentDecode("%4", false).ok());
  EXPECT_FALSE(PercentDecode("%zz", false).ok());
  EXPECT_EQ(*PercentDecode("%00%ff", false), std::string("\0\xff", 2));
}

TEST(OAuth1Test, DuplicateOrSplitOauthParametersAreRejected) {
  SignedRequest r =
      Photos("OAuth oauth_consumer_key=\"a\", oauth_consumer_key=\"b\", oauth_signature=\"x\"");
  EXPECT_EQ(ProblemOf(CollectParameters(r).status()), "parameter_rejected");
  r = Photos("OAuth oauth_consumer_key=\"a\", oauth_signature=\"x\"");
  r.query += "&oauth_nonce=n";  // part in the header, part in the query
  EXPECT_EQ(ProblemOf(CollectParameters(r).status()), "parameter_rejected");
  r = Photos("");
  r.query += "&oauth_token=a&oauth_token=a";
  EXPECT_EQ(ProblemOf(CollectParameters(r).status()), "parameter_rejected");
  // Other parameters may repeat (a3 in RFC 5849's example does).
  EXPECT_TRUE(CollectParameters(RfcSection341()).ok());
}

TEST(OAuth1Test, AMalformedOrMissingAuthorizationIsRefusedNotGuessed) {
  EXPECT_EQ(ProblemOf(CollectParameters(Photos("")).status()), "parameter_absent");
  EXPECT_EQ(ProblemOf(CollectParameters(Photos("Basic dXNlcjpwYXNz")).status()),
            "parameter_absent");
  EXPECT_EQ(ProblemOf(CollectParameters(Photos("OAuthx oauth_token=\"a\"")).status()),
            "parameter_absent");
  EXPECT_EQ(ProblemOf(CollectParameters(Photos("OAuth oauth_token=a")).status()),
            "parameter_rejected");
  EXPECT_EQ(ProblemOf(CollectParameters(Photos("OAuth oauth_token")).status()),
            "parameter_rejected");
  EXPECT_EQ(ProblemOf(CollectParameters(Photos("OAuth oauth_token=\"%G0\"")).status()),
            "parameter_rejected");
  EXPECT_EQ(ProblemOf(CollectParameters(Photos("OAuth oauth_token=\"")).status()),
            "parameter_rejected");
  SignedRequest r = Photos("");
  r.query = "oauth_token=%";
  EXPECT_EQ(ProblemOf(CollectParameters(r).status()), "parameter_rejected");
  // Non-UTF-8 and very long values are parameters like any other.
  r.query = "oauth_token=%ff%fe&x=" + std::string(100000, 'a');
  EXPECT_TRUE(CollectParameters(r).ok());
}

TEST(OAuth1Test, OnlyHmacMethodsAndVersion10AreAccepted) {
  auto verify = [](const std::string& extra) {
    SignedRequest r = Photos("OAuth oauth_consumer_key=\"k\", oauth_signature=\"x\"" + extra);
    absl::StatusOr<Parameters> p = CollectParameters(r);
    EXPECT_TRUE(p.ok()) << p.status();
    return ProblemOf(VerifySignature(r, *p, "secret", ""));
  };
  EXPECT_EQ(verify(", oauth_signature_method=\"PLAINTEXT\""), "signature_method_rejected");
  EXPECT_EQ(verify(", oauth_signature_method=\"RSA-SHA1\""), "signature_method_rejected");
  EXPECT_EQ(verify(", oauth_signature_method=\"hmac-sha1\""), "signature_method_rejected");
  EXPECT_EQ(verify(""), "parameter_absent");
  EXPECT_EQ(verify(", oauth_signature_method=\"HMAC-SHA1\", oauth_version=\"2.0\""),
            "version_rejected");
  EXPECT_EQ(verify(", oauth_signature_method=\"HMAC-SHA1\""), "signature_invalid");
  EXPECT_EQ(ProblemOf(absl::InternalError("x")), "");
}

TEST(OAuth1Test, WhatRwgSignsItChecks) {
  SignedRequest r = Photos("");
  r.query =
      "file=vacation.jpg&oauth_consumer_key=k&oauth_nonce=n&oauth_timestamp=1"
      "&oauth_signature_method=HMAC-SHA256";
  absl::StatusOr<Parameters> p = CollectParameters(r);
  ASSERT_TRUE(p.ok());
  const std::string sig =
      Sign(SignatureMethod::kHmacSha256, SignatureBaseString(r, *p), "c&s", "t s");
  r.query += "&oauth_signature=" + PercentEncode(sig);
  p = CollectParameters(r);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(VerifySignature(r, *p, "c&s", "t s").ok());
  EXPECT_EQ(ProblemOf(VerifySignature(r, *p, "c&s", "t  s")), "signature_invalid");
}

}  // namespace
}  // namespace rwg::sync
