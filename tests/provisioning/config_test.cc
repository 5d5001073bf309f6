#include "services/provisioning/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

namespace rwg::provisioning {
namespace {

TEST(ProvisioningConfigTest, DefaultsAreValid) { EXPECT_TRUE(Config().Validate().ok()); }

TEST(ProvisioningConfigTest, ErrorsNameTheOption) {
  struct Case {
    std::function<void(Config&)> set;
    std::string message;
  };
  const Case cases[] = {
      {[](Config& c) { c.server.threads = 0; }, "threads: between 1 and 256"},
      {[](Config& c) { c.server.ban_misses = 0; }, "ban-misses: 1 or more"},
      {[](Config& c) { c.server.ban_mac_misses = 0; }, "ban-mac-misses: 1 or more"},
      {[](Config& c) { c.server.max_connections = 0; }, "max-connections: 1 or more"},
      {[](Config& c) { c.server.max_connections_per_source = 0; },
       "max-connections-per-source: 1 or more"},
      {[](Config& c) { c.header_seconds = 0; },
       "ban-window-seconds, ban-seconds, idle-timeout-seconds, header-timeout-seconds: 1 or "
       "more"},
      {[](Config& c) { c.xml_timeout_ms = 50; }, "xml-timeout-ms: between 100 and 60000"},
      {[](Config& c) {
         c.server.xml_insecure_skip_verify = true;
         c.server.xml_ca_file = "ca.pem";
       },
       "xml-insecure-skip-verify and xml-ca-file: one or the other"},
      {[](Config& c) { c.max_file_mb = 0; }, "max-file-mb: 1 or more"},
  };
  for (const Case& k : cases) {
    Config c;
    k.set(c);
    absl::Status s = c.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << k.message;
    EXPECT_EQ(s.message(), k.message);
  }
}

TEST(ProvisioningConfigTest, DurationsFromTheOptions) {
  Config c;
  c.ban_window_seconds = 7;
  c.xml_timeout_ms = 250;
  c.max_file_mb = 2;
  ServerOptions o = c.Server();
  EXPECT_EQ(o.ban_window, absl::Seconds(7));
  EXPECT_EQ(o.ban_length, absl::Seconds(600));
  EXPECT_EQ(o.xml_timeout, absl::Milliseconds(250));
  EXPECT_EQ(c.max_file_bytes(), 2u << 20);
}

}  // namespace
}  // namespace rwg::provisioning
