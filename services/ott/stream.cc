// The ott proxy's connections (see stream.h): OpenSSL or the plain socket, one attempt at a
// time, and the sweep of their deadlines.
#include "services/ott/stream.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>

namespace rwg::ott {

namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {

// A TLS record's largest plaintext: small writes are gathered up to this.
constexpr size_t kRecord = 16384;
// A large write's plaintext sent with one system call, and the room its records take (a
// record adds at most 256 bytes to its plaintext, RFC 8446 5.2, and a 5-byte header).
constexpr size_t kBatch = 4 * kRecord;
constexpr size_t kRecordRoom = kRecord + 512;
constexpr size_t kBatchRoom = (kBatch / kRecord) * kRecordRoom;
// What a TLS stream receives into: first room for a request or a page's records; a receive
// that fills it makes it a record's room, for a stream that carries more.
constexpr size_t kInFirst = 4096;
constexpr size_t kInLarge = kRecordRoom;

beast::error_code SystemError(int e) { return {e, boost::system::system_category()}; }

// Empties the thread's OpenSSL error queue before an SSL call, whose SSL_get_error reads it.
// The queue is nearly always empty already (every failure path clears it): looking costs a
// fraction of clearing its 16 slots, which ERR_clear_error does every time.
void ClearSslErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

}  // namespace

void Sweep::Add(Stream* s) {
  s->prev_ = nullptr;
  s->next_ = head_;
  if (head_ != nullptr) head_->prev_ = s;
  head_ = s;
  ++size_;
}

void Sweep::Remove(Stream* s) {
  if (s->prev_ != nullptr) {
    s->prev_->next_ = s->next_;
  } else {
    head_ = s->next_;
  }
  if (s->next_ != nullptr) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
  --size_;
}

namespace {
// Before OpenSSL 3.0.14 (CVE-2024-4741), SSL_free_buffers could free a read buffer that still
// held the unread part of a decrypted record: buffers are then kept.
bool FreeingBuffersIsSafe() {
  static const bool safe = OpenSSL_version_num() >= 0x300000e0UL;
  return safe;
}
}  // namespace

void Sweep::Run(std::chrono::steady_clock::time_point now) {
  for (Stream* s = head_; s != nullptr; s = s->next_) {
    if (!s->timed_out_ && ((s->pending_reads_ > 0 && s->read_deadline_ <= now) ||
                           (s->pending_writes_ > 0 && s->write_deadline_ <= now))) {
      s->Expire();
    }
    if (s->ssl_ != nullptr && !s->buffers_freed_) {
      if (s->quiet_sweeps_ < 2) ++s->quiet_sweeps_;
      if (s->quiet_sweeps_ == 2 && SSL_is_init_finished(s->ssl_) == 1 && FreeingBuffersIsSafe()) {
        // 0: a record is half read or written; kept, and tried again at the next sweep.
        s->buffers_freed_ = SSL_free_buffers(s->ssl_) == 1;
      }
    }
  }
}

Stream::Stream(Sweep& sweep, Socket socket, SSL_CTX* tls, Role role)
    : sweep_(sweep), socket_(std::move(socket)) {
  sweep_.Add(this);
  boost::system::error_code ignored;
  socket_.non_blocking(true, ignored);
  if (tls == nullptr) return;
  ssl_ = SSL_new(tls);
  if (ssl_ == nullptr) {
    no_ssl_ = true;  // the handshake fails
    return;
  }
  // Buffers are kept while in use, freed by the sweep when quiet.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Only a read makes OpenSSL read (see the operation's receive).
  SSL_set_options(ssl_, SSL_OP_NO_RENEGOTIATION);
  // OpenSSL reads what the stream received, and writes to the socket.
  in_.reset(new (std::nothrow) char[kInFirst]);
  in_size_ = in_ != nullptr ? kInFirst : 0;
  const BIO_METHOD* rm = ReadMethod();
  BIO* rbio = rm != nullptr && in_ != nullptr ? BIO_new(rm) : nullptr;
  BIO* wbio = rbio != nullptr ? BIO_new_socket(socket_.native_handle(), BIO_NOCLOSE) : nullptr;
  if (wbio == nullptr) {
    if (rbio != nullptr) BIO_free(rbio);
    SSL_free(ssl_);
    ssl_ = nullptr;
    no_ssl_ = true;  // the handshake fails
    return;
  }
  BIO_set_data(rbio, this);
  SSL_set_bio(ssl_, rbio, wbio);
  if (const BIO_METHOD* m = BatchMethod(); m != nullptr) {
    batch_bio_ = BIO_new(m);
    if (batch_bio_ != nullptr) BIO_set_data(batch_bio_, this);
  }
  if (role == Role::kServer) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  stage_.reset(new char[kRecord]);
}

Stream::~Stream() {
  sweep_.Remove(this);
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (held_socket_bio_ != nullptr) BIO_free(held_socket_bio_);
  if (batch_bio_ != nullptr) BIO_free(batch_bio_);
}

void Stream::SendCloseNotify() {
  // Not ahead of records still waiting in the batch: the peer would take what it got as all.
  if (ssl_ != nullptr && !ssl_failed_ && !batch_held_ && socket_.is_open() &&
      SSL_is_init_finished(ssl_) == 1 && (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) == 0) {
    ClearSslErrors();
    (void)SSL_shutdown(ssl_);
    ERR_clear_error();
  }
}

void Stream::Close() {
  SendCloseNotify();
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void Stream::Expire() {
  timed_out_ = true;
  cancel();
}

beast::error_code Stream::WaitError(const beast::error_code& ec) const {
  if (timed_out_) return beast::error::timeout;
  return ec;
}

namespace {

// What an SSL call that returned `rc` means for the stream.
template <class Io, class Want>
Io SslResult(SSL* ssl, int rc) {
  const int saved_errno = errno;
  switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      return Io{0, Want::kRead, {}};
    case SSL_ERROR_WANT_WRITE:
      return Io{0, Want::kWrite, {}};
    case SSL_ERROR_ZERO_RETURN:
      return Io{0, Want::kNone, asio::error::eof};
    case SSL_ERROR_SYSCALL: {
      ERR_clear_error();
      if (saved_errno != 0) return Io{0, Want::kNone, SystemError(saved_errno)};
      return Io{0, Want::kNone, asio::ssl::error::stream_truncated};
    }
    default: {
      const unsigned long e = ERR_peek_last_error();  // NOLINT(google-runtime-int): OpenSSL's type
      ERR_clear_error();
      if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        return Io{0, Want::kNone, asio::ssl::error::stream_truncated};
      }
      return Io{0, Want::kNone,
                beast::error_code(static_cast<int>(e), asio::error::get_ssl_category())};
    }
  }
}

}  // namespace

Stream::Io Stream::SslResultOf(int rc) {
  Io io = SslResult<Io, Want>(ssl_, rc);
  if (io.ec && io.ec != asio::error::eof) ssl_failed_ = true;
  return io;
}

Stream::Io Stream::Handshake() {
  if (ssl_ == nullptr) {
    return Io{0, Want::kNone,
              no_ssl_ ? beast::error_code(asio::error::no_memory) : beast::error_code{}};
  }
  quiet_sweeps_ = 0;
  buffers_freed_ = false;
  ClearSslErrors();
  errno = 0;
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return Io{};
  return SslResultOf(rc);
}

Stream::Io Stream::ReadSome(void* data, size_t size) {
  if (ssl_ != nullptr) {
    quiet_sweeps_ = 0;
    buffers_freed_ = false;
    ClearSslErrors();
    errno = 0;
    const int rc = SSL_read(ssl_, data, static_cast<int>(std::min<size_t>(size, INT_MAX)));
    if (rc > 0) return Io{static_cast<size_t>(rc), Want::kNone, {}};
    return SslResultOf(rc);
  }
  // After the stream's end or a failed receive, that again (no readiness will come for it).
  if (read_end_) return Io{0, Want::kNone, read_end_};
  // The receive goes straight into the caller's buffer.
  return Io{0, Want::kRead, {}, data, size};
}

const BIO_METHOD* Stream::ReadMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rwg ott in");
    if (m == nullptr) return m;
    BIO_meth_set_read_ex(m, &Stream::ReadBioRead);
    BIO_meth_set_ctrl(m, &Stream::ReadBioCtrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

int Stream::ReadBioRead(BIO* bio, char* data, size_t size, size_t* read) {
  auto* s = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (s == nullptr) return 0;
  const size_t have = s->in_end_ - s->in_at_;
  if (have == 0) {
    // Nothing received yet: OpenSSL waits for the stream's receive (wants read); after the
    // peer's end, the end of the stream; after a failed receive, its error (as a socket's
    // read would give it: OpenSSL's SSL_ERROR_SYSCALL with errno).
    if (s->in_eof_) return 0;
    if (s->read_end_) {
      errno =
          s->read_end_.category() == boost::system::system_category() ? s->read_end_.value() : EIO;
      return -1;
    }
    BIO_set_retry_read(bio);
    return 0;
  }
  const size_t n = std::min(have, size);
  std::memcpy(data, s->in_.get() + s->in_at_, n);
  s->in_at_ += n;
  if (s->in_at_ == s->in_end_) s->in_at_ = s->in_end_ = 0;
  *read = n;
  return 1;
}

long Stream::ReadBioCtrl(BIO* bio, int cmd, long /*num*/,  // NOLINT(google-runtime-int)
                         void* /*ptr*/) {
  const auto* s = static_cast<const Stream*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return s != nullptr ? static_cast<long>(s->in_end_ - s->in_at_)  // NOLINT(google-runtime-int)
                          : 0;
    case BIO_CTRL_EOF:
      return s != nullptr && s->in_eof_ && s->in_at_ == s->in_end_ ? 1 : 0;
    default:
      return 0;
  }
}

asio::mutable_buffer Stream::InRoom() {
  // A receive is asked for when OpenSSL has taken all there was; what is left, if ever, moves
  // to the front.
  if (in_at_ > 0) {
    std::memmove(in_.get(), in_.get() + in_at_, in_end_ - in_at_);
    in_end_ -= in_at_;
    in_at_ = 0;
  }
  return asio::buffer(in_.get() + in_end_, in_size_ - in_end_);
}

beast::error_code Stream::Received(const beast::error_code& ec, size_t n) {
  receiving_ = false;
  // A receive into no room gives nothing and no error: OpenSSL wanted more with the buffer
  // full of what it did not take. Not a state to wait in.
  if (n == 0 && !ec) return asio::error::no_buffer_space;
  in_end_ += n;
  if (n > 0 && in_end_ == in_size_ && in_size_ < kInLarge) {
    // Filled: more is likely to follow, in records of up to 16 KiB. Without the memory, the
    // stream goes on with what it has.
    if (std::unique_ptr<char[]> larger(new (std::nothrow) char[kInLarge]); larger != nullptr) {
      std::memcpy(larger.get(), in_.get() + in_at_, in_end_ - in_at_);
      in_end_ -= in_at_;
      in_at_ = 0;
      in_ = std::move(larger);
      in_size_ = kInLarge;
    }
  }
  if (ec == asio::error::eof) {
    in_eof_ = true;  // OpenSSL says how the stream ended (close_notify, or cut short)
  } else if (ec) {
    if (ec != asio::error::operation_aborted) {
      ssl_failed_ = true;
      read_end_ = ec;
    }
    return WaitError(ec);
  }
  if (timed_out_) return beast::error::timeout;
  return {};
}

const BIO_METHOD* Stream::BatchMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rwg ott batch");
    if (m == nullptr) return m;
    BIO_meth_set_write_ex(m, &Stream::BatchBioWrite);
    // OpenSSL flushes after a handshake message; nothing else is asked of this BIO.
    BIO_meth_set_ctrl(m,
                      [](BIO* /*bio*/, int cmd, long /*num*/,
                         void* /*ptr*/) -> long {  // NOLINT(google-runtime-int): OpenSSL's type
                        return cmd == BIO_CTRL_FLUSH ? 1 : 0;
                      });
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

int Stream::BatchBioWrite(BIO* bio, const char* data, size_t size, size_t* written) {
  auto* s = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (s != nullptr && s->batch_held_) {
    // Records of the batch still wait for the socket: what OpenSSL writes now (an alert
    // while reading) waits behind them, as OpenSSL keeps it until its next write.
    BIO_set_retry_write(bio);
    return 0;
  }
  if (s == nullptr || s->batch_ == nullptr || size > kBatchRoom - s->batch_size_) return 0;
  std::memcpy(s->batch_.get() + s->batch_size_, data, size);
  s->batch_size_ += size;
  *written = size;
  return 1;
}

Stream::Io Stream::WriteBatch(const char* data, size_t size) {
  // OpenSSL writes a record per SSL_write (partial writes are on), into the batch. The
  // socket's BIO is the connection's write BIO again once the socket has taken the batch;
  // until then the batch's BIO holds back anything else OpenSSL would write (FlushBatch).
  BIO* socket_bio = SSL_get_wbio(ssl_);
  BIO_up_ref(socket_bio);
  held_socket_bio_ = socket_bio;
  BIO_up_ref(batch_bio_);
  SSL_set0_wbio(ssl_, batch_bio_);
  size_t taken = 0;
  Io failed{};
  const size_t want = std::min(size, kBatch);
  while (taken < want && kBatchRoom - batch_size_ >= kRecordRoom) {
    ClearSslErrors();
    errno = 0;
    const int rc = SSL_write(ssl_, data + taken, static_cast<int>(want - taken));
    if (rc <= 0) {
      failed = SslResultOf(rc);
      if (!failed.ec) failed.ec = asio::error::fault;  // the batch never makes OpenSSL wait
      break;
    }
    taken += static_cast<size_t>(rc);
  }
  batch_held_ = true;
  if (failed.ec) {
    ssl_failed_ = true;
    return Io{0, Want::kNone, failed.ec};
  }
  batch_taken_ = taken;
  batch_sent_ = 0;
  return FlushBatch();
}

Stream::Io Stream::FlushBatch() {
  while (batch_sent_ < batch_size_) {
    const ssize_t rc = ::send(socket_.native_handle(), batch_.get() + batch_sent_,
                              batch_size_ - batch_sent_, MSG_NOSIGNAL);
    if (rc >= 0) {
      batch_sent_ += static_cast<size_t>(rc);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io{0, Want::kWrite, {}};
    ssl_failed_ = true;
    return Io{0, Want::kNone, SystemError(errno)};
  }
  const size_t taken = batch_taken_;
  batch_size_ = batch_sent_ = batch_taken_ = 0;
  batch_.reset();
  batch_held_ = false;
  SSL_set0_wbio(ssl_, held_socket_bio_);  // takes the reference WriteBatch kept
  held_socket_bio_ = nullptr;
  return Io{taken, Want::kNone, {}};
}

Stream::Io Stream::WriteSome(const asio::const_buffer* parts, size_t count, bool retry) {
  if (count == 0) return Io{};
  if (ssl_ != nullptr) {
    quiet_sweeps_ = 0;
    buffers_freed_ = false;
    // A batch waiting for the socket goes first (the write waited for it). A new write while
    // a batch is left, or while OpenSSL holds part of a record (the write that made it was
    // cancelled or timed out), cannot follow that record cut in two: OpenSSL would send the
    // rest as the new write's first bytes. The connection is unusable.
    if (batch_held_ || (ssl_write_pending_ && !retry)) {
      if (batch_size_ > 0 && retry) return FlushBatch();
      ssl_failed_ = true;
      return Io{0, Want::kNone, asio::error::connection_aborted};
    }
    if (parts[0].size() >= 2 * kRecord && batch_bio_ != nullptr && !ssl_write_pending_ &&
        SSL_is_init_finished(ssl_) == 1) {
      // Without memory for the batch, the write goes a record at a time.
      if (batch_ == nullptr) batch_.reset(new (std::nothrow) char[kBatchRoom]);
      if (batch_ != nullptr) {
        return WriteBatch(static_cast<const char*>(parts[0].data()), parts[0].size());
      }
    }
    const void* data = nullptr;
    size_t size = 0;
    if (parts[0].size() >= kRecord) {
      // A large buffer goes as it is (OpenSSL cuts it into records).
      data = parts[0].data();
      size = std::min<size_t>(parts[0].size(), INT_MAX);
    } else {
      if (!retry || staged_ == 0) {
        staged_ = 0;
        for (size_t i = 0; i < count && staged_ < kRecord; ++i) {
          const size_t take = std::min(parts[i].size(), kRecord - staged_);
          std::memcpy(stage_.get() + staged_, parts[i].data(), take);
          staged_ += take;
        }
      }
      data = stage_.get();
      size = staged_;
    }
    ClearSslErrors();
    errno = 0;
    const int rc = SSL_write(ssl_, data, static_cast<int>(size));
    if (rc > 0) {
      staged_ = 0;
      ssl_write_pending_ = false;
      return Io{static_cast<size_t>(rc), Want::kNone, {}};
    }
    Io io = SslResultOf(rc);
    if (io.want == Want::kNone) staged_ = 0;
    ssl_write_pending_ = io.want != Want::kNone;
    return io;
  }
  std::array<iovec, kMaxGather> iov{};
  for (size_t i = 0; i < count; ++i) {
    iov[i].iov_base = const_cast<void*>(parts[i].data());  // NOLINT: sendmsg only reads it
    iov[i].iov_len = parts[i].size();
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = count;
  for (;;) {
    const ssize_t rc = ::sendmsg(socket_.native_handle(), &msg, MSG_NOSIGNAL);
    if (rc >= 0) return Io{static_cast<size_t>(rc), Want::kNone, {}};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io{0, Want::kWrite, {}};
    return Io{0, Want::kNone, SystemError(errno)};
  }
}

}  // namespace rwg::ott
