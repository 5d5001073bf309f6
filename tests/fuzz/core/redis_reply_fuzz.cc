// Replies from Redis as the services take them: RESP bytes parsed by hiredis' reader (bounded
// as the services' connections are: BoundRedisReplies), turned
// into RedisReply (ConvertReply), then read as a registration reservation (ParseReserved,
// which holds the previous binding's JSON) and as an error status.
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "services/core/redis.h"
#include "services/core/registrations.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  redisReader* reader = redisReaderCreate();
  if (reader == nullptr) return 0;
  rwg::core::BoundRedisReplies(reader);  // as every connection of the services
  if (redisReaderFeed(reader, reinterpret_cast<const char*>(data), size) == REDIS_OK) {
    void* reply = nullptr;
    for (int i = 0; i < 16 && redisReaderGetReply(reader, &reply) == REDIS_OK && reply; ++i) {
      const auto* r = static_cast<const redisReply*>(reply);
      rwg::core::RedisReply converted = rwg::core::ConvertReply(r);
      (void)rwg::core::BindingStore::ParseReserved(converted);
      if (r->type == REDIS_REPLY_ERROR) {
        (void)rwg::core::ErrorReplyStatus("127.0.0.1:6379", std::string(r->str, r->len));
      }
      freeReplyObject(reply);
      reply = nullptr;
    }
  }
  redisReaderFree(reader);
  return 0;
}
