// OpenSSL's error queue as text, for error messages and logs.
#pragma once

#include <string>

namespace rwg::core {

// The oldest error queued on this thread, as OpenSSL words it ("unknown error" when none is),
// and the queue cleared so that a later failure is not blamed on it.
std::string OpenSslError();

}  // namespace rwg::core
