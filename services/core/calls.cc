#include "services/core/calls.h"

#include <algorithm>

namespace rwg::core {

absl::StatusOr<std::vector<RedisReply>> ReadCallRecords(RedisClient& redis,
                                                        const std::vector<std::string>& ids) {
  constexpr size_t kBatch = 256;
  std::vector<RedisReply> out;
  out.reserve(ids.size());
  for (size_t first = 0; first < ids.size(); first += kBatch) {
    const size_t n = std::min(kBatch, ids.size() - first);
    std::vector<std::string> mget = {"MGET"};
    for (size_t i = 0; i < n; ++i) mget.push_back(CallKey(ids[first + i]));
    absl::StatusOr<RedisReply> r = redis.Command(mget);
    if (!r.ok()) return r.status();
    if (r->elements.size() != n) {
      return absl::InternalError(absl::StrCat("redis at ", redis.address(), ": MGET of ", n,
                                              " keys answered ", r->elements.size()));
    }
    for (RedisReply& e : r->elements) out.push_back(std::move(e));
  }
  return out;
}

}  // namespace rwg::core
