#pragma once

#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace rwg::sip_edge {

// The contexts of operations in flight whose address is handed to sofia-sip as a callback's
// magic. They are owned here rather than by the callback that normally ends them: sofia-sip
// destroys transactions still pending when its agent goes without calling back, and what those
// held is freed with this table (Clear, after the agents are destroyed). SIP thread only.
template <typename T>
class InFlight {
 public:
  // A new context, owned by the table; the pointer stays valid until Remove or Clear.
  template <typename... Args>
  T* Add(Args&&... args) {
    auto owned = std::make_unique<T>(T{std::forward<Args>(args)...});
    T* raw = owned.get();
    items_.emplace(raw, std::move(owned));
    return raw;
  }
  // Frees `item` (its operation has ended). Unknown pointers are ignored.
  void Remove(T* item) { items_.erase(item); }
  void Clear() { items_.clear(); }
  size_t size() const { return items_.size(); }

 private:
  absl::flat_hash_map<T*, std::unique_ptr<T>> items_;
};

}  // namespace rwg::sip_edge
