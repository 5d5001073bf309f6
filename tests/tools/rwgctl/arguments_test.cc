// rwgctl's own checks of what it is given, before any call, and the exit codes they end in.
#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rwg/admin/v1/admin.pb.h"
#include "tools/rwgctl/command_line.h"
#include "tools/rwgctl/config.h"
#include "tools/rwgctl/errors.h"
#include "tools/rwgctl/relay.h"
#include "tools/rwgctl/sync.h"

namespace rwg::rwgctl {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
namespace adminpb = ::rwg::admin::v1;

TEST(RwgctlConfigSet, SetsNestedFieldsOfEveryKind) {
  adminpb::GatewayConfig c;
  ASSERT_TRUE(SetByPath(c, "icp.host", "10.0.0.5").ok());
  ASSERT_TRUE(SetByPath(c, "ports.media_min", "20000").ok());
  ASSERT_TRUE(SetByPath(c, "icp.link_enabled", "Yes").ok());
  ASSERT_TRUE(SetByPath(c, "sip.srtp_suite", "aes_cm_128_hmac_sha1_32").ok());
  ASSERT_TRUE(SetByPath(c, "icp.sip_transports", "tls, tcp").ok());
  EXPECT_EQ(c.icp().host(), "10.0.0.5");
  EXPECT_EQ(c.ports().media_min(), 20000u);
  EXPECT_TRUE(c.icp().link_enabled());
  EXPECT_EQ(c.sip().srtp_suite(), adminpb::AES_CM_128_HMAC_SHA1_32);
  ASSERT_EQ(c.icp().sip_transports_size(), 2);
  EXPECT_EQ(c.icp().sip_transports(0), adminpb::TLS);
}

TEST(RwgctlConfigSet, BadValuesAreRefusedNamingTheField) {
  adminpb::GatewayConfig c;
  EXPECT_EQ(SetByPath(c, "ports.media_min", "abc").message(),
            "ports.media_min: 'abc' is not a number");
  EXPECT_EQ(SetByPath(c, "ports.media_min", "-2").message(),
            "ports.media_min: '-2' is not a number");
  EXPECT_EQ(SetByPath(c, "sso_mode", "maybe").message(), "sso_mode: 'maybe' is not true or false");
  EXPECT_EQ(SetByPath(c, "sip.srtp_suite", "AES_256").message(),
            "sip.srtp_suite: 'AES_256' is not one of AES_CM_128_HMAC_SHA1_80, "
            "AES_CM_128_HMAC_SHA1_32");
  // The zero value means "unset" and cannot be chosen.
  EXPECT_THAT(std::string(SetByPath(c, "sip.srtp_suite", "SRTP_SUITE_UNSPECIFIED").message()),
              StartsWith("sip.srtp_suite: 'SRTP_SUITE_UNSPECIFIED' is not one of"));
  EXPECT_THAT(std::string(SetByPath(c, "icp.sip_transports", "tls,carrier-pigeon").message()),
              StartsWith("icp.sip_transports: 'carrier-pigeon' is not one of UDP, TCP, TLS"));
}

TEST(RwgctlConfigSet, UnknownFieldsListTheFields) {
  adminpb::GatewayConfig c;
  for (const char* path : {"nofield", "icp", "icp.host.x", "icp.nohost"}) {
    std::string message(SetByPath(c, path, "1").message());
    EXPECT_THAT(message, StartsWith(std::string("'") + path + "' is not a configuration field"));
    EXPECT_THAT(message, HasSubstr("fields: public_name, icp.name, icp.type, icp.host"));
  }
}

TEST(RwgctlConfigSet, AssignmentsBecomeOneUpdateWithItsMask) {
  absl::StatusOr<adminpb::UpdateConfigRequest> req =
      ConfigUpdate({"icp.host=10.0.0.5", " ports.sip_tls =5071"});
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->update_mask().paths(), ::testing::ElementsAre("icp.host", "ports.sip_tls"));
  EXPECT_EQ(req->config().ports().sip_tls(), 5071u);
  EXPECT_EQ(ConfigUpdate({"icp.host"}).status().message(), "'icp.host' is not field=value");
}

TEST(RwgctlRelayLeg, RemoteMustBeHostAndPort) {
  RelayLegFlags leg;
  leg.remote = "198.51.100.7:30000";
  absl::StatusOr<relay::v1::LegRequest> r = leg.Request("set");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->remote_address(), "198.51.100.7");
  EXPECT_EQ(r->remote_port(), 30000u);

  for (const char* bad : {"nohost", "h:0", "h:65536", "h:x"}) {
    leg.remote = bad;
    absl::Status s = leg.Request("icp").status();
    Outcome o = OutcomeOf(s);
    EXPECT_EQ(o.exit_code, 2) << bad;
    EXPECT_EQ(o.message, std::string("--icp-remote: '") + bad + "' is not host:port");
  }
}

TEST(RwgctlRelayLeg, KeyMustBeBase64) {
  RelayLegFlags leg;
  leg.key = "!!";
  Outcome o = OutcomeOf(leg.Update("set").status());
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.message, "--set-key: not base64");
  leg.key = "AAEC";
  leg.new_key = true;
  absl::StatusOr<relay::v1::LegUpdate> u = leg.Update("set");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->remote_key(), std::string("\x00\x01\x02", 3));
  EXPECT_TRUE(u->new_local_key());
  EXPECT_TRUE(leg.Given());
  EXPECT_FALSE(RelayLegFlags().Given());
}

TEST(RwgctlSyncConsumerAdd, TheIdIsAtMost40PrintableCharacters) {
  absl::StatusOr<adminpb::AddSyncConsumerRequest> r =
      AddSyncConsumerRequestOf("pbx1", std::string(40, 'M'), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id(), std::string(40, 'M'));
  r = AddSyncConsumerRequestOf("pbx1", std::string(41, 'M'), {});
  EXPECT_EQ(OutcomeOf(r.status()).exit_code, 2);
  EXPECT_EQ(r.status().message(), "--id: 41 characters, at most 40");
  r = AddSyncConsumerRequestOf(std::string(41, 'p'), "", {});
  EXPECT_EQ(r.status().message(), "name (the default id): 41 characters, at most 40");
  r = AddSyncConsumerRequestOf("pbx1", "MiVO App", {});
  EXPECT_EQ(r.status().message(), "--id: printable ASCII only (no spaces)");
  r = AddSyncConsumerRequestOf("pbx1", "MiVO!App~Suite", {});
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(AddSyncConsumerRequestOf("pbx1", "", {})->id(), "") << "the server defaults it";
}

TEST(RwgctlSyncConsumerAdd, SourcesAreAddressesOrCidrs) {
  absl::StatusOr<adminpb::AddSyncConsumerRequest> r =
      AddSyncConsumerRequestOf("pbx1", "", {"192.0.2.10", "198.51.100.0/24", "2001:db8::/48"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sources_size(), 3);
  for (const char* bad : {"pbx.example", "192.0.2.0/33", "192.0.2.0/", "2001:db8::/129"}) {
    r = AddSyncConsumerRequestOf("pbx1", "", {"192.0.2.10", bad});
    EXPECT_EQ(OutcomeOf(r.status()).exit_code, 2) << bad;
    EXPECT_THAT(std::string(r.status().message()), StartsWith("--source: '")) << bad;
  }
}

TEST(RwgctlSyncTables, NoSecretsAndTheIcpHostByDefault) {
  adminpb::ListSyncConsumersResponse consumers;
  adminpb::SyncConsumer* c = consumers.add_consumers();
  c->set_name("pbx1");
  c->set_id("MiVOAppSuite");
  c->set_enabled(true);
  c->set_active_tokens(1);
  Table t = SyncConsumersTable(consumers);
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0][0], "pbx1");
  EXPECT_EQ(t.rows[0][5], "(ICP host)");
  adminpb::ListSyncTokensResponse tokens;
  adminpb::SyncToken* k = tokens.add_tokens();
  k->set_token("tok");
  k->set_kind("temporary");
  k->set_state("pending");
  k->set_consumer("pbx1");
  k->set_source("192.0.2.10");
  t = SyncTokensTable(tokens);
  EXPECT_EQ(t.header, (std::vector<std::string>{"TOKEN", "KIND", "STATE", "CONSUMER", "SOURCE",
                                                "CREATED", "EXPIRES"}));
  EXPECT_EQ(t.rows[0][2], "pending");
}

// The whole program, without a server: what it prints and the exit code.
struct Result {
  int code;
  std::string out, err;
};
Result RunRwgctl(std::vector<const char*> args) {
  // Only what the test gives counts, not the environment it runs in.
  for (const char* env :
       {"RWG_SERVER", "RWG_TMA_SERVER", "RWG_OTT_SERVER", "RWG_CA_CERT", "RWG_INSECURE",
        "RWG_TOKEN_FILE", "RWG_TOKEN", "RWG_USER", "RWG_PASSWORD"}) {
    unsetenv(env);
  }
  args.insert(args.begin(), "rwgctl");
  std::ostringstream out, err;
  int code = Run(static_cast<int>(args.size()), args.data(), out, err);
  return {code, out.str(), err.str()};
}

TEST(RwgctlRun, RefusedArgumentExitsTwoBeforeAnyCall) {
  Result r =
      RunRwgctl({"--insecure", "-s", "127.0.0.1:1", "relay", "allocate", "--set-remote", "nohost"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --set-remote: 'nohost' is not host:port\n");
  EXPECT_EQ(r.out, "");
}

TEST(RwgctlRun, LocalProblemExitsOne) {
  Result r = RunRwgctl({"--insecure", "config", "set", "sip.srtp_suite=AES_256"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("rwgctl: sip.srtp_suite: 'AES_256' is not one of"));
  r = RunRwgctl({"--ca-cert", "/nonexistent/ca.pem", "device", "list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "rwgctl: cannot read /nonexistent/ca.pem\n");
}

TEST(RwgctlRun, UnreachableServerIsAnRpcFailure) {
  Result r = RunRwgctl({"--insecure", "-s", "127.0.0.1:1", "--timeout", "5", "health"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("rwgctl: UNAVAILABLE: "));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(RwgctlRun, CommandLineThatDoesNotParseExitsTwo) {
  Result r = RunRwgctl({"device", "add"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --set-username is required\n");
  EXPECT_EQ(RunRwgctl({"-o", "xml", "device", "list"}).err,
            "rwgctl: --output: xml not in {table,json}\n");
  EXPECT_EQ(RunRwgctl({"device"}).code, 2);
  EXPECT_EQ(RunRwgctl({}).code, 2);
  EXPECT_EQ(RunRwgctl({"nonsense"}).code, 2);
  EXPECT_EQ(RunRwgctl({"sync"}).code, 2);
  EXPECT_EQ(RunRwgctl({"sync", "consumer"}).code, 2);
  EXPECT_EQ(RunRwgctl({"sync", "consumer", "add"}).err, "rwgctl: name is required\n");
  EXPECT_EQ(RunRwgctl({"sync", "token", "approve"}).err, "rwgctl: token is required\n");
}

TEST(RwgctlRun, SyncConsumerAddRefusesA41CharacterIdBeforeAnyCall) {
  const std::string id(41, 'M');
  Result r = RunRwgctl(
      {"--insecure", "-s", "127.0.0.1:1", "sync", "consumer", "add", "pbx1", "--id", id.c_str()});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --id: 41 characters, at most 40\n");
  EXPECT_EQ(r.out, "");
}

TEST(RwgctlRun, HelpListsEveryNoun) {
  Result r = RunRwgctl({"--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* noun :
       {"login", "logout", "passwd", "health", "services", "config", "device", "registration",
        "call", "ban", "emergency", "relay", "hash", "sync", "tma", "ott"}) {
    EXPECT_THAT(r.out, HasSubstr(std::string("\n  ") + noun + " ")) << noun;
  }
}

TEST(RwgctlRun, TmaRefusesBadFlagsBeforeAnyCall) {
  // --tma-server points nowhere: the answers below come before any call.
  Result r = RunRwgctl({"--insecure", "--tma-server", "127.0.0.1:1", "tma", "server", "add", "rw",
                        "--kind", "sftp"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --kind: sftp not in {local,ftp,ftps}\n");
  r = RunRwgctl({"--insecure", "--tma-server", "127.0.0.1:1", "tma", "server", "add", "rw",
                 "--kind", "ftp", "--address", "192.0.2.21", "--port", "65536"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --port: 65536 is not a port (1-65535)\n");
  r = RunRwgctl({"--insecure", "--tma-server", "127.0.0.1:1", "tma", "server", "add", "rw",
                 "--kind", "ftps", "--address", "192.0.2.21"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "rwgctl: an ftps server needs a password: --password-file FILE or --password-stdin\n");
  r = RunRwgctl({"--insecure", "--tma-server", "127.0.0.1:1", "tma", "server", "modify", "rw",
                 "--port", "2121"});
  EXPECT_EQ(r.code, 1) << "checked, then refused by nothing listening";
  EXPECT_THAT(r.err, StartsWith("rwgctl: UNAVAILABLE: "));
  r = RunRwgctl({"--insecure", "--tma-server", "127.0.0.1:1", "tma", "deploy", "--server", "local",
                 "--csv", "/dev/null", "--certificate", "/nonexistent/CA_Mitel.pem"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "rwgctl: --certificate: cannot read /nonexistent/CA_Mitel.pem: No such file or "
            "directory\n");
  r = RunRwgctl({"--insecure", "--tma-server", "127.0.0.1:1", "tma", "deploy", "--server", "local",
                 "--csv", "/nonexistent/rw.csv"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "rwgctl: --csv: cannot read /nonexistent/rw.csv\n");
  // `inventory delete`, not `inventory` (the list), is the command run.
  r = RunRwgctl({"--insecure", "--tma-server", "127.0.0.1:1", "tma", "inventory", "delete"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: which phones? give --mac, --site, --device, --state, or --all\n");
  r = RunRwgctl({"tma", "inventory", "--state", "gone"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --state: gone not in {deployed,fetched,connected}\n");
  EXPECT_EQ(RunRwgctl({"tma", "deploy", "--server", "local"}).err, "rwgctl: --csv is required\n");
}

TEST(RwgctlRun, TmaCallsGoToTheTmaServer) {
  Result r = RunRwgctl({"--insecure", "-s", "127.0.0.1:1", "--tma-server", "127.0.0.1:2",
                        "--timeout", "5", "tma", "server", "list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("127.0.0.1:2"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("127.0.0.1:1")));
}

TEST(RwgctlRun, OttRefusesBadFlagsBeforeAnyCall) {
  // --ott-server points nowhere: the answers below come before any call.
  Result r = RunRwgctl({"--insecure", "--ott-server", "127.0.0.1:1", "ott", "domain", "add",
                        "portal.example.com", "--service", "webmail", "--backend", "m:443"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "rwgctl: --service: webmail not in "
            "{user-portal,web-client,embedded-user-portal,web-admin}\n");
  r = RunRwgctl({"--insecure", "--ott-server", "127.0.0.1:1", "ott", "domain", "add",
                 "portal.example.com", "--service", "web-client", "--backend", "m:99999"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --backend: 'm:99999' has no port: '99999' is not 1-65535\n");
  // One path per flag: the FQDN after a path is the FQDN.
  r = RunRwgctl({"--insecure", "--ott-server", "127.0.0.1:1", "ott", "domain", "add", "--user-path",
                 "/userportal/", "portal.example.com", "--service", "web-client", "--backend",
                 "m:80", "--backend-ca", "ca.pem"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: --backend-ca: for an HTTPS backend only\n");
  r = RunRwgctl({"--insecure", "--ott-server", "127.0.0.1:1", "ott", "domain", "update",
                 "portal.example.com"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, StartsWith("rwgctl: nothing to change: "));
  r = RunRwgctl({"--insecure", "--ott-server", "127.0.0.1:1", "ott", "account", "add", "alice"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "rwgctl: a password is required: --password-file FILE or --password-stdin\n");
  r = RunRwgctl({"ott", "account", "add", "alice", "--password", "secret"});
  EXPECT_EQ(r.code, 2) << "no password on the command line";
  r = RunRwgctl({"--insecure", "--ott-server", "127.0.0.1:1", "ott", "account", "update", "alice",
                 "--enable"});
  EXPECT_EQ(r.code, 1) << "checked, then refused by nothing listening";
  EXPECT_THAT(r.err, StartsWith("rwgctl: UNAVAILABLE: "));
}

TEST(RwgctlRun, OttCallsGoToTheOttServer) {
  Result r = RunRwgctl({"--insecure", "-s", "127.0.0.1:1", "--ott-server", "127.0.0.1:3",
                        "--timeout", "5", "ott", "domain", "list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("127.0.0.1:3"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("127.0.0.1:1")));
}

}  // namespace
}  // namespace rwg::rwgctl
