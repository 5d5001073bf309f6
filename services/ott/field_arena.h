// Memory for one HTTP message's header as Beast's parser stores it (a field list node per
// field, the method, target and reason strings): taken from a 2 KiB block, so that a usual
// header costs no allocation, and from the heap beyond the block (a header can be up to the
// parser's header limit). The arena holds a block only while a piece of it is in use: the
// block comes from the thread's pool with the first piece and goes back with the last, so an
// idle kept-alive connection holds none.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

namespace rwg::ott {

class FieldArena {
 public:
  static constexpr size_t kBlockBytes = 2048;
  // Free blocks a thread keeps for its next messages (512 KiB); more are freed.
  static constexpr size_t kPoolBlocks = 256;

  FieldArena() = default;
  FieldArena(const FieldArena&) = delete;
  FieldArena& operator=(const FieldArena&) = delete;
  ~FieldArena() {
    if (block_ != nullptr) GiveBack(block_);
  }

  void* Allocate(size_t bytes, size_t align) {
    const size_t start = (used_ + align - 1) & ~(align - 1);
    if (bytes != 0 && align <= alignof(std::max_align_t) && start < kBlockBytes &&
        bytes <= kBlockBytes - start) {
      if (block_ == nullptr) block_ = Take();
      used_ = start + bytes;
      ++live_;
      return block_->bytes + start;
    }
    return ::operator new(bytes, std::align_val_t(align));
  }

  // A piece of the block is reused once every piece taken from it since it was last empty is
  // given back (Beast frees a message's fields when the message goes), and the empty block
  // goes back to the pool; the latest piece at once, so that a string that grows step by step
  // does not use the block up.
  void Deallocate(void* p, size_t bytes, size_t align) {
    if (block_ != nullptr) {
      // Compared as integers: the order of unrelated pointers is not specified.
      const auto at = reinterpret_cast<uintptr_t>(p);
      const auto begin = reinterpret_cast<uintptr_t>(block_->bytes);
      if (at >= begin && at - begin < kBlockBytes) {
        const size_t offset = at - begin;
        if (offset + bytes == used_) used_ = offset;
        if (--live_ == 0) {
          used_ = 0;
          GiveBack(block_);
          block_ = nullptr;
        }
        return;
      }
    }
    ::operator delete(p, std::align_val_t(align));
  }

  // Bytes of the block in use (for tests).
  size_t used() const { return used_; }
  // Pieces of the block not given back (for tests).
  size_t live() const { return live_; }
  // Whether the arena holds a block now (for tests).
  bool holds_block() const { return block_ != nullptr; }
  // Free blocks in this thread's pool (for tests).
  static size_t pooled() { return Pool().size(); }

 private:
  struct alignas(std::max_align_t) Block {
    std::byte bytes[kBlockBytes];
  };
  using Blocks = std::vector<std::unique_ptr<Block>>;

  static Blocks& Pool() {
    thread_local Blocks pool;
    return pool;
  }
  // Room for every block the pool keeps is made here, where an allocation may fail: giving a
  // block back (in Deallocate or the destructor) never allocates.
  static Block* Take() {
    Blocks& pool = Pool();
    if (pool.empty()) {
      if (pool.capacity() < kPoolBlocks) pool.reserve(kPoolBlocks);
      return new Block;  // NOLINT(cppcoreguidelines-owning-memory)
    }
    Block* b = pool.back().release();
    pool.pop_back();
    return b;
  }
  // A block goes to the pool of the thread that frees it when that pool has room (a thread
  // that never took a block has none: the block is freed).
  static void GiveBack(Block* block) {
    std::unique_ptr<Block> b(block);
    Blocks& pool = Pool();
    if (pool.size() < std::min(pool.capacity(), kPoolBlocks)) pool.push_back(std::move(b));
  }

  Block* block_ = nullptr;
  size_t used_ = 0;
  size_t live_ = 0;
};

// A standard allocator over a FieldArena (the arena outlives every container using it).
template <class T>
class ArenaAllocator {
 public:
  using value_type = T;

  explicit ArenaAllocator(FieldArena& arena) : arena_(&arena) {}
  template <class U>
  ArenaAllocator(const ArenaAllocator<U>& other) : arena_(other.arena()) {}  // NOLINT: rebinding

  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(arena_->Allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, size_t n) { arena_->Deallocate(p, n * sizeof(T), alignof(T)); }

  FieldArena* arena() const { return arena_; }
  template <class U>
  bool operator==(const ArenaAllocator<U>& other) const {
    return arena_ == other.arena();
  }
  template <class U>
  bool operator!=(const ArenaAllocator<U>& other) const {
    return arena_ != other.arena();
  }

 private:
  FieldArena* arena_;
};

}  // namespace rwg::ott
