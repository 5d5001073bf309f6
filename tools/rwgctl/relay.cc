#include "tools/rwgctl/relay.h"

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "rwg/relay/v1/relay.grpc.pb.h"

namespace rwg::rwgctl {
namespace {

namespace relaypb = ::rwg::relay::v1;
using Relay = relaypb::RelayService::Stub;

// "host:port" into a leg's address; empty leaves it unset.
absl::Status ParseRemote(const std::string& flag, const std::string& value, std::string* host,
                         uint32_t* port) {
  if (value.empty()) return absl::OkStatus();
  size_t colon = value.rfind(':');
  uint32_t p = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(value.substr(colon + 1), &p) || p == 0 ||
      p > 65535) {
    return ArgumentError(absl::StrCat(flag, ": '", value, "' is not host:port"));
  }
  *host = value.substr(0, colon);
  *port = p;
  return absl::OkStatus();
}

absl::StatusOr<std::string> DecodeKey(const std::string& flag, const std::string& b64) {
  if (b64.empty()) return std::string();
  std::string raw;
  if (!absl::Base64Unescape(b64, &raw)) return ArgumentError(absl::StrCat(flag, ": not base64"));
  return raw;
}

// Sessions are always printed as JSON: every counter of both legs.
absl::Status PrintSession(Context& c, const absl::Status& s, const relaypb::Session& session) {
  if (!s.ok()) return s;
  c.printer.Json(session);
  return absl::OkStatus();
}

absl::Status List(Context& c) {
  relaypb::ListResponse resp;
  if (absl::Status s = c.client.Call(&Relay::List, relaypb::ListRequest(), &resp); !s.ok()) {
    return s;
  }
  c.printer.Show(resp, [&] {
    c.printer.Print(SessionsTable(resp));
    c.printer.out() << "ports used " << resp.ports_used() << ", free " << resp.ports_free()
                    << (resp.draining() ? ", draining" : "") << "\n";
  });
  return absl::OkStatus();
}

struct SessionFlags {
  std::string id, call_id;
  RelayLegFlags set, icp;
};

absl::Status Allocate(Context& c, const SessionFlags& flags) {
  relaypb::AllocateRequest req;
  req.set_call_id(flags.call_id);
  absl::StatusOr<relaypb::LegRequest> set = flags.set.Request("set");
  if (!set.ok()) return set.status();
  *req.mutable_set() = *std::move(set);
  absl::StatusOr<relaypb::LegRequest> icp = flags.icp.Request("icp");
  if (!icp.ok()) return icp.status();
  *req.mutable_icp() = *std::move(icp);
  relaypb::Session resp;
  return PrintSession(c, c.client.Call(&Relay::Allocate, req, &resp), resp);
}

absl::Status Update(Context& c, const SessionFlags& flags) {
  relaypb::UpdateRequest req;
  req.set_id(flags.id);
  if (flags.set.Given()) {
    absl::StatusOr<relaypb::LegUpdate> set = flags.set.Update("set");
    if (!set.ok()) return set.status();
    *req.mutable_set() = *std::move(set);
  }
  if (flags.icp.Given()) {
    absl::StatusOr<relaypb::LegUpdate> icp = flags.icp.Update("icp");
    if (!icp.ok()) return icp.status();
    *req.mutable_icp() = *std::move(icp);
  }
  relaypb::Session resp;
  return PrintSession(c, c.client.Call(&Relay::Update, req, &resp), resp);
}

absl::Status Show(Context& c, const std::string& id) {
  relaypb::GetRequest req;
  req.set_id(id);
  relaypb::Session resp;
  return PrintSession(c, c.client.Call(&Relay::Get, req, &resp), resp);
}

absl::Status Delete(Context& c, const std::string& id) {
  relaypb::DeleteRequest req;
  req.set_id(id);
  relaypb::DeleteResponse resp;
  if (absl::Status s = c.client.Call(&Relay::Delete, req, &resp); !s.ok()) return s;
  c.printer.Show(resp.final(), [&] { c.printer.out() << "session " << id << " closed\n"; });
  return absl::OkStatus();
}

absl::Status Drain(Context& c) {
  relaypb::DrainResponse resp;
  if (absl::Status s = c.client.Call(&Relay::Drain, relaypb::DrainRequest(), &resp); !s.ok()) {
    return s;
  }
  c.printer.out() << "draining; " << resp.sessions() << " sessions still open\n";
  return absl::OkStatus();
}

}  // namespace

void RelayLegFlags::Add(CLI::App* cmd, const std::string& leg, bool update) {
  cmd->add_option("--" + leg + "-suite", suite,
                  "AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or RTP");
  cmd->add_option("--" + leg + "-remote", remote, "the remote end's RTP host:port");
  cmd->add_option("--" + leg + "-key", key, "the remote end's SDES key (base64, 30 bytes)");
  if (update) cmd->add_flag("--" + leg + "-new-key", new_key, "the relay makes a new key");
}

absl::StatusOr<relaypb::LegRequest> RelayLegFlags::Request(const std::string& leg) const {
  relaypb::LegRequest r;
  r.set_suite(suite);
  absl::StatusOr<std::string> raw_key = DecodeKey("--" + leg + "-key", key);
  if (!raw_key.ok()) return raw_key.status();
  r.set_remote_key(*raw_key);
  std::string host;
  uint32_t port = 0;
  if (absl::Status s = ParseRemote("--" + leg + "-remote", remote, &host, &port); !s.ok()) return s;
  r.set_remote_address(host);
  r.set_remote_port(port);
  return r;
}

absl::StatusOr<relaypb::LegUpdate> RelayLegFlags::Update(const std::string& leg) const {
  absl::StatusOr<relaypb::LegRequest> r = Request(leg);
  if (!r.ok()) return r.status();
  relaypb::LegUpdate u;
  u.set_suite(r->suite());
  u.set_remote_key(r->remote_key());
  u.set_remote_address(r->remote_address());
  u.set_remote_port(r->remote_port());
  u.set_new_local_key(new_key);
  return u;
}

Table SessionsTable(const relaypb::ListResponse& resp) {
  Table t{{"ID", "CALL", "SET PORT", "SET SUITE", "ICP PORT", "ICP SUITE", "IN SET/ICP", "IDLE"},
          {}};
  for (const auto& s : resp.sessions()) {
    t.rows.push_back(
        {s.id(), s.call_id(), absl::StrCat(s.set().local_port()), s.set().suite(),
         absl::StrCat(s.icp().local_port()), s.icp().suite(),
         absl::StrCat(s.set().stats().rtp_in().packets(), "/", s.icp().stats().rtp_in().packets()),
         s.idle() ? "yes" : "no"});
  }
  return t;
}

void RegisterRelay(CommandLine& cli) {
  CLI::App* relay = cli.Noun(
      "relay", "sessions of a media-relay instance (--server: its API, --token-file: its token)");
  cli.On(relay->add_subcommand("list", "sessions, ports in use"), List);

  auto alloc = std::make_shared<SessionFlags>();
  CLI::App* alloc_cmd =
      relay->add_subcommand("allocate", "open a session (for tests and diagnosis)");
  alloc_cmd->add_option("--call-id", alloc->call_id, "the call it belongs to");
  alloc->set.Add(alloc_cmd, "set", false);
  alloc->icp.Add(alloc_cmd, "icp", false);
  cli.On(alloc_cmd, [alloc](Context& c) { return Allocate(c, *alloc); });

  auto update = std::make_shared<SessionFlags>();
  CLI::App* update_cmd =
      relay->add_subcommand("update", "new remote address or keys for a session");
  update_cmd->add_option("id", update->id, "session id")->required();
  update->set.Add(update_cmd, "set", true);
  update->icp.Add(update_cmd, "icp", true);
  cli.On(update_cmd, [update](Context& c) { return Update(c, *update); });

  auto id = std::make_shared<std::string>();
  CLI::App* show_cmd = relay->add_subcommand("show", "one session with its counters");
  show_cmd->add_option("id", *id, "session id")->required();
  cli.On(show_cmd, [id](Context& c) { return Show(c, *id); });

  CLI::App* delete_cmd = relay->add_subcommand("delete", "close a session");
  delete_cmd->add_option("id", *id, "session id")->required();
  cli.On(delete_cmd, [id](Context& c) { return Delete(c, *id); });

  cli.On(relay->add_subcommand("drain", "take no new sessions (existing ones go on)"), Drain);
}

}  // namespace rwg::rwgctl
