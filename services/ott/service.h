// rwg.ott.v1.OttService (proto/rwg/ott/v1/ott.proto, docs/ott.md): the domain list, the
// services' path lists and the accounts for admin paths, for admins (bearer token of the
// admin API).
#pragma once

#include <functional>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "rwg/ott/v1/ott.grpc.pb.h"
#include "services/control/admin_rpc.h"
#include "services/control/auth.h"
#include "services/ott/state.h"
#include "services/ott/store.h"

namespace rwg::ott {

class OttServiceImpl final : public pb::OttService::Service {
 public:
  // `certs` tells which domains have a certificate loaded.
  OttServiceImpl(OttStore& store, CertStore& certs, control::Authenticator& auth,
                 prometheus::Registry& registry);

  grpc::Status AddDomain(grpc::ServerContext*, const pb::AddDomainRequest*, pb::Domain*) override;
  grpc::Status UpdateDomain(grpc::ServerContext*, const pb::UpdateDomainRequest*,
                            pb::Domain*) override;
  grpc::Status DeleteDomain(grpc::ServerContext*, const pb::DeleteDomainRequest*,
                            pb::DeleteDomainResponse*) override;
  grpc::Status ListDomains(grpc::ServerContext*, const pb::ListDomainsRequest*,
                           pb::ListDomainsResponse*) override;
  grpc::Status ListServices(grpc::ServerContext*, const pb::ListServicesRequest*,
                            pb::ListServicesResponse*) override;
  grpc::Status AddAccount(grpc::ServerContext*, const pb::AddAccountRequest*,
                          pb::Account*) override;
  grpc::Status UpdateAccount(grpc::ServerContext*, const pb::UpdateAccountRequest*,
                             pb::Account*) override;
  grpc::Status DeleteAccount(grpc::ServerContext*, const pb::DeleteAccountRequest*,
                             pb::DeleteAccountResponse*) override;
  grpc::Status ListAccounts(grpc::ServerContext*, const pb::ListAccountsRequest*,
                            pb::ListAccountsResponse*) override;

 private:
  // The domain as the API shows it: effective paths and whether a certificate is loaded.
  pb::Domain Shown(pb::Domain d) const;

  OttStore& store_;
  CertStore& certs_;
  control::AdminRpc rpc_;
};

}  // namespace rwg::ott
