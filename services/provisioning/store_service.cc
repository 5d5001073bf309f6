#include "services/provisioning/store_service.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/core/crypto.h"
#include "services/core/log.h"
#include "services/core/status.h"
#include "services/provisioning/request_path.h"

namespace rwg::provisioning {
namespace {

grpc::Status Invalid(const std::string& why) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why);
}

// A file descriptor closed on every path out.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  void Update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), len));
  }

 private:
  EVP_MD_CTX* ctx_;
};

// The name the store keeps for `name`, or why it cannot be one.
grpc::Status CheckName(const std::string& field, const std::string& name, std::string* out) {
  if (!IsStoreName(name)) {
    return Invalid(absl::StrCat(field, ": '", name.substr(0, 64),
                                "' is not a file name phones can fetch ([A-Za-z0-9._-], not "
                                "starting with '.', at most 255 characters)"));
  }
  *out = StoreName(name);
  return grpc::Status::OK;
}

void Fill(const std::string& name, const struct stat& st, storepb::FileInfo* out) {
  out->set_name(name);
  out->set_size(static_cast<uint64_t>(st.st_size));
  out->set_modified_unix_ms(absl::ToUnixMillis(absl::TimeFromTimespec(st.st_mtim)));
}

}  // namespace

grpc::Status StoreServiceImpl::Authorize(grpc::ServerContext* ctx) const {
  return core::CheckBearerToken(*ctx, token_);
}

grpc::Status StoreServiceImpl::Put(grpc::ServerContext* ctx,
                                   grpc::ServerReader<storepb::PutRequest>* reader,
                                   storepb::FileInfo* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  storepb::PutRequest msg;
  if (!reader->Read(&msg) || !msg.has_header()) {
    return Invalid("the first message must be the header (name, sha256, size)");
  }
  const storepb::PutHeader header = msg.header();
  std::string name;
  if (grpc::Status s = CheckName("header.name", header.name(), &name); !s.ok()) return s;
  const std::string want_sha = absl::AsciiStrToLower(header.sha256());
  if (!want_sha.empty() &&
      (want_sha.size() != 64 || !std::all_of(want_sha.begin(), want_sha.end(), [](char c) {
         return absl::ascii_isxdigit(static_cast<unsigned char>(c));
       }))) {
    return Invalid("header.sha256: 64 hex digits, or empty");
  }
  if (header.size() > max_file_) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("header.size: over the largest file the store takes (", max_file_, " bytes)"));
  }
  Fd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the store directory cannot be opened");
  }
  const std::string temp = absl::StrCat(".put-", core::RandomHex(rng_, 8));
  Fd fd(::openat(dir.get(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("cannot write in the store: ", strerror(errno)));
  }
  // Whatever goes wrong from here, the temporary file goes.
  auto discard = [&](grpc::Status why) {
    ::unlinkat(dir.get(), temp.c_str(), 0);
    return why;
  };
  Sha256 sha;
  uint64_t size = 0;
  while (reader->Read(&msg)) {
    if (!msg.has_chunk() && msg.has_header()) {
      return discard(Invalid("a second header in the same put"));
    }
    const std::string& chunk = msg.chunk();
    size += chunk.size();
    if (size > max_file_) {
      return discard(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("content: over the largest file the store takes (", max_file_, " bytes)")));
    }
    sha.Update(chunk.data(), chunk.size());
    for (size_t done = 0; done < chunk.size();) {
      const ssize_t n = ::write(fd.get(), chunk.data() + done, chunk.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return discard(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                    absl::StrCat("cannot write the file: ", strerror(errno))));
      }
      done += static_cast<size_t>(n);
    }
  }
  if (ctx->IsCancelled()) {
    return discard(grpc::Status(grpc::StatusCode::CANCELLED, "put cancelled"));
  }
  const std::string got_sha = sha.Hex();
  if (header.size() != 0 && size != header.size()) {
    return discard(grpc::Status(
        grpc::StatusCode::DATA_LOSS,
        absl::StrCat("content: ", size, " bytes received, header.size says ", header.size())));
  }
  if (!want_sha.empty() && got_sha != want_sha) {
    return discard(grpc::Status(
        grpc::StatusCode::DATA_LOSS,
        absl::StrCat("content: SHA-256 ", got_sha, " received, header.sha256 says ", want_sha)));
  }
  if (::fsync(fd.get()) != 0) {
    return discard(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                absl::StrCat("cannot flush the file: ", strerror(errno))));
  }
  if (::renameat(dir.get(), temp.c_str(), dir.get(), name.c_str()) != 0) {
    return discard(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                absl::StrCat("cannot put the file in place: ", strerror(errno))));
  }
  ::fsync(dir.get());  // the rename itself survives a crash
  struct stat st {};
  ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW);
  Fill(name, st, out);
  out->set_sha256(got_sha);
  core::log::Info("file stored",
                  {{"name", name}, {"bytes", std::to_string(size)}, {"sha256", got_sha}});
  return grpc::Status::OK;
}

grpc::Status StoreServiceImpl::Stat(grpc::ServerContext* ctx, const storepb::StatRequest* req,
                                    storepb::FileInfo* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  std::string name;
  if (grpc::Status s = CheckName("name", req->name(), &name); !s.ok()) return s;
  Fd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Fd fd(dir.get() < 0 ? -1 : ::openat(dir.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("name: no file '", name, "'"));
  }
  Sha256 sha;
  char buf[64 * 1024];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot read the file");
    sha.Update(buf, static_cast<size_t>(n));
  }
  Fill(name, st, out);
  out->set_sha256(sha.Hex());
  return grpc::Status::OK;
}

grpc::Status StoreServiceImpl::List(grpc::ServerContext* ctx, const storepb::ListRequest*,
                                    storepb::ListResponse* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir_.c_str()), &::closedir);
  if (d == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the store directory cannot be read");
  }
  std::vector<storepb::FileInfo> files;
  while (dirent* e = ::readdir(d.get())) {
    if (!IsStoreName(e->d_name)) continue;  // "." "..", temporary files
    struct stat st {};
    if (::fstatat(::dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode)) {
      continue;
    }
    storepb::FileInfo f;
    Fill(e->d_name, st, &f);
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  for (auto& f : files) *out->add_files() = std::move(f);
  return grpc::Status::OK;
}

grpc::Status StoreServiceImpl::Delete(grpc::ServerContext* ctx, const storepb::DeleteRequest* req,
                                      storepb::DeleteResponse* out) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  std::string name;
  if (grpc::Status s = CheckName("name", req->name(), &name); !s.ok()) return s;
  Fd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the store directory cannot be opened");
  }
  if (::unlinkat(dir.get(), name.c_str(), 0) == 0) {
    out->set_deleted(true);
    core::log::Info("file deleted", {{"name", name}});
  } else if (errno != ENOENT) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("cannot delete '", name, "': ", strerror(errno)));
  }
  return grpc::Status::OK;
}

grpc::Status StoreServiceImpl::Get(grpc::ServerContext* ctx, const storepb::GetRequest* req,
                                   grpc::ServerWriter<storepb::GetResponse>* writer) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  std::string name;
  if (grpc::Status s = CheckName("name", req->name(), &name); !s.ok()) return s;
  Fd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Fd fd(dir.get() < 0 ? -1 : ::openat(dir.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("name: no file '", name, "'"));
  }
  // The open descriptor reads the file as it was when opened: a put renaming a new file into
  // place meanwhile does not mix the two.
  storepb::GetResponse msg;
  std::string& buf = *msg.mutable_chunk();
  for (;;) {
    buf.resize(size_t{64} * 1024);
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot read the file");
    if (n == 0) break;
    buf.resize(static_cast<size_t>(n));
    if (!writer->Write(msg)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the caller went away");
    }
  }
  return grpc::Status::OK;
}

}  // namespace rwg::provisioning
