// The expiry of the certificates a service presents, as a Prometheus gauge, so that an alert
// can warn before phones, the iPBX or the other services start refusing them.
#pragma once

#include <prometheus/registry.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rwg::core {

// The name of the gauge: rwg_certificate_expiry_timestamp_seconds{certificate}, the Unix
// time at which the certificate stops being valid (its notAfter).
inline constexpr char kCertificateExpiryMetric[] = "rwg_certificate_expiry_timestamp_seconds";

// The notAfter of the first certificate of a PEM chain (the service's own), as Unix seconds.
// InvalidArgument when the text holds no readable certificate.
absl::StatusOr<int64_t> CertificateNotAfter(std::string_view pem);

// Sets rwg_certificate_expiry_timestamp_seconds{certificate=`certificate`} from the PEM chain
// in `cert_file`. `certificate` names what the certificate serves (`grpc`, `sip_tls`,
// `https`): a short fixed word, never something read from the network. A file that cannot be
// read leaves the gauge out and is logged (the service refuses to start on it anyway).
absl::Status ExportCertificateExpiry(prometheus::Registry& registry, const std::string& certificate,
                                     const std::string& cert_file);

}  // namespace rwg::core
