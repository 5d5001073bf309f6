// Memory for one HTTP message's header as Beast's parser stores it (a field list node per
// field, the method, target and reason strings): taken from a block the connection keeps, so
// that a usual header costs no allocation, and from the heap beyond the block (a header can be
// up to the parser's header limit). The block is 2 KiB of the connection's memory for its whole
// life (a client connection's one, in its coroutine frame).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>

namespace rwg::ott {

class FieldArena {
 public:
  static constexpr size_t kBlockBytes = 2048;

  FieldArena() = default;
  FieldArena(const FieldArena&) = delete;
  FieldArena& operator=(const FieldArena&) = delete;

  void* Allocate(size_t bytes, size_t align) {
    const size_t start = (used_ + align - 1) & ~(align - 1);
    if (bytes != 0 && align <= alignof(std::max_align_t) && start < kBlockBytes &&
        bytes <= kBlockBytes - start) {
      used_ = start + bytes;
      ++live_;
      return block_.data() + start;
    }
    return ::operator new(bytes, std::align_val_t(align));
  }

  // A piece of the block is reused once every piece taken from it since the last Reset is
  // given back (Beast frees a message's fields when the message goes); the latest piece at
  // once, so that a string that grows step by step does not use the block up.
  void Deallocate(void* p, size_t bytes, size_t align) {
    // Compared as integers: the order of unrelated pointers is not specified.
    const auto at = reinterpret_cast<uintptr_t>(p);
    const auto begin = reinterpret_cast<uintptr_t>(block_.data());
    if (at >= begin && at - begin < kBlockBytes) {
      const size_t offset = at - begin;
      if (offset + bytes == used_) used_ = offset;
      if (--live_ == 0) used_ = 0;
      return;
    }
    ::operator delete(p, std::align_val_t(align));
  }

  // Bytes of the block in use (for tests).
  size_t used() const { return used_; }
  // Pieces of the block not given back (for tests).
  size_t live() const { return live_; }

 private:
  alignas(std::max_align_t) std::array<std::byte, kBlockBytes> block_;
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
