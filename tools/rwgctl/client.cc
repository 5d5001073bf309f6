#include "tools/rwgctl/client.h"

#include <chrono>
#include <cstdlib>
#include <fstream>

#include "absl/strings/strip.h"
#include "tools/rwgctl/input.h"

namespace rwg::rwgctl {

absl::StatusOr<std::shared_ptr<grpc::Channel>> Client::Channel() {
  if (channel_) return channel_;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options_.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!options_.ca_cert.empty()) {
      absl::StatusOr<std::string> roots = ReadFile(options_.ca_cert);
      if (!roots.ok()) return roots.status();
      ssl.pem_root_certs = *std::move(roots);
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  channel_ = grpc::CreateCustomChannel(address_, creds, args);
  return channel_;
}

std::unique_ptr<grpc::ClientContext> Client::NewContext(Auth auth) const {
  std::unique_ptr<grpc::ClientContext> context = NewStreamContext(auth);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(options_.timeout * 1000)));
  return context;
}

std::unique_ptr<grpc::ClientContext> Client::NewStreamContext(Auth auth) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (auth == Auth::kToken) {
    std::string token;
    if (const char* t = std::getenv("RWG_TOKEN")) {
      token = t;
    } else {
      std::ifstream in(TokenFile());
      if (in) std::getline(in, token);
    }
    token = std::string(absl::StripAsciiWhitespace(token));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  }
  return context;
}

std::string Client::TokenFile() const {
  return options_.token_file.empty() ? DefaultTokenFile() : options_.token_file;
}

}  // namespace rwg::rwgctl
