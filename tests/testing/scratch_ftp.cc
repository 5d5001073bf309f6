#include "tests/testing/scratch_ftp.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/core/random.h"

extern char** environ;

namespace rwg::testing {
namespace {

// Runs a program to its end, its output into `log`; true when it exits 0.
bool Run(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, argv[0], &files, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  if (spawned != 0) return false;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A self-signed certificate for `name` (its own CA): the key in `key`, the certificate in
// `cert`.
bool SelfSigned(const std::string& name, const std::string& key, const std::string& cert,
                const std::string& log) {
  bool ip = !name.empty() && name.find_first_not_of("0123456789.") == std::string::npos;
  return Run(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-days", "2", "-subj", "/CN=" + name, "-addext",
       absl::StrCat("subjectAltName=", ip ? "IP:" : "DNS:", name), "-keyout", key, "-out", cert},
      log);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ScratchFtp>> ScratchFtp::Start(const ScratchFtpOptions& options) {
  std::unique_ptr<ScratchFtp> f(new ScratchFtp());
  const char* tmp = getenv("TMPDIR");
  std::string templ =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/rwg-ftp-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("mkdtemp ", templ, " failed"));
  }
  f->dir_ = templ;
  f->files_dir_ = f->dir_ + "/files";
  std::filesystem::create_directory(f->files_dir_);
  // A password with characters a URL would have to escape.
  f->password_ = absl::StrCat("pw:@/", core::RandomHex(core::Random::System(), 8));
  const std::string log = f->dir_ + "/ftp.log";
  std::vector<std::string> args = {"/usr/bin/python3",
                                   RWG_SCRATCH_FTP_PY,
                                   "--dir",
                                   f->files_dir_,
                                   "--user",
                                   f->user_,
                                   "--password",
                                   f->password_,
                                   "--connections",
                                   f->dir_ + "/connections"};
  if (options.tls) {
    const std::string key = f->dir_ + "/server.key";
    f->ca_file_ = f->dir_ + "/server.crt";
    f->other_ca_file_ = f->dir_ + "/other.crt";
    if (!SelfSigned(options.cert_name, key, f->ca_file_, log) ||
        !SelfSigned(options.cert_name, f->dir_ + "/other.key", f->other_ca_file_, log)) {
      return absl::FailedPreconditionError(
          absl::StrCat("openssl could not make a certificate (", log, ")"));
    }
    const std::string pem = f->dir_ + "/server.pem";
    std::ofstream(pem) << Slurp(f->ca_file_) << Slurp(key);
    args.insert(args.end(), {"--tls-cert", pem});
  }
  if (options.tls13) args.emplace_back("--tls13");
  if (!options.mlsd) args.emplace_back("--no-mlsd");
  if (options.refuse_rename) args.emplace_back("--refuse-rename");
  if (options.disk_bytes != 0) {
    args.insert(args.end(), {"--disk-bytes", std::to_string(options.disk_bytes)});
  }
  if (options.upload_bytes_per_second != 0) {
    args.insert(args.end(), {"--read-limit", std::to_string(options.upload_bytes_per_second)});
  }

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::FailedPreconditionError("pipe failed");
  // Its stdin: the server exits when this end closes, with the object or with the process.
  int in[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return absl::FailedPreconditionError("pipe failed");
  }
  f->stdin_ = in[1];
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_adddup2(&files, in[0], 0);
  posix_spawn_file_actions_adddup2(&files, out[1], 1);
  posix_spawn_file_actions_addopen(&files, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  const int spawned = posix_spawn(&f->pid_, argv[0], &files, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  ::close(out[1]);
  ::close(in[0]);
  if (spawned != 0) {
    ::close(out[0]);
    f->pid_ = -1;
    return absl::FailedPreconditionError("/usr/bin/python3 cannot be run");
  }
  // "PORT <n>\n" once it listens.
  std::string line;
  pollfd pfd{out[0], POLLIN, 0};
  while (line.find('\n') == std::string::npos && ::poll(&pfd, 1, 10000) > 0) {
    char buf[64];
    const ssize_t n = ::read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  if (line.rfind("PORT ", 0) != 0 ||
      !absl::SimpleAtoi(line.substr(5, line.find('\n') - 5), &f->port_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the FTP server did not start (python3-pyftpdlib, python3-openssl installed?): ",
        Slurp(log).substr(0, 2000)));
  }
  return f;
}

int ScratchFtp::Connections() const {
  const std::string s = Slurp(dir_ + "/connections");
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

void ScratchFtp::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

ScratchFtp::~ScratchFtp() {
  Kill();
  if (stdin_ >= 0) ::close(stdin_);
  std::error_code ignored;  // a directory that cannot be removed is left in TMPDIR
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace rwg::testing
