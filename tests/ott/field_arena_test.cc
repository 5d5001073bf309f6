#include "services/ott/field_arena.h"

#include <gtest/gtest.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace rwg::ott {
namespace {

namespace http = boost::beast::http;
using Parser = http::response_parser<http::string_body, ArenaAllocator<char>>;

// A response header with `fields` fields of `value_bytes` each.
std::string Header(int fields, size_t value_bytes) {
  std::string h = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < fields; ++i) {
    h += "X-Field-" + std::to_string(i) + ": " + std::string(value_bytes, 'v') + "\r\n";
  }
  return h + "Content-Length: 2\r\n\r\nok";
}

void Parse(Parser& p, const std::string& text) {
  boost::beast::error_code ec;
  size_t at = 0;
  while (at < text.size() && !p.is_done()) {
    const size_t used = p.put(boost::asio::buffer(text.data() + at, text.size() - at), ec);
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_GT(used, 0u);
    at += used;
  }
  ASSERT_EQ(at, text.size());
  ASSERT_TRUE(p.is_done());
}

TEST(FieldArenaTest, AUsualHeaderLivesInTheBlockAndGivesItBack) {
  FieldArena arena;
  {
    Parser p(std::piecewise_construct, std::make_tuple(),
             std::make_tuple(ArenaAllocator<char>(arena)));
    Parse(p, Header(8, 20));
    EXPECT_GT(arena.used(), 0u);
    EXPECT_EQ(p.get()["X-Field-7"], std::string(20, 'v'));
    EXPECT_EQ(p.get().body(), "ok");
  }
  // The message is gone: the whole block is free for the next one.
  EXPECT_EQ(arena.live(), 0u);
  EXPECT_EQ(arena.used(), 0u);
}

TEST(FieldArenaTest, AHeaderLargerThanTheBlockGoesOnTheHeap) {
  FieldArena arena;
  for (int round = 0; round < 3; ++round) {
    Parser p(std::piecewise_construct, std::make_tuple(),
             std::make_tuple(ArenaAllocator<char>(arena)));
    p.header_limit(1 << 20);
    Parse(p, Header(200, 100));  // about 24 KiB of fields
    EXPECT_LE(arena.used(), FieldArena::kBlockBytes);
    for (int i = 0; i < 200; i += 37) {
      EXPECT_EQ(p.get()["X-Field-" + std::to_string(i)], std::string(100, 'v')) << i;
    }
  }
  EXPECT_EQ(arena.live(), 0u);
}

TEST(FieldArenaTest, PiecesComeBackInAnyOrder) {
  FieldArena arena;
  void* a = arena.Allocate(100, 8);
  void* b = arena.Allocate(200, 8);
  void* c = arena.Allocate(50, 16);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(c) % 16, 0u);
  arena.Deallocate(a, 100, 8);
  EXPECT_EQ(arena.live(), 2u);
  arena.Deallocate(c, 50, 16);  // the latest: its room is taken back at once
  void* d = arena.Allocate(50, 16);
  EXPECT_EQ(d, c);
  arena.Deallocate(b, 200, 8);
  arena.Deallocate(d, 50, 16);
  EXPECT_EQ(arena.used(), 0u);
  // Zero bytes, over-aligned and too large: the heap, given back there.
  void* z = arena.Allocate(0, 8);
  void* o = arena.Allocate(64, 64);
  void* big = arena.Allocate(FieldArena::kBlockBytes + 1, 8);
  EXPECT_EQ(arena.live(), 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(o) % 64, 0u);
  arena.Deallocate(z, 0, 8);
  arena.Deallocate(o, 64, 64);
  arena.Deallocate(big, FieldArena::kBlockBytes + 1, 8);
}

TEST(FieldArenaTest, AnIdleArenaHoldsNoBlockAndTheNextMessageReusesIt) {
  // Between requests a kept-alive connection holds no block: the block goes back to the
  // thread's pool with the last piece and the next message, on any connection, takes it again.
  FieldArena first;
  FieldArena second;
  EXPECT_FALSE(first.holds_block());
  void* a = first.Allocate(100, 8);
  EXPECT_TRUE(first.holds_block());
  const size_t pooled = FieldArena::pooled();
  first.Deallocate(a, 100, 8);
  EXPECT_FALSE(first.holds_block());
  EXPECT_EQ(FieldArena::pooled(), pooled + 1);
  void* b = second.Allocate(100, 8);
  EXPECT_EQ(b, a) << "the pooled block is taken again";
  EXPECT_EQ(FieldArena::pooled(), pooled);
  {
    Parser p(std::piecewise_construct, std::make_tuple(),
             std::make_tuple(ArenaAllocator<char>(first)));
    Parse(p, Header(5, 10));
    EXPECT_TRUE(first.holds_block());
    EXPECT_GT(first.live(), 0u);
  }
  EXPECT_FALSE(first.holds_block());
  EXPECT_EQ(first.used(), 0u);
  second.Deallocate(b, 100, 8);
  // The pool is bounded: arenas that all hold a block at once give back at most its size.
  {
    std::vector<std::unique_ptr<FieldArena>> many;
    std::vector<void*> pieces;
    for (size_t i = 0; i < FieldArena::kPoolBlocks + 10; ++i) {
      many.push_back(std::make_unique<FieldArena>());
      pieces.push_back(many.back()->Allocate(64, 8));
    }
    for (size_t i = 0; i < many.size(); ++i) many[i]->Deallocate(pieces[i], 64, 8);
    EXPECT_EQ(FieldArena::pooled(), FieldArena::kPoolBlocks);
  }
}

}  // namespace
}  // namespace rwg::ott
