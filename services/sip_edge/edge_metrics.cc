#include "services/sip_edge/edge_metrics.h"

#include "services/sip_edge/guard.h"
#include "services/sip_edge/tls_keepalive.h"

namespace rwg::sip_edge {

EdgeMetrics::EdgeMetrics(prometheus::Registry& r)
    : requests(prometheus::BuildCounter()
                   .Name("rwg_sip_edge_requests_total")
                   .Help("SIP requests received, by method and side")
                   .Register(r)),
      responses(prometheus::BuildCounter()
                    .Name("rwg_sip_edge_responses_total")
                    .Help("Final responses sent, by method and code")
                    .Register(r)),
      auth_failures(prometheus::BuildCounter()
                        .Name("rwg_sip_edge_auth_failures_total")
                        .Help("Digest responses that did not match (wrong password, unknown "
                              "user)")
                        .Register(r)
                        .Add({})),
      licence_refusals(prometheus::BuildCounter()
                           .Name("rwg_sip_edge_licence_refusals_total")
                           .Help("Registrations refused because every licence is in use")
                           .Register(r)
                           .Add({})),
      registered(prometheus::BuildGauge()
                     .Name("rwg_sip_edge_registered_devices")
                     .Help("Devices registered through rwg (all instances)")
                     .Register(r)
                     .Add({})),
      upstream_latency(
          prometheus::BuildHistogram()
              .Name("rwg_sip_edge_upstream_registration_seconds")
              .Help("Time from a phone's authenticated REGISTER to the iPBX's final answer")
              .Register(r)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5, 1, 2.5, 5, 10})),
      bans(prometheus::BuildCounter()
               .Name("rwg_sip_edge_bans_total")
               .Help("Bans imposed by this instance, by kind (source flood, auth failures)")
               .Register(r)),
      dropped_banned(prometheus::BuildCounter()
                         .Name("rwg_sip_edge_dropped_total")
                         .Help("Requests dropped unanswered, by reason")
                         .Register(r)
                         .Add({{"reason", "banned"}})),
      upstream_refreshes(prometheus::BuildCounter()
                             .Name("rwg_sip_edge_upstream_refreshes_total")
                             .Help("iPBX registrations refreshed by rwg itself, by result")
                             .Register(r)),
      filtered_sources(prometheus::BuildGauge()
                           .Name("rwg_sip_edge_filtered_sources")
                           .Help("Banned addresses whose connections the kernel drops")
                           .Register(r)
                           .Add({})),
      tls_keepalive(prometheus::BuildCounter()
                        .Name("rwg_sip_edge_tls_keepalive_total")
                        .Help("RFC 5626 keep-alive over TLS: pings received, pongs sent, "
                              "pings left unanswered (the connection's send side was busy)")
                        .Register(r)),
      internal_errors(prometheus::BuildCounter()
                          .Name("rwg_sip_edge_internal_errors_total")
                          .Help("Exceptions caught at the SIP stack's callbacks (each one a "
                                "request answered 500 or an event dropped); should stay 0")
                          .Register(r)
                          .Add({})),
      connection_limit(prometheus::BuildCounter()
                           .Name("rwg_sip_edge_connection_limit_refusals_total")
                           .Help("Phone connections closed at once: their source (IPv4 "
                                 "address or IPv6 /64) held the most connections allowed")
                           .Register(r)
                           .Add({})),
      upstream_registrations(
          prometheus::BuildCounter()
              .Name("rwg_sip_edge_upstream_registrations_total")
              .Help("Registrations sent to the iPBX (phones' and rwg's own refreshes), by "
                    "result: ok (2xx), refused (401/403/404/407, or a challenge rwg cannot "
                    "answer), failed (no answer, not sent, or any other status)")
              .Register(r)),
      licences(prometheus::BuildGauge()
                   .Name("rwg_sip_edge_licences")
                   .Help("Licences configured: the most phones registered at once")
                   .Register(r)
                   .Add({})),
      redis_up(prometheus::BuildGauge()
                   .Name("rwg_sip_edge_redis_up")
                   .Help("1 when Redis answered the last housekeeping round, 0 otherwise")
                   .Register(r)
                   .Add({})),
      usable_relays(prometheus::BuildGauge()
                        .Name("rwg_sip_edge_media_relays_usable")
                        .Help("Media relay instances new calls can use: heartbeat fresh, "
                              "open, ports left")
                        .Register(r)
                        .Add({})),
      loop_lag(prometheus::BuildHistogram()
                   .Name("rwg_sip_edge_loop_lag_seconds")
                   .Help("How late the SIP thread ran a timer due every 100 ms: the time any "
                         "SIP message waited for the thread then")
                   .Register(r)
                   .Add({}, prometheus::Histogram::BucketBoundaries{
                                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})) {
  SetGuardCounter(&internal_errors);
  // Every series an alert or a dashboard reads exists from the start, at 0.
  for (const char* kind : {"source", "auth"}) bans.Add({{"kind", kind}});
  for (const char* result : {"ok", "failed"}) upstream_refreshes.Add({{"result", result}});
  for (const char* result : {"ok", "refused", "failed"}) {
    upstream_registrations.Add({{"result", result}});
  }
  SetTlsKeepaliveCounters({&tls_keepalive.Add({{"event", "ping"}}),
                           &tls_keepalive.Add({{"event", "pong"}}),
                           &tls_keepalive.Add({{"event", "unanswered"}})});
}

EdgeMetrics::~EdgeMetrics() { SetTlsKeepaliveCounters({}); }

}  // namespace rwg::sip_edge
