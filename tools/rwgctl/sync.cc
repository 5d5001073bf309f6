#include "tools/rwgctl/sync.h"

#include <arpa/inet.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "rwg/admin/v1/admin.grpc.pb.h"
#include "tools/rwgctl/errors.h"

namespace rwg::rwgctl {
namespace {

namespace adminpb = ::rwg::admin::v1;
using Admin = adminpb::AdminService::Stub;

constexpr size_t kIdMax = 40;  // core::kSyncConsumerIdMax (seed §5.4.6)

bool IsAddressOrCidr(const std::string& s) {
  std::vector<std::string> parts = absl::StrSplit(s, absl::MaxSplits('/', 1));
  unsigned char buf[16];
  int max_bits = 0;
  if (inet_pton(AF_INET, parts[0].c_str(), buf) == 1) {
    max_bits = 32;
  } else if (inet_pton(AF_INET6, parts[0].c_str(), buf) == 1) {
    max_bits = 128;
  } else {
    return false;
  }
  if (parts.size() == 1) return true;
  int bits = -1;
  return !parts[1].empty() && parts[1].size() <= 3 &&
         std::all_of(parts[1].begin(), parts[1].end(),
                     [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) &&
         absl::SimpleAtoi(parts[1], &bits) && bits >= 0 && bits <= max_bits;
}

void PrintSecret(Context& c, const std::string& secret) {
  c.printer.out() << "shared secret: " << secret << "\n"
                  << "keep it now: it will not be shown again (`rwgctl sync consumer reset` "
                     "makes a new one)\n";
}

absl::Status AddConsumer(Context& c, const adminpb::AddSyncConsumerRequest& req) {
  adminpb::AddSyncConsumerResponse resp;
  if (absl::Status s = c.client.Call(&Admin::AddSyncConsumer, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "consumer " << resp.consumer().name() << " added\n"
                    << "consumer id (oauth_consumer_key): " << resp.consumer().id() << "\n";
    PrintSecret(c, resp.secret());
  });
  return absl::OkStatus();
}

absl::Status ListConsumers(Context& c) {
  adminpb::ListSyncConsumersResponse resp;
  absl::Status s =
      c.client.Call(&Admin::ListSyncConsumers, adminpb::ListSyncConsumersRequest(), &resp);
  if (!s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.Print(SyncConsumersTable(resp)); });
  return absl::OkStatus();
}

absl::Status SetEnabled(Context& c, const std::string& name, bool enabled) {
  adminpb::SetSyncConsumerEnabledRequest req;
  req.set_name(name);
  req.set_enabled(enabled);
  adminpb::SyncConsumer resp;
  if (absl::Status s = c.client.Call(&Admin::SetSyncConsumerEnabled, req, &resp); !s.ok()) {
    return s;
  }
  c.printer.Show(resp, [&] {
    c.printer.out() << "consumer " << name << (enabled ? " enabled" : " disabled") << "\n";
  });
  return absl::OkStatus();
}

absl::Status SetCallback(Context& c, const std::string& name, const std::string& url) {
  adminpb::SetSyncConsumerCallbackRequest req;
  req.set_name(name);
  req.set_callback_url(url);
  adminpb::SyncConsumer resp;
  if (absl::Status s = c.client.Call(&Admin::SetSyncConsumerCallback, req, &resp); !s.ok()) {
    return s;
  }
  c.printer.Show(resp, [&] {
    if (url.empty()) {
      c.printer.out() << "consumer " << name << ": callback cleared\n";
    } else {
      c.printer.out() << "consumer " << name << ": password changes after revision "
                      << resp.callback_delivered_revision() << " are POSTed to " << url << "\n";
    }
  });
  return absl::OkStatus();
}

absl::Status Reset(Context& c, const std::string& name) {
  adminpb::ResetSyncConsumerRequest req;
  req.set_name(name);
  adminpb::ResetSyncConsumerResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ResetSyncConsumer, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "consumer " << name << " reset: " << resp.revoked_tokens()
                    << " token(s) revoked; the iPBX must link again\n";
    PrintSecret(c, resp.secret());
  });
  return absl::OkStatus();
}

absl::Status DeleteConsumer(Context& c, const std::string& name) {
  adminpb::DeleteSyncConsumerRequest req;
  req.set_name(name);
  adminpb::DeleteSyncConsumerResponse resp;
  if (absl::Status s = c.client.Call(&Admin::DeleteSyncConsumer, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.out() << "consumer " << name << " deleted\n"; });
  return absl::OkStatus();
}

absl::Status ListTokens(Context& c, const std::string& consumer) {
  adminpb::ListSyncTokensRequest req;
  req.set_consumer(consumer);
  adminpb::ListSyncTokensResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ListSyncTokens, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] { c.printer.Print(SyncTokensTable(resp)); });
  return absl::OkStatus();
}

absl::Status Approve(Context& c, const std::string& token) {
  adminpb::ApproveSyncTokenRequest req;
  req.set_token(token);
  adminpb::ApproveSyncTokenResponse resp;
  if (absl::Status s = c.client.Call(&Admin::ApproveSyncToken, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "token " << token << " of consumer " << resp.token().consumer()
                    << " approved\n"
                    << "verifier: " << resp.verifier() << "\n"
                    << "give it to the iPBX (it works once, until "
                    << FormatTime(resp.token().expire_time_unix()) << ")\n";
  });
  return absl::OkStatus();
}

// reject, renew and revoke: one token in, the token as it is now out.
template <typename Request>
absl::Status Change(Context& c, const std::string& token,
                    grpc::Status (Admin::*rpc)(grpc::ClientContext*, const Request&,
                                               adminpb::SyncToken*),
                    const char* done) {
  Request req;
  req.set_token(token);
  adminpb::SyncToken resp;
  if (absl::Status s = c.client.Call(rpc, req, &resp); !s.ok()) return s;
  c.printer.Show(resp, [&] {
    c.printer.out() << "token " << token << " " << done;
    if (resp.state() == "active") {
      c.printer.out() << ", expires " << FormatTime(resp.expire_time_unix());
    }
    c.printer.out() << "\n";
  });
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<adminpb::AddSyncConsumerRequest> AddSyncConsumerRequestOf(
    const std::string& name, const std::string& id, const std::vector<std::string>& sources,
    const std::string& callback_url) {
  const std::string& effective = id.empty() ? name : id;
  if (effective.size() > kIdMax) {
    return ArgumentError(absl::StrCat(id.empty() ? "name (the default id)" : "--id", ": ",
                                      effective.size(), " characters, at most ", kIdMax));
  }
  for (char ch : effective) {
    if (ch < 0x21 || ch > 0x7e) {
      return ArgumentError(absl::StrCat(id.empty() ? "name (the default id)" : "--id",
                                        ": printable ASCII only (no spaces)"));
    }
  }
  for (const std::string& s : sources) {
    if (!IsAddressOrCidr(s)) {
      return ArgumentError(
          absl::StrCat("--source: '", s, "' is not an IP address or CIDR (e.g. 192.0.2.0/24)"));
    }
  }
  adminpb::AddSyncConsumerRequest req;
  req.set_name(name);
  req.set_id(id);
  for (const std::string& s : sources) req.add_sources(s);
  req.set_callback_url(callback_url);  // checked by the server (core::ParseSyncCallbackUrl)
  return req;
}

Table SyncConsumersTable(const adminpb::ListSyncConsumersResponse& resp) {
  Table t{{"NAME", "ID", "ENABLED", "ACTIVE TOKENS", "PENDING", "SOURCES", "CREATED", "CALLBACK",
           "DELIVERED", "FAILURES", "LAST ERROR"},
          {}};
  for (const adminpb::SyncConsumer& c : resp.consumers()) {
    const bool cb = !c.callback_url().empty();
    t.rows.push_back({c.name(), c.id(), c.enabled() ? "yes" : "no",
                      std::to_string(c.active_tokens()), std::to_string(c.pending_tokens()),
                      c.sources().empty() ? "(ICP host)" : absl::StrJoin(c.sources(), ","),
                      FormatTime(c.create_time_unix()), OrDash(c.callback_url()),
                      cb ? std::to_string(c.callback_delivered_revision()) : "-",
                      cb ? std::to_string(c.callback_failures()) : "-",
                      OrDash(c.callback_last_error())});
  }
  return t;
}

Table SyncTokensTable(const adminpb::ListSyncTokensResponse& resp) {
  Table t{{"TOKEN", "KIND", "STATE", "CONSUMER", "SOURCE", "CREATED", "EXPIRES"}, {}};
  for (const adminpb::SyncToken& k : resp.tokens()) {
    t.rows.push_back({k.token(), k.kind(), k.state(), k.consumer(), OrDash(k.source()),
                      FormatTime(k.create_time_unix()), FormatTime(k.expire_time_unix())});
  }
  return t;
}

void RegisterSync(CommandLine& cli) {
  CLI::App* sync = cli.Noun("sync", "the sync API's consumers (the iPBX) and tokens");

  CLI::App* consumer = sync->add_subcommand("consumer", "OAuth consumers of the sync API");
  consumer->require_subcommand(1);
  struct AddFlags {
    std::string name, id, callback_url;
    std::vector<std::string> sources;
  };
  auto add = std::make_shared<AddFlags>();
  CLI::App* add_cmd =
      consumer->add_subcommand("add", "add a consumer; its shared secret is shown once");
  add_cmd->add_option("name", add->name, "the consumer's name (letters, digits, . _ -)")
      ->required();
  add_cmd->add_option("--id", add->id,
                      "consumer id (oauth_consumer_key, at most 40 characters; default: the name)");
  add_cmd->add_option("--source", add->sources,
                      "address or CIDR it may call from (repeatable; default: the ICP's host)");
  add_cmd->add_option("--callback-url", add->callback_url,
                      "https:// URL rwg POSTs a signed notice to when a set-side password changes");
  cli.On(add_cmd, [add](Context& c) -> absl::Status {
    absl::StatusOr<adminpb::AddSyncConsumerRequest> req =
        AddSyncConsumerRequestOf(add->name, add->id, add->sources, add->callback_url);
    if (!req.ok()) return req.status();
    return AddConsumer(c, *req);
  });
  cli.On(consumer->add_subcommand("list", "list the consumers (never their secrets)"),
         ListConsumers);
  auto name = std::make_shared<std::string>();
  auto named = [&](const char* verb, const char* help) {
    CLI::App* cmd = consumer->add_subcommand(verb, help);
    cmd->add_option("name", *name, "the consumer's name")->required();
    return cmd;
  };
  cli.On(named("enable", "let a consumer call again"),
         [name](Context& c) { return SetEnabled(c, *name, true); });
  cli.On(named("disable", "refuse a consumer's calls (its tokens are kept)"),
         [name](Context& c) { return SetEnabled(c, *name, false); });
  auto url = std::make_shared<std::string>();
  CLI::App* callback_cmd =
      named("set-callback",
            "set the https:// URL password-change notices are POSTed to (none given: clear it)");
  callback_cmd->add_option("url", *url, "the callback URL; omitted or empty: no callbacks");
  cli.On(callback_cmd, [name, url](Context& c) { return SetCallback(c, *name, *url); });
  cli.On(named("reset", "change the login settings: a new secret, every token revoked"),
         [name](Context& c) { return Reset(c, *name); });
  cli.On(named("delete", "delete a consumer and its tokens"),
         [name](Context& c) { return DeleteConsumer(c, *name); });

  CLI::App* token = sync->add_subcommand("token", "the consumers' tokens");
  token->require_subcommand(1);
  auto of = std::make_shared<std::string>();
  CLI::App* list_cmd =
      token->add_subcommand("list", "list tokens not yet expired, newest first (never secrets)");
  list_cmd->add_option("--consumer", *of, "only this consumer's");
  cli.On(list_cmd, [of](Context& c) { return ListTokens(c, *of); });
  auto id = std::make_shared<std::string>();
  auto one = [&](const char* verb, const char* help) {
    CLI::App* cmd = token->add_subcommand(verb, help);
    cmd->add_option("token", *id, "the token (oauth_token) as listed")->required();
    return cmd;
  };
  cli.On(one("approve", "approve a pending temporary token; shows its verifier"),
         [id](Context& c) { return Approve(c, *id); });
  cli.On(one("reject", "reject a pending temporary token"),
         [id](Context& c) { return Change(c, *id, &Admin::RejectSyncToken, "rejected"); });
  cli.On(one("renew", "extend an access token by a year from now"),
         [id](Context& c) { return Change(c, *id, &Admin::RenewSyncToken, "renewed"); });
  cli.On(one("revoke", "revoke a token now"),
         [id](Context& c) { return Change(c, *id, &Admin::RevokeSyncToken, "revoked"); });
}

}  // namespace rwg::rwgctl
