// Every Redis key and channel of services/core/keys.h is described in docs/architecture.md §3,
// under the name the services use (a placeholder in <> for a key's variable part).
#include "services/core/keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace rwg::core {
namespace {

std::string ArchitectureDoc() {
  std::ifstream f(RWG_SOURCE_DIR "/docs/architecture.md");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(KeysTest, EveryKeyIsInTheArchitectureDoc) {
  const std::string doc = ArchitectureDoc();
  ASSERT_FALSE(doc.empty()) << "docs/architecture.md not found under " RWG_SOURCE_DIR;
  const std::vector<std::string> keys = {
      kConfigKey,
      kHashKey,
      kDevicesKey,
      kDevicesByMacKey,
      kDevicesByIcpKey,
      kDevicesRevisionKey,
      kDeviceRevisionsKey,
      kEmergencyKey,
      kEmergencyRevisionKey,
      kAdminsKey,
      AdminSessionKey("<sha256>"),
      kEventsChannel,
      BindingKey("<set_username>"),
      IcpBindingKey("<icp_username>"),
      kActiveBindingsKey,
      std::string(kBanPrefix) + "<id>",
      kCallsKey,
      CallKey("<id>"),
      kEdgeInstancesKey,
      kEdgeEventsChannel,
      kRelayInstancesKey,
      RelaySessionKey("<id>"),
      RelaySessionIndexKey("<instance>"),
      kRelayEventsChannel,
      SyncNonceKey("<sha256>"),
      kSyncConsumersKey,
      kSyncConsumersByIdKey,
      SyncTokenKey("<token>"),
      kSyncTokensKey,
      kDeviceChangesKey,
      SyncCallbackKey("<name>"),
      SyncCallbackLockKey("<name>"),
      kPhoneFetchesKey,
  };
  for (const std::string& k : keys) {
    EXPECT_THAT(doc, testing::HasSubstr("`" + k + "`")) << k;
  }
}

TEST(KeysTest, NamesAreDistinctAndInTheRwgNamespace) {
  const std::vector<std::string> names = {kConfigKey,          kHashKey,
                                          kDevicesKey,         kDevicesByMacKey,
                                          kDevicesByIcpKey,    kDevicesRevisionKey,
                                          kEmergencyKey,       kEmergencyRevisionKey,
                                          kAdminsKey,          kEventsChannel,
                                          kActiveBindingsKey,  kCallsKey,
                                          kEdgeInstancesKey,   kEdgeEventsChannel,
                                          kRelayInstancesKey,  kRelayEventsChannel,
                                          kSyncConsumersKey,   kSyncConsumersByIdKey,
                                          kSyncTokensKey,      kDeviceChangesKey,
                                          kDeviceRevisionsKey, kPhoneFetchesKey};
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(names[i].rfind("rwg:", 0), 0U) << names[i];
    for (size_t j = i + 1; j < names.size(); ++j) EXPECT_NE(names[i], names[j]);
  }
}

}  // namespace
}  // namespace rwg::core
