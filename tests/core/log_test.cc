#include "services/core/log.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <clocale>
#include <cstdlib>
#include <cwchar>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rwg::core::log {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// What the code in `fn` writes to standard error (fd 2), read back from a file.
template <class Fn>
std::string CapturedStderr(Fn fn) {
  char path[] = "/tmp/rwg-log-test-XXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(fd, STDERR_FILENO);
  fn();
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(fd);
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  ::unlink(path);
  return text.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(LogOutputTest, ALineGoesToStandardErrorWhenItsLevelIsOn) {
  const std::string got = CapturedStderr([] {
    Init("media-relay", "warn");
    Info("not written", {{"a", "1"}});
    Debug("not written either");
    Warn("port pool low", {{"free", "12"}});
    Error("relay gone", {{"instance", "relay-2"}});
    Init("media-relay", "off");
    Error("not written when off");
    Init("media-relay", "info");
  });
  const std::vector<std::string> lines = Lines(got);
  ASSERT_EQ(lines.size(), 2U) << got;
  EXPECT_THAT(got, EndsWith("\n"));
  EXPECT_THAT(lines[0], MatchesRegex("ts=[0-9T:.-]+Z level=warn service=media-relay "
                                     "msg=\"port pool low\" free=12"));
  EXPECT_THAT(lines[1], MatchesRegex("ts=[0-9T:.-]+Z level=error service=media-relay "
                                     "msg=\"relay gone\" instance=relay-2"));
}

TEST(LogOutputTest, LinesFromManyThreadsStayWhole) {
  const std::string value(3000, 'v');
  constexpr int kThreads = 4;
  constexpr int kEach = 300;
  const std::string got = CapturedStderr([&] {
    Init("sip-edge", "info");
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          Info("call", {{"thread", std::to_string(t)}, {"n", std::to_string(i)}, {"v", value}});
        }
      });
    }
    for (auto& th : threads) th.join();
  });
  const std::vector<std::string> lines = Lines(got);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kEach));
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : lines) {
    ASSERT_THAT(line, MatchesRegex("ts=[0-9T:.-]+Z level=info service=sip-edge msg=call "
                                   "thread=[0-9] n=[0-9]+ v=\"v{1024}\\.\\.\\.\\(3000 "
                                   "bytes\\)\""))
        << line.substr(0, 200);
    const int t = line[line.find("thread=") + 7] - '0';
    const int n = std::atoi(line.c_str() + line.find(" n=") + 3);
    EXPECT_EQ(n, next[t]) << "a thread's lines out of order";
    next[t] = n + 1;
  }
}

TEST(LogFormatTest, OneLineWithFields) {
  Init("control", "info");
  std::string line = Format("info", "device created", {{"user", "admin"}, {"device", "1001"}});
  EXPECT_THAT(line, MatchesRegex("ts=[0-9T:.-]+Z level=info service=control .*"));
  EXPECT_THAT(line, EndsWith("msg=\"device created\" user=admin device=1001"));
}

// The line's time is when it was written, to the millisecond, across second boundaries
// (the date and time part is formatted once a second, the milliseconds each time).
TEST(LogFormatTest, TheTimestampIsTheTimeOfTheLineToTheMillisecond) {
  const absl::Time end = absl::Now() + absl::Milliseconds(1200);
  int lines = 0;
  std::set<int64_t> seconds;
  while (absl::Now() < end) {
    const int64_t before = absl::ToUnixMillis(absl::Now());
    const std::string line = Format("info", "x", {});
    const int64_t after = absl::ToUnixMillis(absl::Now());
    ASSERT_THAT(line, MatchesRegex("ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                   "\\.[0-9]{3}Z level=info .*"));
    absl::Time t;
    std::string error;
    ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", line.substr(3, 24), &t, &error))
        << error << ": " << line;
    const int64_t ms = absl::ToUnixMillis(t);
    ASSERT_GE(ms, before) << line;
    ASSERT_LE(ms, after) << line;
    seconds.insert(ms / 1000);
    ++lines;
    absl::SleepFor(absl::Microseconds(300));
  }
  EXPECT_GE(seconds.size(), 2u) << "the run crossed no second boundary";
  EXPECT_GT(lines, 100);
}

TEST(LogFormatTest, QuotesAndEscapesHostileValues) {
  std::string line = Format("warn", "x", {{"peer", "a b\"c\nd=e\x01"}});
  EXPECT_THAT(line, HasSubstr("peer=\"a b\\\"c\\nd=e\\x01\""));
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_THAT(Format("info", "x", {{"empty", ""}}), EndsWith("empty=\"\""));
}

// True when `s` is well-formed UTF-8 (checked independently of the logger's own decoder).
bool ValidUtf8(const std::string& s) {
  std::mbstate_t st{};
  std::setlocale(LC_CTYPE, "C.UTF-8");
  const char* p = s.data();
  const char* end = s.data() + s.size();
  while (p < end) {
    wchar_t wc;
    const size_t n = std::mbrtowc(&wc, p, static_cast<size_t>(end - p), &st);
    if (n == static_cast<size_t>(-1) || n == static_cast<size_t>(-2)) return false;
    p += n == 0 ? 1 : n;
  }
  return true;
}

TEST(LogFormatTest, BytesThatAreNotUtf8AreEscaped) {
  std::string line = Format("info", "registration refused", {{"user", "\xff"}});
  EXPECT_THAT(line, EndsWith("user=\"\\xff\""));
  // Latin-1 "José", a lone continuation byte, a truncated sequence, an overlong '/', a
  // surrogate and a code point above U+10FFFF.
  line = Format("info", "x",
                {{"name", "Jos\xe9"},
                 {"a", "\x80z"},
                 {"b", "\xe2\x82"},
                 {"c", "\xc0\xaf"},
                 {"d", "\xed\xa0\x80"},
                 {"e", "\xf4\x90\x80\x80"}});
  EXPECT_THAT(line, HasSubstr("name=\"Jos\\xe9\""));
  EXPECT_THAT(line, HasSubstr("a=\"\\x80z\""));
  EXPECT_THAT(line, HasSubstr("b=\"\\xe2\\x82\""));
  EXPECT_THAT(line, HasSubstr("c=\"\\xc0\\xaf\""));
  EXPECT_THAT(line, HasSubstr("d=\"\\xed\\xa0\\x80\""));
  EXPECT_THAT(line, HasSubstr("e=\"\\xf4\\x90\\x80\\x80\""));
  EXPECT_TRUE(ValidUtf8(line));
}

TEST(LogFormatTest, Utf8PassesThroughButLineBreaksDoNot) {
  // é (2 bytes), € (3 bytes), 😀 (4 bytes) are kept as they are.
  std::string line = Format("info", "x", {{"name", "Jos\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}});
  EXPECT_THAT(line, EndsWith("name=\"Jos\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
  // NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) break lines in
  // some viewers: escaped.
  line = Format("info", "x",
                {{"v",
                  "a\xc2\x85"
                  "b\xe2\x80\xa8"
                  "c\xe2\x80\xa9"}});
  EXPECT_THAT(line, EndsWith("v=\"a\\xc2\\x85b\\xe2\\x80\\xa8c\\xe2\\x80\\xa9\""));
  EXPECT_TRUE(ValidUtf8(line));
}

TEST(LogFormatTest, LongValuesAreCut) {
  const std::string huge(60000, 'a');
  std::string line = Format("info", "x", {{"ua", huge}, {"next", "1"}});
  EXPECT_LT(line.size(), 1200u);
  EXPECT_THAT(line, HasSubstr("ua=\"" + std::string(1024, 'a') + "...(60000 bytes)\""));
  EXPECT_THAT(line, EndsWith(" next=1"));
  // Cut inside a UTF-8 sequence: the piece left is escaped, the line stays valid.
  std::string cut = std::string(1023, 'a') + "\xc3\xa9";
  line = Format("info", "x", {{"v", cut}});
  EXPECT_THAT(line, HasSubstr("a\\xc3...(1025 bytes)\""));
  EXPECT_TRUE(ValidUtf8(line));
}

TEST(LogFormatTest, EveryByteKeepsTheLineOneLineOfUtf8) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (int i = 0; i < 256; ++i) all += std::string("\xe2") + static_cast<char>(i) + "\x80";
  const std::string line = Format("info", all, {{"v", all}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  EXPECT_TRUE(ValidUtf8(line));
}

TEST(LogLimiterTest, AFloodWritesABurstPerIntervalAndCountsTheRest) {
  ManualClock clock;
  Limiter limiter(clock, 3, absl::Seconds(10));
  int64_t left_out = -1;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.Admit(&left_out)) << i;
    EXPECT_EQ(left_out, 0);
  }
  for (int i = 0; i < 400; ++i) EXPECT_FALSE(limiter.Admit(&left_out)) << i;
  clock.Advance(absl::Seconds(9));
  EXPECT_FALSE(limiter.Admit(&left_out));
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(limiter.Admit(&left_out));
  EXPECT_EQ(left_out, 401);  // the first line of the next interval says how many were left out
  EXPECT_TRUE(limiter.Admit(&left_out));
  EXPECT_EQ(left_out, 0);
}

TEST(LogLimiterTest, TheLineWrittenAfterALullCarriesTheCount) {
  Init("sip-edge", "info");
  ManualClock clock;
  Limiter limiter(clock, 1, absl::Seconds(10));
  testing::internal::CaptureStderr();
  Warn(limiter, "no media relay for the call", {{"call", "c1"}});
  Warn(limiter, "no media relay for the call", {{"call", "c2"}});
  Warn(limiter, "no media relay for the call", {{"call", "c3"}});
  clock.Advance(absl::Seconds(11));
  Warn(limiter, "no media relay for the call", {{"call", "c4"}});
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("call=c1\n"));
  EXPECT_THAT(out, Not(HasSubstr("call=c2")));
  EXPECT_THAT(out, Not(HasSubstr("call=c3")));
  EXPECT_THAT(out, HasSubstr("call=c4 left_out=2\n"));
}

}  // namespace
}  // namespace rwg::core::log
