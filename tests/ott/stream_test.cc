// ott's Stream over real loopback TCP connections: TLS both ways (OpenSSL on the sockets),
// plain, large writes that must wait for the socket, small writes gathered, deadlines expired
// by the sweep, buffers given back by the sweep, and the ends of a connection (close_notify,
// a bare close, a reset).
#include "services/ott/stream.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <csignal>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/self_signed.h"

namespace rwg::ott {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

// A server context with a fresh self-signed P-256 certificate, and a client context that
// trusts anything (the tests are about the stream, not about verification).
struct Contexts {
  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  Contexts() {
    rwg::testing::SelfSignedOptions o;
    o.cn = "stream.test";
    o.not_after = std::time(nullptr) + 3600;
    EXPECT_TRUE(rwg::testing::UseSelfSigned(server, rwg::testing::MakeSelfSigned(o)));
    // No session tickets: a client that closes never leaves one unread (a reset, not a close).
    SSL_CTX_set_num_tickets(server, 0);
    SSL_CTX_set_verify(client, SSL_VERIFY_NONE, nullptr);
  }
  ~Contexts() {
    SSL_CTX_free(server);
    SSL_CTX_free(client);
  }
};

class StreamTest : public ::testing::Test {
 protected:
  // OpenSSL writes with write(): a peer gone makes SIGPIPE, which the services ignore.
  static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }
  // A connected pair of sockets on loopback.
  std::pair<Stream::Socket, Stream::Socket> Pair() {
    asio::basic_socket_acceptor<tcp, Stream::executor_type> acceptor(
        io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    Stream::Socket a(io_);
    a.connect(acceptor.local_endpoint());
    Stream::Socket b = acceptor.accept();
    return {std::move(a), std::move(b)};
  }
  // Client and server streams, TLS or plain; with TLS, both handshakes done.
  void Connect(bool tls) {
    auto [a, b] = Pair();
    client_ = std::make_unique<Stream>(sweep_, std::move(a), tls ? ctx_.client : nullptr,
                                       Stream::Role::kClient);
    server_ = std::make_unique<Stream>(sweep_, std::move(b), tls ? ctx_.server : nullptr,
                                       Stream::Role::kServer);
    int done = 0;
    beast::error_code cec, sec;
    client_->async_handshake([&](beast::error_code ec, size_t) {
      cec = ec;
      ++done;
    });
    server_->async_handshake([&](beast::error_code ec, size_t) {
      sec = ec;
      ++done;
    });
    RunUntil([&] { return done == 2; });
    ASSERT_FALSE(cec) << cec.message();
    ASSERT_FALSE(sec) << sec.message();
  }
  // Runs the loop (and the sweep every 20 ms) until `done` or 10 s.
  void RunUntil(const std::function<bool()>& done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < until) {
      io_.run_for(milliseconds(20));
      sweep_.Run(std::chrono::steady_clock::now());
      if (io_.stopped()) io_.restart();
    }
    ASSERT_TRUE(done()) << "not done within 10 s";
  }
  // Reads from `s` until `n` bytes or an error; returns what came and the error.
  std::pair<std::string, beast::error_code> ReadAll(Stream& s, size_t n) {
    std::string got;
    beast::error_code error;
    bool done = false;
    auto buf = std::make_shared<std::vector<char>>(65536);
    std::function<void()> next = [&] {
      s.async_read_some(asio::buffer(*buf), [&, buf](beast::error_code ec, size_t k) {
        got.append(buf->data(), k);
        if (ec || got.size() >= n) {
          error = ec;
          done = true;
          return;
        }
        next();
      });
    };
    next();
    RunUntil([&] { return done; });
    return {got, error};
  }

  asio::io_context io_{1};
  Sweep sweep_;
  Contexts ctx_;
  std::unique_ptr<Stream> client_;
  std::unique_ptr<Stream> server_;
};

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST_F(StreamTest, TlsCarriesALargeWriteThatWaitsForTheSocket) {
  Connect(true);
  // More than loopback's socket buffers take at once: the write waits for the reader.
  const std::string data = Pattern(size_t{24} << 20);
  bool written = false;
  beast::error_code wec;
  size_t wn = 0;
  asio::async_write(*client_, asio::buffer(data), [&](beast::error_code ec, size_t n) {
    wec = ec;
    wn = n;
    written = true;
  });
  auto [got, rec] = ReadAll(*server_, data.size());
  RunUntil([&] { return written; });
  EXPECT_FALSE(wec) << wec.message();
  EXPECT_EQ(wn, data.size());
  EXPECT_FALSE(rec) << rec.message();
  EXPECT_TRUE(got == data) << "got " << got.size() << " bytes, not the same";
}

TEST_F(StreamTest, LargeAndSmallTlsWritesArriveInOrder) {
  Connect(true);
  // A large write goes as a batch of records with one system call, a small one as a record
  // of its own: pieces of both kinds, one after the other, arrive whole and in order.
  const std::string all = Pattern(size_t{1} << 20);
  const std::vector<size_t> sizes{100000, 7, 40000, 16384, 65536, 5, 200000, 32768, 1};
  std::string sent;
  size_t at = 0;
  for (size_t n : sizes) {
    bool written = false;
    beast::error_code wec;
    asio::async_write(*client_, asio::buffer(all.data() + at, n),
                      [&](beast::error_code ec, size_t) {
                        wec = ec;
                        written = true;
                      });
    RunUntil([&] { return written; });
    ASSERT_FALSE(wec) << wec.message();
    sent.append(all, at, n);
    at += n;
  }
  auto [got, ec] = ReadAll(*server_, sent.size());
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(got == sent) << "got " << got.size() << " of " << sent.size() << " bytes";
}

TEST_F(StreamTest, AWriteCutShortIsNotEndedCleanly) {
  Connect(true);
  // The reader does not read: the write waits with records the socket has not taken. Closing
  // the writer then ends the stream as cut short, and what came is the start of what was sent
  // (close_notify is not sent ahead of the records left: at a record's end, the reader would
  // take the part it got as the whole).
  const std::string data = Pattern(size_t{24} << 20);
  bool written = false;
  beast::error_code wec;
  asio::async_write(*client_, asio::buffer(data), [&](beast::error_code ec, size_t) {
    wec = ec;
    written = true;
  });
  io_.run_for(milliseconds(200));
  ASSERT_FALSE(written);
  client_->cancel();
  RunUntil([&] { return written; });
  EXPECT_EQ(wec, asio::error::operation_aborted);
  // A new write cannot follow the records left: it fails, and sends nothing.
  bool again = false;
  beast::error_code aec;
  const std::string more = Pattern(100);
  asio::async_write(*client_, asio::buffer(more), [&](beast::error_code ec, size_t) {
    aec = ec;
    again = true;
  });
  RunUntil([&] { return again; });
  EXPECT_EQ(aec, asio::error::connection_aborted) << aec.message();
  // The reader takes all there is: the socket has room for close_notify again.
  server_->expires_after(milliseconds(300));
  auto [first, ec1] = ReadAll(*server_, data.size());
  ASSERT_EQ(ec1, beast::error::timeout) << ec1.message();
  ASSERT_GT(first.size(), 0U);
  server_->expires_never();
  client_->Close();
  auto [rest, ec] = ReadAll(*server_, data.size());
  const std::string got = first + rest;
  EXPECT_EQ(ec, asio::ssl::error::stream_truncated) << ec.message();
  EXPECT_LT(got.size(), data.size());
  EXPECT_TRUE(got == data.substr(0, got.size())) << "what came is not the start of what was sent";
}

TEST_F(StreamTest, AWriteAfterOneCancelledMidRecordFails) {
  Connect(true);
  // Writes of one record and a bit (not batched) until one waits: OpenSSL then holds part of
  // a record. Cancelled, that write's record must not go out as the next write's bytes.
  const std::string piece = Pattern(20000);
  bool written = true;
  beast::error_code wec;
  for (int i = 0; i < 4096 && written; ++i) {
    written = false;
    asio::async_write(*client_, asio::buffer(piece), [&](beast::error_code ec, size_t) {
      wec = ec;
      written = true;
    });
    io_.run_for(milliseconds(i < 2 ? 20 : 2));
    if (io_.stopped()) io_.restart();
    if (!written) {
      // Not done yet: either the socket is full or this machine is slow. Only a write that
      // still waits a while later is one the socket refused.
      io_.run_for(milliseconds(200));
      if (io_.stopped()) io_.restart();
    }
    ASSERT_FALSE(wec) << wec.message();
  }
  ASSERT_FALSE(written) << "the socket never filled";
  client_->cancel();
  RunUntil([&] { return written; });
  EXPECT_EQ(wec, asio::error::operation_aborted);
  bool again = false;
  beast::error_code aec;
  asio::async_write(*client_, asio::buffer(piece.data(), 100), [&](beast::error_code ec, size_t) {
    aec = ec;
    again = true;
  });
  RunUntil([&] { return again; });
  EXPECT_EQ(aec, asio::error::connection_aborted) << aec.message();
}

TEST_F(StreamTest, AQuietStreamsBuffersGoBackWithoutLosingWhatWasNotReadYet) {
  Connect(true);
  // Three records arrive; the reader takes 10 bytes, so OpenSSL holds the rest of the first
  // record and the stream holds the records after it. Quiet for many sweeps (OpenSSL's
  // buffers are given back when they hold nothing), the reader then gets every byte.
  const std::string data = Pattern(40000);
  bool written = false;
  asio::async_write(*client_, asio::buffer(data), [&](beast::error_code ec, size_t) {
    EXPECT_FALSE(ec) << ec.message();
    written = true;
  });
  RunUntil([&] { return written; });
  std::array<char, 10> first{};
  bool read = false;
  server_->async_read_some(asio::buffer(first), [&](beast::error_code ec, size_t n) {
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(n, first.size());
    read = true;
  });
  RunUntil([&] { return read; });
  for (int i = 0; i < 5; ++i) sweep_.Run(std::chrono::steady_clock::now());
  auto [rest, ec] = ReadAll(*server_, data.size() - first.size());
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(std::string(first.data(), first.size()) + rest == data);
  // Both ways still work after the sweeps gave the buffers back.
  for (int i = 0; i < 5; ++i) sweep_.Run(std::chrono::steady_clock::now());
  const std::string back = Pattern(3000);
  written = false;
  asio::async_write(*server_, asio::buffer(back), [&](beast::error_code ec, size_t) {
    EXPECT_FALSE(ec) << ec.message();
    written = true;
  });
  auto [got, bec] = ReadAll(*client_, back.size());
  RunUntil([&] { return written; });
  EXPECT_FALSE(bec) << bec.message();
  EXPECT_TRUE(got == back);
}

TEST_F(StreamTest, SmallTlsWritesAreGatheredIntoOneRecord) {
  Connect(true);
  const std::string a = "HTTP/1.1 200 OK\r\n", b = "Content-Length: 5\r\n\r\n", c = "hello";
  std::vector<asio::const_buffer> parts{asio::buffer(a), asio::buffer(b), asio::buffer(c)};
  size_t wn = 0;
  bool written = false;
  client_->async_write_some(parts, [&](beast::error_code ec, size_t n) {
    EXPECT_FALSE(ec);
    wn = n;
    written = true;
  });
  RunUntil([&] { return written; });
  // All three parts in one write_some: one record, one system call.
  EXPECT_EQ(wn, a.size() + b.size() + c.size());
  auto [got, ec] = ReadAll(*server_, wn);
  EXPECT_EQ(got, a + b + c);
}

TEST_F(StreamTest, PlainCarriesDataBothWays) {
  Connect(false);
  const std::string up = Pattern(size_t{8} << 20);
  bool written = false;
  asio::async_write(*client_, asio::buffer(up), [&](beast::error_code ec, size_t) {
    EXPECT_FALSE(ec);
    written = true;
  });
  auto [got, ec] = ReadAll(*server_, up.size());
  RunUntil([&] { return written; });
  EXPECT_TRUE(got == up);
  const std::string down = "answer";
  asio::write(server_->socket(), asio::buffer(down));
  auto [back, ec2] = ReadAll(*client_, down.size());
  EXPECT_EQ(back, down);
}

TEST_F(StreamTest, APendingReadPastItsDeadlineTimesOut) {
  Connect(true);
  server_->expires_after(milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  auto [got, ec] = ReadAll(*server_, 1);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(ec, beast::error::timeout) << ec.message();
  EXPECT_GE(took, milliseconds(300));
  EXPECT_LT(took, milliseconds(2000));
  // The timeout is final: the stream's next operation fails too, until a new deadline.
  bool refused = false;
  asio::async_write(*server_, asio::buffer(std::string("late")),
                    [&](beast::error_code wec, size_t) {
                      EXPECT_EQ(wec, beast::error::timeout) << wec.message();
                      refused = true;
                    });
  RunUntil([&] { return refused; });
  server_->expires_never();
  bool sent = false;
  asio::async_write(*server_, asio::buffer(std::string("again")),
                    [&](beast::error_code wec, size_t) {
                      EXPECT_FALSE(wec) << wec.message();
                      sent = true;
                    });
  RunUntil([&] { return sent; });
  auto [again, aec] = ReadAll(*client_, 5);
  EXPECT_EQ(again, "again");
  // The connection's other operations are not touched by a deadline that is not theirs.
  client_->expires_after(std::chrono::seconds(30));
  bool written = false;
  asio::async_write(*client_, asio::buffer(std::string("x")), [&](beast::error_code wec, size_t) {
    EXPECT_FALSE(wec);
    written = true;
  });
  RunUntil([&] { return written; });
}

TEST_F(StreamTest, AWriteThePeerDoesNotTakeTimesOutWhileReadsGoOn) {
  Connect(true);
  // As a WebSocket: the client writes what the server never reads, while it reads what the
  // server keeps sending, each read with a fresh read deadline. The write's own deadline
  // ends it, though bytes keep coming the other way.
  const std::string data = Pattern(size_t{24} << 20);
  bool written = false;
  beast::error_code wec;
  client_->write_expires_after(milliseconds(500));
  const auto start = std::chrono::steady_clock::now();
  asio::async_write(*client_, asio::buffer(data), [&](beast::error_code ec, size_t) {
    wec = ec;
    written = true;
  });
  std::array<char, 64> b{};
  int reads = 0;
  while (!written && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    bool sent = false;
    asio::async_write(*server_, asio::buffer(std::string("tick")),
                      [&](beast::error_code ec, size_t) {
                        EXPECT_FALSE(ec) << ec.message();
                        sent = true;
                      });
    RunUntil([&] { return sent; });
    client_->read_expires_after(std::chrono::seconds(2));
    bool read = false;
    beast::error_code rec;
    client_->async_read_some(asio::buffer(b), [&](beast::error_code ec, size_t) {
      rec = ec;
      read = true;
    });
    RunUntil([&] { return read || written; });
    if (written) break;
    ASSERT_FALSE(rec) << rec.message();
    ++reads;
    io_.run_for(milliseconds(50));
    sweep_.Run(std::chrono::steady_clock::now());
    if (io_.stopped()) io_.restart();
  }
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(written) << "the write never ended";
  EXPECT_EQ(wec, beast::error::timeout) << wec.message();
  EXPECT_GE(took, milliseconds(500));
  EXPECT_LT(took, milliseconds(2500));
  EXPECT_GE(reads, 3) << "the reads did not go on while the write waited";
}

TEST_F(StreamTest, AnOperationStartedAfterTheDeadlineFailsAtOnce) {
  Connect(false);
  server_->expires_after(milliseconds(0));
  auto [got, ec] = ReadAll(*server_, 1);
  EXPECT_EQ(ec, beast::error::timeout);
  // A new deadline makes the stream usable again.
  server_->expires_never();
  asio::write(client_->socket(), asio::buffer(std::string("y")));
  auto [again, ec2] = ReadAll(*server_, 1);
  EXPECT_FALSE(ec2);
  EXPECT_EQ(again, "y");
}

TEST_F(StreamTest, CancelEndsAPendingReadAsAborted) {
  Connect(true);
  bool done = false;
  beast::error_code error;
  std::array<char, 16> b{};
  server_->async_read_some(asio::buffer(b), [&](beast::error_code ec, size_t) {
    error = ec;
    done = true;
  });
  io_.run_for(milliseconds(50));
  server_->cancel();
  RunUntil([&] { return done; });
  EXPECT_EQ(error, asio::error::operation_aborted);
}

TEST_F(StreamTest, TheEndsOfAConnection) {
  // close_notify: the reader sees the end of the stream.
  Connect(true);
  client_->Close();
  auto [got, ec] = ReadAll(*server_, 1);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  // A TLS peer that closes its socket without close_notify: a truncated stream.
  Connect(true);
  client_->socket().close();
  auto [got2, ec2] = ReadAll(*server_, 1);
  EXPECT_EQ(ec2, asio::ssl::error::stream_truncated) << ec2.message();
  // Plain: the end of the stream.
  Connect(false);
  client_->Close();
  auto [got3, ec3] = ReadAll(*server_, 1);
  EXPECT_EQ(ec3, asio::error::eof) << ec3.message();
}

TEST_F(StreamTest, AReadAfterTheEndOrAResetFailsAtOnce) {
  // A read after a connection's end or reset fails at once, with the same error: the stream
  // keeps how its reading ended (the reactor reports it once; a receive after it is not
  // owed a new readiness).
  for (const bool tls : {false, true}) {
    for (const bool reset : {false, true}) {
      SCOPED_TRACE(absl::StrCat(tls ? "tls" : "plain", reset ? ", reset" : ", closed"));
      Connect(tls);
      if (reset) {
        ::linger l{1, 0};  // a close that sends RST
        ASSERT_EQ(
            ::setsockopt(client_->socket().native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof(l)),
            0);
        client_->socket().close();
      } else {
        client_->Close();
      }
      server_->expires_never();
      auto [first, ec1] = ReadAll(*server_, 1);
      EXPECT_TRUE(ec1) << "the first read after the end succeeded";
      const auto start = std::chrono::steady_clock::now();
      auto [again, ec2] = ReadAll(*server_, 1);
      EXPECT_TRUE(ec2) << "the read after it succeeded";
      EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
      if (!reset) {
        EXPECT_EQ(ec2, asio::error::eof) << ec2.message();
      } else {
        EXPECT_EQ(ec2, asio::error::connection_reset) << ec2.message();
      }
    }
  }
}

TEST_F(StreamTest, AHandshakeWithSomethingElseThanTlsFails) {
  auto [a, b] = Pair();
  server_ = std::make_unique<Stream>(sweep_, std::move(b), ctx_.server, Stream::Role::kServer);
  asio::write(a, asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
  bool done = false;
  beast::error_code error;
  server_->async_handshake([&](beast::error_code ec, size_t) {
    error = ec;
    done = true;
  });
  RunUntil([&] { return done; });
  EXPECT_TRUE(error);
}

TEST_F(StreamTest, TheSweepKnowsItsStreams) {
  EXPECT_EQ(sweep_.size(), 0U);
  Connect(false);
  EXPECT_EQ(sweep_.size(), 2U);
  client_.reset();
  EXPECT_EQ(sweep_.size(), 1U);
  server_.reset();
  EXPECT_EQ(sweep_.size(), 0U);
}

}  // namespace
}  // namespace rwg::ott
