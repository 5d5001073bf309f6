// A TCP connection of the ott proxy, plain or with OpenSSL on its socket, as an Asio/Beast
// asynchronous stream: no composed TLS engine, small TLS writes gathered into one record, a
// large one's records sent with one system call (up to 64 KiB of them: a quarter of the
// system calls and of the wake-ups of the reader that a record per call makes).
//
// Reading is the reactor's: bytes are received by an Asio receive on the socket, which tries
// the socket at once (Boost 1.74 does, unless the last receive met the end) and otherwise
// waits on the descriptor's standing edge-triggered registration. A plain read receives
// into the caller's buffer; a TLS stream receives into a buffer of its own that OpenSSL's
// read BIO takes from. So a read that has to wait costs the failed try and the receive when
// the bytes come, without the re-arm of the descriptor (`epoll_ctl`) that Asio's
// `async_wait` makes each time. How reading ended (the peer's end, a reset) is kept: later
// reads get it at once. Writes go
// to the non-blocking socket at once (OpenSSL's socket BIO, or sendmsg) and wait for room
// only when it is full. OpenSSL keeps its record buffers while a connection is in use (no
// allocation per read or write); the sweep gives them back once it has been quiet for two
// sweeps (100-200 ms). Deadlines are not a timer per operation: a stream has a deadline for
// its reads and one for its writes, times its worker's `Sweep` compares, every 100 ms, for
// the streams with an operation of that kind pending; the operations it expires fail with
// beast::error::timeout, and so does one started after its kind's deadline.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <boost/asio/compose.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <cstddef>
#include <memory>

namespace rwg::ott {

class Stream;

// The streams of one serving thread, for their deadlines. Used on that thread only.
class Sweep {
 public:
  Sweep() = default;
  Sweep(const Sweep&) = delete;
  Sweep& operator=(const Sweep&) = delete;
  // Expires the pending operations of every stream whose deadline is at or before `now`, and
  // frees OpenSSL's buffers of the TLS streams quiet since the sweep before.
  void Run(std::chrono::steady_clock::time_point now);
  size_t size() const { return size_; }

 private:
  friend class Stream;
  void Add(Stream* s);
  void Remove(Stream* s);
  Stream* head_ = nullptr;
  size_t size_ = 0;
};

class Stream {
 public:
  using executor_type = boost::asio::io_context::executor_type;
  using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, executor_type>;
  using Clock = std::chrono::steady_clock;
  enum class Role { kServer, kClient };

  // `tls` null: a plain connection. Else an SSL of `tls` on the socket, in `role`.
  Stream(Sweep& sweep, Socket socket, SSL_CTX* tls, Role role);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  Socket& socket() { return socket_; }
  // The connection's SSL (null when plain).
  SSL* native_handle() { return ssl_; }
  bool tls() const { return ssl_ != nullptr; }

  // Operations pending when `d` has passed (or started after) fail with a timeout, and so does
  // every later one until the next expires_after/expires_never. A deadline passed ends every
  // pending operation of the stream (the connection is not usable after a timeout).
  void expires_after(Clock::duration d) {
    read_deadline_ = write_deadline_ = Clock::now() + d;
    timed_out_ = false;
  }
  void expires_never() {
    read_deadline_ = write_deadline_ = Clock::time_point::max();
    timed_out_ = false;
  }
  // The deadline of reads (and the handshake) alone, or of writes alone: for a stream read
  // and written at once (a WebSocket), so that the bytes coming one way do not keep alive a
  // write the peer does not take the other way. A timeout stays (only expires_after and
  // expires_never end it): one direction's new deadline does not revive the other.
  void read_expires_after(Clock::duration d) { read_deadline_ = Clock::now() + d; }
  void write_expires_after(Clock::duration d) { write_deadline_ = Clock::now() + d; }
  // Ends the pending operations with operation_aborted.
  void cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
  // Sends the TLS close_notify if the socket takes it now (nothing when plain or sent).
  void SendCloseNotify();
  // SendCloseNotify, then closes the socket.
  void Close();
  // OpenSSL writes to the socket with write(): the process must ignore SIGPIPE (services do,
  // core::ServiceMain).

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    auto fn = [buffers](Stream& s, bool /*retry*/) {
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        boost::asio::mutable_buffer b(*it);
        if (b.size() > 0) return s.ReadSome(b.data(), b.size());
      }
      return Io{};
    };
    return boost::asio::async_compose<Token, void(boost::beast::error_code, size_t)>(
        Op<decltype(fn)>{this, std::move(fn), false}, token, socket_);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    auto fn = [buffers](Stream& s, bool retry) {
      std::array<boost::asio::const_buffer, kMaxGather> parts;
      size_t n = 0;
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers) && n < parts.size(); ++it) {
        boost::asio::const_buffer b(*it);
        if (b.size() > 0) parts[n++] = b;
      }
      return s.WriteSome(parts.data(), n, retry);
    };
    return boost::asio::async_compose<Token, void(boost::beast::error_code, size_t)>(
        Op<decltype(fn)>{this, std::move(fn), true}, token, socket_);
  }

  // The TLS handshake in the stream's role (nothing to do when plain).
  template <class Token>
  auto async_handshake(Token&& token) {
    auto fn = [](Stream& s, bool /*retry*/) { return s.Handshake(); };
    return boost::asio::async_compose<Token, void(boost::beast::error_code, size_t)>(
        Op<decltype(fn)>{this, std::move(fn), false}, token, socket_);
  }

 private:
  friend class Sweep;
  static constexpr size_t kMaxGather = 16;
  enum class Want { kNone, kRead, kWrite };
  // What one attempt gave: bytes, or a wait for the socket, or an error. A plain read that
  // waits names the caller's buffer (`into`): the bytes the socket gives are the result. Any
  // other wait to read receives into the stream's own buffer, then the attempt is made again.
  struct Io {
    size_t n = 0;
    Want want = Want::kNone;
    boost::beast::error_code ec;
    void* into = nullptr;
    size_t into_size = 0;
  };
  Io ReadSome(void* data, size_t size);
  // `retry`: the same write again after a wait (a TLS write goes again from the same
  // gathered record, or sends the rest of its batch).
  Io WriteSome(const boost::asio::const_buffer* parts, size_t count, bool retry);
  // A large TLS write: its records encrypted into the batch, then sent.
  Io WriteBatch(const char* data, size_t size);
  // Sends what is left of the batch; when all is sent, the bytes its records hold.
  Io FlushBatch();
  // The method of batch_bio_ (made once), and its write: appends a record to the batch.
  static const BIO_METHOD* BatchMethod();
  static int BatchBioWrite(BIO* bio, const char* data, size_t size, size_t* written);
  // OpenSSL's read BIO (made once): it takes from `in_`, and says "retry" when that is empty.
  static const BIO_METHOD* ReadMethod();
  static int ReadBioRead(BIO* bio, char* data, size_t size, size_t* read);
  static long ReadBioCtrl(BIO* bio, int cmd, long num,  // NOLINT(google-runtime-int): OpenSSL's
                          void* ptr);
  // Where a receive for OpenSSL puts its bytes (in_ emptied, or grown when the last filled it).
  boost::asio::mutable_buffer InRoom();
  // A receive for OpenSSL ended with `ec` after `n` bytes: the error the operation ends with,
  // or none when it is to try again.
  boost::beast::error_code Received(const boost::beast::error_code& ec, size_t n);
  Io Handshake();
  // What an SSL call that returned `rc` means; a fatal error is remembered.
  Io SslResultOf(int rc);
  // What an operation reports when its wait ended with `ec`.
  boost::beast::error_code WaitError(const boost::beast::error_code& ec) const;
  bool Expired(bool write) const {
    const Clock::time_point d = write ? write_deadline_ : read_deadline_;
    return d != Clock::time_point::max() && Clock::now() >= d;
  }
  void Expire();

  // One operation: attempts `fn` until it gives bytes or an error, waiting for the socket in
  // between. An attempt that succeeds at once completes through a post (never inside the
  // call that started the operation).
  template <class Fn>
  struct Op {
    Stream* s;
    Fn fn;
    bool write;  // under the write deadline (else the read one)
    // kWaiting: for room to write; kReceiving: a receive for OpenSSL; kReceivingInto: a
    // receive into the caller's buffer.
    enum class State {
      kStart,
      kWaiting,
      kReceiving,
      kReceivingInto,
      kPosted
    } state = State::kStart;
    Io result{};

    template <class Self>
    void operator()(Self& self, boost::beast::error_code ec = {}, size_t n = 0) {
      switch (state) {
        case State::kPosted:
          return Finish(self);
        case State::kReceivingInto:
          // Bytes received are the caller's even when the deadline passed meanwhile (the
          // next operation fails); the end of the stream is asio's eof, and stays the
          // answer of every later read.
          if (n > 0) {
            result = Io{n, Want::kNone, {}};
          } else {
            const boost::beast::error_code end = ec ? ec : boost::asio::error::eof;
            if (end != boost::asio::error::operation_aborted) s->read_end_ = end;
            result = Io{0, Want::kNone, s->WaitError(end)};
          }
          return Finish(self);
        case State::kReceiving:
          if (auto e = s->Received(ec, n)) {
            result = Io{0, Want::kNone, e};
            return Finish(self);
          }
          break;
        case State::kWaiting:
          // A timeout is final: a wait the sweep's cancel missed (its wake-up already queued)
          // ends the operation all the same.
          if (ec || s->timed_out_) {
            result = Io{0, Want::kNone, s->WaitError(ec)};
            return Finish(self);
          }
          break;
        case State::kStart:
          ++(write ? s->pending_writes_ : s->pending_reads_);
          if (s->timed_out_ || s->Expired(write)) {
            result = Io{0, Want::kNone, boost::beast::error::timeout};
            state = State::kPosted;
            return boost::asio::post(s->get_executor(), std::move(self));
          }
          break;
      }
      result = fn(*s, state != State::kStart);
      if (result.want == Want::kRead && result.into != nullptr) {
        state = State::kReceivingInto;
        s->socket_.async_receive(boost::asio::buffer(result.into, result.into_size),
                                 std::move(self));
        return;
      }
      if (result.want == Want::kRead && !s->receiving_) {
        state = State::kReceiving;
        s->receiving_ = true;
        s->socket_.async_receive(s->InRoom(), std::move(self));
        return;
      }
      if (result.want == Want::kRead) {
        // Another operation's receive is pending: only a read makes OpenSSL read (no
        // renegotiation), and a stream has one read at a time.
        result = Io{0, Want::kNone, boost::asio::error::in_progress};
      } else if (result.want == Want::kWrite) {
        state = State::kWaiting;
        s->socket_.async_wait(boost::asio::ip::tcp::socket::wait_write, std::move(self));
        return;
      }
      if (state == State::kStart) {
        state = State::kPosted;
        return boost::asio::post(s->get_executor(), std::move(self));
      }
      Finish(self);
    }
    template <class Self>
    void Finish(Self& self) {
      --(write ? s->pending_writes_ : s->pending_reads_);
      self.complete(result.ec, result.n);
    }
  };

  Sweep& sweep_;
  Socket socket_;
  SSL* ssl_ = nullptr;
  bool no_ssl_ = false;      // TLS wanted, but OpenSSL could not make the SSL
  bool ssl_failed_ = false;  // a fatal TLS or socket error: no close_notify after it
  Clock::time_point read_deadline_ = Clock::time_point::max();
  Clock::time_point write_deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  int pending_reads_ = 0;
  int pending_writes_ = 0;
  // Small TLS writes gathered into one record; kept as they were while a write waits.
  std::unique_ptr<char[]> stage_;
  size_t staged_ = 0;
  // A large TLS write's records, while they are encrypted and until the socket has them all:
  // OpenSSL writes them into `batch_bio_` (see WriteBatch). The buffer lives as long as the
  // batch does.
  BIO* batch_bio_ = nullptr;
  std::unique_ptr<char[]> batch_;
  size_t batch_size_ = 0;   // bytes of records in batch_
  size_t batch_sent_ = 0;   // of which the socket has taken
  size_t batch_taken_ = 0;  // the caller's bytes the batch's records hold
  // While the batch waits for the socket, its BIO stays the SSL's write BIO and refuses
  // ("retry") what OpenSSL writes meanwhile; the socket's BIO, with a reference, is kept here.
  bool batch_held_ = false;
  BIO* held_socket_bio_ = nullptr;
  // OpenSSL holds part of a record of a write that must be retried before any other write.
  bool ssl_write_pending_ = false;
  // What the socket gave OpenSSL's read BIO: in_[in_at_, in_end_) not yet taken. It starts
  // small (requests, pages) and grows to a record's size once a receive fills it.
  std::unique_ptr<char[]> in_;
  size_t in_size_ = 0;
  size_t in_at_ = 0;
  size_t in_end_ = 0;
  bool in_eof_ = false;  // the peer ended the connection after in_'s bytes
  // How reading the socket ended (a reset, or the end of a plain stream): every later read
  // gets it at once (the reactor has no new readiness to report).
  boost::beast::error_code read_end_;
  bool receiving_ = false;  // a receive into in_ is pending
  // Sweeps since the last attempt to read, write or handshake; from the second on, OpenSSL's
  // record buffers are freed (SSL_free_buffers: only when they hold nothing; tried again at
  // each sweep until it did), and made again by OpenSSL when needed.
  int quiet_sweeps_ = 0;
  bool buffers_freed_ = false;
  // The sweep's list.
  Stream* prev_ = nullptr;
  Stream* next_ = nullptr;
};

}  // namespace rwg::ott
