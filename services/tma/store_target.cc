// A provisioning instance's file store as a download target: a client of
// rwg.provisioning.v1.FileStore. A put is atomic on the store's side (written aside, checked
// against the SHA-256 and size sent with it, renamed into place).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rwg/provisioning/v1/store.grpc.pb.h"
#include "services/core/crypto.h"
#include "services/tma/target.h"

namespace rwg::tma {
namespace {

namespace storepb = ::rwg::provisioning::v1;

constexpr size_t kChunk = size_t{64} * 1024;

absl::Status CheckName(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 255 && name[0] != '.' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                           c == '_' || c == '-';
                  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("'", absl::CHexEscape(name.substr(0, 64)),
                   "' is not a file name phones can fetch ([A-Za-z0-9._-], not starting with "
                   "'.', at most 255 characters)"));
}

class StoreTarget final : public Target {
 public:
  explicit StoreTarget(StoreTargetOptions options) : options_(std::move(options)) {
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (options_.ca_file.empty()) {
      creds = grpc::InsecureChannelCredentials();
    } else {
      // TLS with the store's certificate verified against the given CA.
      std::ifstream in(options_.ca_file);
      std::stringstream ss;
      ss << in.rdbuf();
      if (!in || ss.str().empty()) {
        broken_ = absl::FailedPreconditionError(
            absl::StrCat("store target: cannot read the CA file ", options_.ca_file));
        return;
      }
      grpc::SslCredentialsOptions o;
      o.pem_root_certs = ss.str();
      creds = grpc::SslCredentials(o);
    }
    stub_ = storepb::FileStore::NewStub(grpc::CreateChannel(options_.address, creds));
  }

  absl::Status Put(const std::string& name, std::string_view std_content) override {
    const absl::string_view content(std_content.data(), std_content.size());
    if (absl::Status s = CheckName(name); !s.ok()) return s;
    if (!broken_.ok()) return broken_;
    auto ctx = Context();
    storepb::FileInfo info;
    std::unique_ptr<grpc::ClientWriter<storepb::PutRequest>> w = stub_->Put(ctx.get(), &info);
    storepb::PutRequest msg;
    storepb::PutHeader* h = msg.mutable_header();
    h->set_name(name);
    h->set_sha256(core::Sha256Hex(content));
    h->set_size(content.size());
    // The header and the chunks go out together where they can (buffer_hint), the last one
    // marked as such (no separate half-close): a small file is one packet each way.
    const auto hinted = grpc::WriteOptions().set_buffer_hint();
    bool writing = false;
    if (content.empty()) {
      w->WriteLast(msg, grpc::WriteOptions());
    } else {
      writing = w->Write(msg, hinted);
    }
    for (size_t at = 0; writing && at < content.size(); at += kChunk) {
      storepb::PutRequest chunk;
      chunk.set_chunk(std::string(content.substr(at, kChunk)));
      if (at + kChunk >= content.size()) {
        w->WriteLast(chunk, grpc::WriteOptions());  // the outcome is Finish's
        writing = false;
      } else {
        writing = w->Write(chunk, hinted);
      }
    }
    return Status(w->Finish(), absl::StrCat("put ", name));
  }

  absl::StatusOr<std::string> Get(const std::string& name) override {
    if (absl::Status s = CheckName(name); !s.ok()) return s;
    if (!broken_.ok()) return broken_;
    auto ctx = Context();
    storepb::GetRequest req;
    req.set_name(name);
    std::unique_ptr<grpc::ClientReader<storepb::GetResponse>> r = stub_->Get(ctx.get(), req);
    std::string content;
    for (storepb::GetResponse msg; r->Read(&msg);) content += msg.chunk();
    if (absl::Status s = Status(r->Finish(), absl::StrCat("get ", name)); !s.ok()) return s;
    return content;
  }

  absl::Status Delete(const std::string& name) override {
    if (absl::Status s = CheckName(name); !s.ok()) return s;
    if (!broken_.ok()) return broken_;
    auto ctx = Context();
    storepb::DeleteRequest req;
    req.set_name(name);
    storepb::DeleteResponse resp;
    return Status(stub_->Delete(ctx.get(), req, &resp), absl::StrCat("delete ", name));
  }

  absl::StatusOr<std::vector<RemoteFile>> List() override {
    if (!broken_.ok()) return broken_;
    auto ctx = Context();
    storepb::ListResponse resp;
    if (absl::Status s = Status(stub_->List(ctx.get(), storepb::ListRequest(), &resp), "list");
        !s.ok()) {
      return s;
    }
    std::vector<RemoteFile> files;
    files.reserve(static_cast<size_t>(resp.files_size()));
    for (const storepb::FileInfo& f : resp.files()) files.push_back({f.name(), f.size()});
    return files;
  }

 private:
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", "Bearer " + options_.token);
    ctx->set_deadline(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(options_.timeout));
    return ctx;
  }

  // The target's codes for the store's: a refused token is a refused login, a deadline worth
  // a retry.
  absl::Status Status(const grpc::Status& s, absl::string_view what) const {
    if (s.ok()) return absl::OkStatus();
    auto code = static_cast<absl::StatusCode>(s.error_code());
    if (code == absl::StatusCode::kUnauthenticated) code = absl::StatusCode::kPermissionDenied;
    if (code == absl::StatusCode::kDeadlineExceeded) code = absl::StatusCode::kUnavailable;
    return absl::Status(
        code, absl::StrCat("store ", options_.address, ": ", what, ": ", s.error_message()));
  }

  const StoreTargetOptions options_;
  absl::Status broken_;
  std::unique_ptr<storepb::FileStore::Stub> stub_;
};

}  // namespace

std::unique_ptr<Target> NewStoreTarget(const StoreTargetOptions& options) {
  return std::make_unique<StoreTarget>(options);
}

}  // namespace rwg::tma
