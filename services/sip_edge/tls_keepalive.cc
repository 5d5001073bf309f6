#include "services/sip_edge/tls_keepalive.h"

#include <dlfcn.h>
#include <linux/sock_diag.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sofia-sip/su_alloc.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "services/core/log.h"

namespace rwg::sip_edge {

namespace {

constexpr size_t kLineKept = 128;  // a Content-Length line fits, whatever its spacing

}  // namespace

int PingDetector::Feed(std::string_view data) {
  int pings = 0;
  size_t i = 0;
  while (i < data.size()) {
    const char c = data[i];
    switch (state_) {
      case State::kBetween:
        if (c == '\r' || c == '\n') {
          if (++blank_bytes_ == 4) {
            ++pings;
            blank_bytes_ = 0;
          }
        } else {  // the first byte of a message
          state_ = State::kHeaders;
          blank_bytes_ = 0;
          line_.assign(1, c);
          line_empty_ = false;
          content_length_ = 0;
        }
        ++i;
        break;
      case State::kHeaders:
        if (c == '\n') {
          EndHeaderLine();
        } else {
          if (c != '\r') line_empty_ = false;
          if (line_.size() < kLineKept) line_.push_back(c);
        }
        ++i;
        break;
      case State::kBody: {
        const size_t take = std::min<uint64_t>(body_left_, data.size() - i);
        body_left_ -= take;
        i += take;
        if (body_left_ == 0) state_ = State::kBetween;
        break;
      }
    }
  }
  return pings;
}

void PingDetector::EndHeaderLine() {
  if (line_empty_) {  // the blank line that ends the headers
    body_left_ = content_length_;
    state_ = body_left_ > 0 ? State::kBody : State::kBetween;
  } else {
    absl::string_view line = line_;
    const size_t colon = line.find(':');
    if (colon != absl::string_view::npos) {
      const std::string name =
          absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
      if (name == "content-length" || name == "l") {
        uint64_t n = 0;
        if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &n)) {
          content_length_ = n;
        }
      }
    }
  }
  line_.clear();
  line_empty_ = true;
}

namespace {

// What one TLS connection's hooks need to know.
struct Connection {
  PingDetector incoming;
  // sofia-sip's TLS write protocol: after a write that would block, the same buffer is kept
  // in its TLS context until the retry (tls_want_write) and the caller's next tls_write have
  // gone through; nothing else may be written in between.
  enum class Write { kIdle, kBlocked, kRestored, kPongBlocked } write = Write::kIdle;
  // The connection's read buffer is rwg's (tls_init_secondary): sofia-sip's 16 KiB one was
  // released, and a read's bytes are held here, sized to the read, until the next read.
  bool own_read_buffer = false;
  std::string held;
};

struct Hooks {
  using ReadBufferFn = void* (*)(void*, size_t);
  using WriteFn = ssize_t (*)(void*, void*, size_t);
  using WantWriteFn = int (*)(void*, int);
  using FreeFn = void (*)(void*);
  using InitMasterFn = void* (*)(void*);
  using InitSecondaryFn = void* (*)(void*, int, int);
  using ReadFn = ssize_t (*)(void*);

  ReadBufferFn read_buffer = nullptr;
  WriteFn write = nullptr;
  WantWriteFn want_write = nullptr;
  FreeFn free = nullptr;
  InitMasterFn init_master = nullptr;
  InitSecondaryFn init_secondary = nullptr;
  ReadFn read = nullptr;

  absl::Mutex mu;
  std::unordered_map<const void*, Connection> connections ABSL_GUARDED_BY(mu);
  bool in_want_write ABSL_GUARDED_BY(mu) = false;
  TlsKeepaliveCounters counters ABSL_GUARDED_BY(mu);
  core::CertificateWatcher* certificate ABSL_GUARDED_BY(mu) = nullptr;
  int masters_served ABSL_GUARDED_BY(mu) = 0;

  Hooks() {
    read_buffer = reinterpret_cast<ReadBufferFn>(dlsym(RTLD_NEXT, "tls_read_buffer"));
    write = reinterpret_cast<WriteFn>(dlsym(RTLD_NEXT, "tls_write"));
    want_write = reinterpret_cast<WantWriteFn>(dlsym(RTLD_NEXT, "tls_want_write"));
    free = reinterpret_cast<FreeFn>(dlsym(RTLD_NEXT, "tls_free"));
    init_master = reinterpret_cast<InitMasterFn>(dlsym(RTLD_NEXT, "tls_init_master"));
    init_secondary = reinterpret_cast<InitSecondaryFn>(dlsym(RTLD_NEXT, "tls_init_secondary"));
    read = reinterpret_cast<ReadFn>(dlsym(RTLD_NEXT, "tls_read"));
    // Only reachable when sofia-sip itself calls these, so they exist.
    if (!read_buffer || !write || !want_write || !free || !init_master) std::abort();
    // init_secondary and read may be missing from another sofia-sip build: then sofia-sip
    // never calls these hooks, and connections keep its own read buffer.
  }
};

Hooks& H() {
  static Hooks* hooks = new Hooks();
  return *hooks;
}

char kPong[] = "\r\n";

void Count(prometheus::Counter* c) {
  if (c != nullptr) c->Increment();
}

}  // namespace

void SetTlsKeepaliveCounters(TlsKeepaliveCounters counters) {
  absl::MutexLock lock(&H().mu);
  H().counters = counters;
}

void ServeTlsCertificate(core::CertificateWatcher* watcher) {
  absl::MutexLock lock(&H().mu);
  H().certificate = watcher;
}

int TlsTransportsServed() {
  absl::MutexLock lock(&H().mu);
  return H().masters_served;
}

}  // namespace rwg::sip_edge

// The hooks, with sofia-sip's signatures (tport_tls.h); tls_get_socket is sofia-sip's own.
extern "C" {
int tls_get_socket(void* tls);
ssize_t tls_read(void* tls);
void* tls_init_secondary(void* master, int sock, int accept);
void* tls_read_buffer(void* tls, size_t n);
ssize_t tls_write(void* tls, void* buf, size_t size);
int tls_want_write(void* tls, int events);
void tls_free(void* tls);
}

namespace rwg::sip_edge {
namespace {

// Room for a pong without waiting: a peer that does not read its data gets no more of it.
bool SendRoom(void* tls) {
  const int fd = tls_get_socket(tls);
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof(mem);
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0) return true;
  return uint64_t{mem[SK_MEMINFO_WMEM_QUEUED]} + 4096 <= mem[SK_MEMINFO_SNDBUF];
}

}  // namespace

bool TlsKeepaliveActive() {
  return dlsym(RTLD_DEFAULT, "tls_write") == reinterpret_cast<void*>(&::tls_write) &&
         dlsym(RTLD_DEFAULT, "tls_read_buffer") == reinterpret_cast<void*>(&::tls_read_buffer);
}

bool TlsReadBuffersShared() {
  static const bool bound =
      H().read != nullptr && H().init_secondary != nullptr &&
      dlsym(RTLD_DEFAULT, "tls_read") == reinterpret_cast<void*>(&::tls_read) &&
      dlsym(RTLD_DEFAULT, "tls_init_secondary") == reinterpret_cast<void*>(&::tls_init_secondary);
  return bound;
}

}  // namespace rwg::sip_edge

using rwg::sip_edge::Connection;

extern "C" void* tls_read_buffer(void* tls, size_t n) {
  auto& h = rwg::sip_edge::H();
  void* data = h.read_buffer(tls, n);
  if (data == nullptr || n == 0) return data;
  absl::MutexLock lock(&h.mu);
  Connection& c = h.connections[tls];
  const int pings = c.incoming.Feed(std::string_view(static_cast<const char*>(data), n));
  const int saved_errno = errno;
  for (int i = 0; i < pings; ++i) {
    rwg::sip_edge::Count(h.counters.pings);
    if (c.write != Connection::Write::kIdle || !rwg::sip_edge::SendRoom(tls)) {
      rwg::sip_edge::Count(h.counters.pongs_skipped);
      continue;
    }
    const ssize_t w = h.write(tls, rwg::sip_edge::kPong, 2);
    if (w == 2) {
      rwg::sip_edge::Count(h.counters.pongs);
    } else if (w < 0 && errno == EAGAIN) {
      c.write = Connection::Write::kPongBlocked;  // flushed by the next tls_want_write
    } else {
      rwg::sip_edge::Count(h.counters.pongs_skipped);
    }
  }
  errno = saved_errno;
  return data;
}

extern "C" ssize_t tls_write(void* tls, void* buf, size_t size) {
  auto& h = rwg::sip_edge::H();
  h.mu.Lock();
  if (h.in_want_write) {  // the retry inside tls_want_write: its wrapper keeps the state
    h.mu.Unlock();
    return h.write(tls, buf, size);
  }
  auto it = h.connections.find(tls);
  if (it != h.connections.end() && it->second.write == Connection::Write::kPongBlocked) {
    h.mu.Unlock();
    errno = EAGAIN;  // our pong goes first; sofia-sip waits for the socket like any block
    return -1;
  }
  h.mu.Unlock();
  const ssize_t r = h.write(tls, buf, size);
  const int saved_errno = errno;
  h.mu.Lock();
  if (r < 0 && saved_errno == EAGAIN) {
    h.connections[tls].write = Connection::Write::kBlocked;
  } else if (it = h.connections.find(tls); it != h.connections.end()) {
    it->second.write = Connection::Write::kIdle;
  }
  h.mu.Unlock();
  errno = saved_errno;
  return r;
}

extern "C" int tls_want_write(void* tls, int events) {
  auto& h = rwg::sip_edge::H();
  h.mu.Lock();
  h.in_want_write = true;
  h.mu.Unlock();
  const int r = h.want_write(tls, events);
  const int saved_errno = errno;
  h.mu.Lock();
  h.in_want_write = false;
  auto it = h.connections.find(tls);
  if (r > 0 && it != h.connections.end()) {
    if (it->second.write == Connection::Write::kPongBlocked) {
      // The retried write was our pong; the TLS context keeps the buffer until it is
      // written again, which returns at once and clears it.
      h.write(tls, rwg::sip_edge::kPong, 2);
      it->second.write = Connection::Write::kIdle;
      rwg::sip_edge::Count(h.counters.pongs);
    } else if (it->second.write == Connection::Write::kBlocked) {
      it->second.write = Connection::Write::kRestored;
    }
  }
  h.mu.Unlock();
  errno = saved_errno;
  return r;
}

namespace {

// The head of sofia-sip's private TLS context (struct tls_s in tport_tls.c, unchanged since
// 1.12.11): its allocation home, the OpenSSL objects, flags whose first is the type, then the
// receiving side: what the last read waits for, its buffer and the bytes it holds.
struct SofiaTlsHead {
  su_home_t home[1];
  SSL_CTX* ctx;
  SSL* con;
  BIO* bio_con;
  unsigned int type : 1;  // 0 master, 1 slave; a connection's copies its master's (0)
  int read_events;
  void* read_buffer;       // tls_buffer_size (16 KiB), from the home, for the connection's life
  size_t read_buffer_len;  // bytes read and not yet taken by tls_read_buffer
};

// Where sofia-sip 1.12.11's own code has them (tls_read, tls_read_buffer).
static_assert(offsetof(SofiaTlsHead, read_events) == 0x34);
static_assert(offsetof(SofiaTlsHead, read_buffer) == 0x38);
static_assert(offsetof(SofiaTlsHead, read_buffer_len) == 0x40);

// The size sofia-sip's tls_read reads at most (its tls_buffer_size).
constexpr size_t kSofiaReadSize = 16384;

// Where a read lands before it is copied to its connection: one per thread that reads.
char* ReadScratch() {
  thread_local std::unique_ptr<char[]> scratch(new char[kSofiaReadSize]);
  return scratch.get();
}

}  // namespace

// sofia-sip gives every TLS connection a 16 KiB read buffer for its whole life, half of what a
// phone holding its connection costs. Here a connection keeps none while idle: the buffer is
// released when the connection is made, each read lands in a per-thread buffer and is copied
// to one the size of the read, which is kept only until the connection's next read (the
// transport copies the bytes out in between, tls_read_buffer).
extern "C" void* tls_init_secondary(void* master, int sock, int accept) {
  auto& h = rwg::sip_edge::H();
  void* tls = h.init_secondary(master, sock, accept);
  if (tls == nullptr || !rwg::sip_edge::TlsReadBuffersShared()) return tls;
  auto* head = static_cast<SofiaTlsHead*>(tls);
  const auto* master_head = static_cast<const SofiaTlsHead*>(master);
  // Only when the layout is the one described: the connection's SSL comes from the master's
  // context, and nothing has been read yet.
  if (head->con == nullptr || head->ctx != master_head->ctx ||
      SSL_get_SSL_CTX(head->con) != head->ctx || head->read_buffer == nullptr ||
      head->read_buffer_len != 0) {
    return tls;
  }
  // Nothing thrown may reach sofia-sip's C frames: without memory for the entry, the
  // connection keeps sofia-sip's buffer.
  try {
    absl::MutexLock lock(&h.mu);
    h.connections[tls].own_read_buffer = true;
  } catch (const std::bad_alloc&) {
    return tls;
  }
  su_free(head->home, head->read_buffer);
  head->read_buffer = nullptr;
  return tls;
}

extern "C" ssize_t tls_read(void* tls) {
  auto& h = rwg::sip_edge::H();
  auto* head = static_cast<SofiaTlsHead*>(tls);
  if (tls == nullptr || head->read_buffer_len != 0) return h.read(tls);  // bytes not yet taken
  Connection* c = nullptr;
  {
    absl::MutexLock lock(&h.mu);
    auto it = h.connections.find(tls);
    if (it != h.connections.end() && it->second.own_read_buffer) c = &it->second;
  }
  if (c == nullptr) return h.read(tls);
  // (The entry stays where it is: a connection is read and freed on one thread, and other
  // connections' entries coming and going do not move it.)
  // The previous read was taken: its bytes go, the next land in this thread's buffer.
  std::string().swap(c->held);
  try {
    head->read_buffer = ReadScratch();
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;  // sofia-sip closes the connection
    return -1;
  }
  const ssize_t n = h.read(tls);
  int saved_errno = errno;
  ssize_t r = n;
  if (n > 0) {
    try {
      c->held.assign(static_cast<const char*>(head->read_buffer), static_cast<size_t>(n));
      head->read_buffer = c->held.data();
    } catch (const std::bad_alloc&) {
      // The bytes cannot be kept: the connection fails (sofia-sip closes it) rather than
      // read another's.
      head->read_buffer = nullptr;
      head->read_buffer_len = 0;
      saved_errno = ENOMEM;
      r = -1;
    }
  } else {
    head->read_buffer = nullptr;
  }
  errno = saved_errno;
  return r;
}

// sofia-sip's tls_free shuts the connection's SSL down and frees its BIO, but never frees the
// SSL itself: every TLS connection closed left ~25 KiB (its SSL, buffers and session) behind
// for the life of the process. The SSL is freed here, after sofia-sip's own clean-up. So that
// each reference is released once: the BIO gets one more first (sofia-sip's BIO_free and
// SSL_free each release one), and so does the shared SSL_CTX when sofia-sip frees it for a
// connection (it does, because a connection's context copies its master's type: that release
// stood for the leaked SSL's reference, which SSL_free now releases).
extern "C" void tls_free(void* tls) {
  auto& h = rwg::sip_edge::H();
  {
    absl::MutexLock lock(&h.mu);
    h.connections.erase(tls);
  }
  SSL* con = nullptr;
  if (tls != nullptr) {
    const auto* head = static_cast<const SofiaTlsHead*>(tls);
    // Only when the layout is the one described: the connection's SSL reads through the BIO
    // and uses the context.
    if (head->con != nullptr && head->bio_con != nullptr &&
        SSL_get_rbio(head->con) == head->bio_con && SSL_get_SSL_CTX(head->con) == head->ctx) {
      con = head->con;
      BIO_up_ref(head->bio_con);
      if (head->type == 0) SSL_CTX_up_ref(head->ctx);
    }
  }
  h.free(tls);
  if (con != nullptr) SSL_free(con);
}

// sofia-sip makes one master TLS context per TLS transport (the phones' listener, the iPBX
// side) when the transport is created, before any connection uses it; every connection's SSL
// is made from it. The certificate watcher is installed on it here, so that each new handshake
// presents the pair of the moment (docs/operations.md, "Certificate rotation").
extern "C" void* tls_init_master(void* issues) {
  auto& h = rwg::sip_edge::H();
  void* tls = h.init_master(issues);
  if (tls == nullptr) return tls;
  const auto* head = static_cast<const SofiaTlsHead*>(tls);
  const bool laid_out = head->ctx != nullptr && head->con == nullptr && head->type == 0;
  if (laid_out) {
    // A connection holds no record buffers while it is idle (a phone between two
    // re-registrations): OpenSSL frees each when it is empty and takes it again for the next
    // record, as nginx has it.
    SSL_CTX_set_mode(head->ctx, SSL_MODE_RELEASE_BUFFERS);
  }
  absl::MutexLock lock(&h.mu);
  if (h.certificate == nullptr) return tls;
  if (!laid_out) {
    rwg::core::log::Error(
        "sofia-sip's TLS context is not laid out as expected; certificates "
        "will not be read again without a restart");
    return tls;
  }
  h.certificate->InstallOn(head->ctx);
  ++h.masters_served;
  return tls;
}
