// OAuth 1.0a request signatures (RFC 5849 §3), as the sync API checks them: the parameters of
// a request collected from its Authorization header, query and form body (§3.4.1.3), the
// signature base string (§3.4.1), HMAC-SHA1 (§3.4.2) and HMAC-SHA256 signatures, compared in
// constant time. What the service does with tokens, nonces and clocks is elsewhere; this is
// the part any OAuth 1.0a client library must agree with byte for byte.
//
// A refusal is absl::Unauthenticated with the problem from the OAuth problem-reporting
// vocabulary (parameter_absent, parameter_rejected, signature_method_rejected,
// signature_invalid, version_rejected, ...) as its payload (ProblemOf) and a message that says
// what is wrong.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::sync {

// An answer of 401 with `problem` (the oauth_problem value) and `detail` (for the log and the
// oauth_problem_advice).
absl::Status OAuthProblem(absl::string_view problem, absl::string_view detail);
// The oauth_problem of a status made by OAuthProblem; "" for any other status.
std::string ProblemOf(const absl::Status& status);

// RFC 3986 percent-encoding as RFC 5849 §3.6 wants it: unreserved characters as they are,
// every other byte as %XX with upper-case hex.
std::string PercentEncode(absl::string_view s);
// The reverse, for application/x-www-form-urlencoded ('+' is a space) or not; refuses a
// truncated or non-hex escape.
absl::StatusOr<std::string> PercentDecode(absl::string_view s, bool form);

// What of an HTTP request the signature covers.
struct SignedRequest {
  std::string method;         // as sent, e.g. "POST"
  std::string scheme;         // "https"
  std::string host;           // the Host header: name or address, optional ":port"
  std::string path;           // without the query
  std::string query;          // without the '?'; empty when none
  std::string authorization;  // the Authorization header; empty when none
  std::string form_body;      // the body when it is application/x-www-form-urlencoded
};

enum class SignatureMethod { kHmacSha1, kHmacSha256 };

// The request's parameters (§3.4.1.3.1), decoded, in the order found: the Authorization
// header's OAuth parameters (realm excluded), the query's, the form body's. `oauth` holds each
// oauth_* parameter once. Refused: an oauth_* parameter given twice or in two places
// (parameter_rejected), a malformed header or escape (parameter_rejected), an Authorization
// header of another scheme (parameter_absent when no OAuth parameter is anywhere).
struct Parameters {
  std::vector<std::pair<std::string, std::string>> all;
  std::map<std::string, std::string> oauth;
};
absl::StatusOr<Parameters> CollectParameters(const SignedRequest& r);

// The base string URI (§3.4.1.2): scheme and host lower-case, the default port left out.
std::string BaseStringUri(const SignedRequest& r);
// The signature base string (§3.4.1.1) over `params` (oauth_signature left out).
std::string SignatureBaseString(const SignedRequest& r, const Parameters& params);

// oauth_signature_method → method; PLAINTEXT and anything unknown are refused
// (signature_method_rejected).
absl::StatusOr<SignatureMethod> ParseSignatureMethod(absl::string_view name);
// The base64 signature of `base` with the client (consumer) secret and the token secret.
std::string Sign(SignatureMethod method, absl::string_view base, absl::string_view client_secret,
                 absl::string_view token_secret);

// Checks the request's oauth_signature (constant time) against the secrets: oauth_version, if
// given, must be 1.0 (version_rejected); the method must be accepted; signature_invalid
// otherwise.
absl::Status VerifySignature(const SignedRequest& r, const Parameters& params,
                             absl::string_view client_secret, absl::string_view token_secret);

}  // namespace rwg::sync
