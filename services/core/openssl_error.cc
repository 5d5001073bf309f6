#include "services/core/openssl_error.h"

#include <openssl/err.h>

namespace rwg::core {

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();  // NOLINT(google-runtime-int): OpenSSL's type
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

}  // namespace rwg::core
