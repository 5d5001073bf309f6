// The SIP edge's metrics (rwg_sip_edge_*), registered once per Edge.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace rwg::sip_edge {

struct EdgeMetrics {
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Counter>& responses;
  prometheus::Counter& auth_failures;
  prometheus::Counter& licence_refusals;
  prometheus::Gauge& registered;
  prometheus::Histogram& upstream_latency;
  prometheus::Family<prometheus::Counter>& bans;
  prometheus::Counter& dropped_banned;
  prometheus::Family<prometheus::Counter>& upstream_refreshes;
  prometheus::Gauge& filtered_sources;
  prometheus::Family<prometheus::Counter>& tls_keepalive;
  prometheus::Counter& internal_errors;
  prometheus::Counter& connection_limit;
  prometheus::Family<prometheus::Counter>& upstream_registrations;
  prometheus::Gauge& licences;
  prometheus::Gauge& redis_up;
  prometheus::Gauge& usable_relays;
  // How late the SIP thread runs a timer due every 100 ms: what any message waited then.
  prometheus::Histogram& loop_lag;

  explicit EdgeMetrics(prometheus::Registry& r);
  ~EdgeMetrics();
  EdgeMetrics(const EdgeMetrics&) = delete;
  EdgeMetrics& operator=(const EdgeMetrics&) = delete;
};

}  // namespace rwg::sip_edge
