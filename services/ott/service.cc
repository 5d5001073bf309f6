#include "services/ott/service.h"

#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "services/ott/paths.h"

namespace rwg::ott {

namespace {

// The mask's fields, each one of `allowed`; InvalidArgument naming the bad one.
absl::StatusOr<std::set<std::string>> Mask(const google::protobuf::RepeatedPtrField<std::string>& m,
                                           std::initializer_list<const char*> allowed) {
  if (m.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update_mask: required (", absl::StrJoin(allowed, ", "), ")"));
  }
  std::set<std::string> out;
  for (const std::string& f : m) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || f == a;
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask: '", absl::CHexEscape(f.substr(0, 64)), "' is not one of ",
                       absl::StrJoin(allowed, ", ")));
    }
    out.insert(f);
  }
  return out;
}

std::string NormalizeFqdn(const std::string& fqdn) {
  return absl::AsciiStrToLower(absl::StripSuffix(absl::StripAsciiWhitespace(fqdn), "."));
}

}  // namespace

OttServiceImpl::OttServiceImpl(OttStore& store, CertStore& certs, control::Authenticator& auth,
                               prometheus::Registry& registry)
    : store_(store), certs_(certs), rpc_(auth, registry, "rwg_ott", "OTT admin API") {}

pb::Domain OttServiceImpl::Shown(pb::Domain d) const {
  *d.mutable_effective_paths() = EffectivePaths(d);
  d.set_has_certificate(certs_.Has(d.fqdn()));
  return d;
}

grpc::Status OttServiceImpl::AddDomain(grpc::ServerContext* ctx, const pb::AddDomainRequest* req,
                                       pb::Domain* resp) {
  return rpc_.Run("AddDomain", ctx, [&]() -> absl::Status {
    pb::Domain d = req->domain();
    d.set_fqdn(NormalizeFqdn(d.fqdn()));
    if (absl::Status s = ValidateDomain(d); !s.ok()) return s;
    absl::StatusOr<pb::Domain> added = store_.AddDomain(std::move(d));
    if (!added.ok()) return added.status();
    *resp = Shown(*std::move(added));
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::UpdateDomain(grpc::ServerContext* ctx,
                                          const pb::UpdateDomainRequest* req, pb::Domain* resp) {
  return rpc_.Run("UpdateDomain", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::set<std::string>> mask =
        Mask(req->update_mask(), {"service", "backend", "enabled", "paths"});
    if (!mask.ok()) return mask.status();
    const std::string fqdn = NormalizeFqdn(req->domain().fqdn());
    absl::StatusOr<std::optional<pb::Domain>> current = store_.GetDomain(fqdn);
    if (!current.ok()) return current.status();
    if (!current->has_value()) {
      return absl::NotFoundError(
          absl::StrCat("no domain '", absl::CHexEscape(fqdn.substr(0, 253)), "'"));
    }
    pb::Domain d = **current;
    if (mask->count("service") != 0) d.set_service(req->domain().service());
    if (mask->count("backend") != 0) *d.mutable_backend() = req->domain().backend();
    if (mask->count("enabled") != 0) d.set_enabled(req->domain().enabled());
    if (mask->count("paths") != 0) *d.mutable_paths() = req->domain().paths();
    if (absl::Status s = ValidateDomain(d); !s.ok()) return s;
    absl::StatusOr<pb::Domain> put = store_.PutDomain(d);
    if (!put.ok()) return put.status();
    *resp = Shown(*std::move(put));
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::DeleteDomain(grpc::ServerContext* ctx,
                                          const pb::DeleteDomainRequest* req,
                                          pb::DeleteDomainResponse*) {
  return rpc_.Run("DeleteDomain", ctx, [&]() -> absl::Status {
    const std::string fqdn = NormalizeFqdn(req->fqdn());
    absl::StatusOr<bool> deleted = store_.DeleteDomain(fqdn);
    if (!deleted.ok()) return deleted.status();
    if (!*deleted) {
      return absl::NotFoundError(
          absl::StrCat("no domain '", absl::CHexEscape(fqdn.substr(0, 253)), "'"));
    }
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::ListDomains(grpc::ServerContext* ctx, const pb::ListDomainsRequest*,
                                         pb::ListDomainsResponse* resp) {
  return rpc_.Run("ListDomains", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::vector<pb::Domain>> list = store_.ListDomains();
    if (!list.ok()) return list.status();
    for (pb::Domain& d : *list) *resp->add_domains() = Shown(std::move(d));
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::ListServices(grpc::ServerContext* ctx, const pb::ListServicesRequest*,
                                          pb::ListServicesResponse* resp) {
  return rpc_.Run("ListServices", ctx, [&]() -> absl::Status {
    for (pb::ServiceInfo& i : Services()) *resp->add_services() = std::move(i);
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::AddAccount(grpc::ServerContext* ctx, const pb::AddAccountRequest* req,
                                        pb::Account* resp) {
  return rpc_.Run("AddAccount", ctx, [&]() -> absl::Status {
    absl::StatusOr<pb::Account> a = store_.AddAccount(
        req->account().name(), req->account().password(), req->account().enabled());
    if (!a.ok()) return a.status();
    *resp = *std::move(a);
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::UpdateAccount(grpc::ServerContext* ctx,
                                           const pb::UpdateAccountRequest* req, pb::Account* resp) {
  return rpc_.Run("UpdateAccount", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::set<std::string>> mask =
        Mask(req->update_mask(), {"password", "enabled", "unlock"});
    if (!mask.ok()) return mask.status();
    std::optional<std::string> password;
    if (mask->count("password") != 0) password = req->account().password();
    std::optional<bool> enabled;
    if (mask->count("enabled") != 0) enabled = req->account().enabled();
    absl::StatusOr<pb::Account> a =
        store_.UpdateAccount(req->account().name(), password, enabled, mask->count("unlock") != 0);
    if (!a.ok()) return a.status();
    *resp = *std::move(a);
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::DeleteAccount(grpc::ServerContext* ctx,
                                           const pb::DeleteAccountRequest* req,
                                           pb::DeleteAccountResponse*) {
  return rpc_.Run("DeleteAccount", ctx, [&]() -> absl::Status {
    absl::StatusOr<bool> deleted = store_.DeleteAccount(req->name());
    if (!deleted.ok()) return deleted.status();
    if (!*deleted) {
      return absl::NotFoundError(
          absl::StrCat("no account '", absl::CHexEscape(req->name().substr(0, 64)), "'"));
    }
    return absl::OkStatus();
  });
}

grpc::Status OttServiceImpl::ListAccounts(grpc::ServerContext* ctx, const pb::ListAccountsRequest*,
                                          pb::ListAccountsResponse* resp) {
  return rpc_.Run("ListAccounts", ctx, [&]() -> absl::Status {
    absl::StatusOr<std::vector<pb::Account>> list = store_.ListAccounts();
    if (!list.ok()) return list.status();
    for (pb::Account& a : *list) *resp->add_accounts() = std::move(a);
    return absl::OkStatus();
  });
}

}  // namespace rwg::ott
