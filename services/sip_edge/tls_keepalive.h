// RFC 5626 keep-alive over TLS. A phone keeps its TLS connection (and its NAT binding) alive
// by sending a "ping" (CRLF CRLF) between SIP messages and expects a "pong" (CRLF) back.
// sofia-sip answers pings over TCP but its TLS transport reads them as blank lines and stays
// silent, so sip-edge hooks the TLS transport's plaintext hand-over (sofia-sip's exported
// tls_read_buffer/tls_write/tls_want_write/tls_free, which its transport calls through the
// dynamic linker): every decrypted read is framed here, and each ping found between messages
// is answered with a pong written through sofia-sip's own TLS write path, never in the middle
// of an outgoing message.
#pragma once

#include <prometheus/counter.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "services/core/tls_identity.h"

namespace rwg::sip_edge {

// Follows one direction of a SIP byte stream (RFC 3261 §18.3 framing: headers up to the empty
// line, then Content-Length bytes of body) and counts the RFC 5626 pings between messages.
class PingDetector {
 public:
  // Consumes the next bytes of the stream; returns how many pings they completed.
  int Feed(std::string_view data);
  bool AtMessageBoundary() const { return state_ == State::kBetween; }

 private:
  enum class State { kBetween, kHeaders, kBody };
  void EndHeaderLine();

  State state_ = State::kBetween;
  int blank_bytes_ = 0;     // CR/LF bytes seen since the last message (or pong-worthy ping)
  std::string line_;        // start of the current header line (enough for Content-Length)
  bool line_empty_ = true;  // the current header line holds nothing but CR so far
  uint64_t content_length_ = 0;
  uint64_t body_left_ = 0;
};

struct TlsKeepaliveCounters {
  prometheus::Counter* pings = nullptr;          // pings received over TLS
  prometheus::Counter* pongs = nullptr;          // pongs sent
  prometheus::Counter* pongs_skipped = nullptr;  // pings left unanswered (connection busy)
};

// Where the hooks count; the counters must outlive all TLS traffic (null: not counted).
void SetTlsKeepaliveCounters(TlsKeepaliveCounters counters);

// The certificate sofia-sip's TLS transports present from their next handshake on: installed on
// every TLS transport created after this call (null: the transports keep what they read at
// start). The watcher must outlive the transports.
void ServeTlsCertificate(core::CertificateWatcher* watcher);
// How many TLS transports ServeTlsCertificate's watcher was installed on.
int TlsTransportsServed();

// Whether sofia-sip's TLS transport calls into the hooks (the dynamic linker bound them).
bool TlsKeepaliveActive();

// Whether TLS connections hold no 16 KiB read buffer while idle (the hooks on sofia-sip's
// tls_init_secondary and tls_read are bound).
bool TlsReadBuffersShared();

}  // namespace rwg::sip_edge
