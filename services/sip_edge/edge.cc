// The edge itself (Edge::Impl): start-up and shutdown of the two SIP stacks and their threads,
// dispatch of requests, the phones' digest challenges, bans and the kernel source filter, the
// iPBX's out-of-dialog requests relayed to phones, and the SIP thread's sweep every second.
// Around it: the instance directory and the marks of requests relayed between instances in
// instances.cc, that forwarding itself in peer_forwarding.cc, the housekeeping thread (Redis
// work of every second: advertising, gauges, bans, emergency table, orphan calls) in
// housekeeping.cc, the metrics in edge_metrics.cc, the registrations in registrar.cc and
// upstream_registrar.cc, the digest check in authenticator.cc, calls in calls.cc.
// Why it is about 1,000 lines: Edge::Impl is the host (CallHost, RegistrarHost) every unit
// above calls back into, and it owns the sofia-sip stacks whose callbacks must reach them all;
// what remains here is that glue and the request dispatch, including the requests held while
// Redis answers a device lookup (a request waits, never the SIP thread; held_request.h). A further
// split would take the dispatch (HandleRequest, HandleFromIcp, the held requests) into a unit of
// its own behind the host interface.
#include "services/sip_edge/edge.h"

#include <arpa/inet.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/tport.h>
#include <sofia-sip/tport_tag.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <fstream>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "services/core/calls.h"
#include "services/core/emergency.h"
#include "services/core/json.h"
#include "services/core/log.h"
#include "services/sip_edge/async_redis.h"
#include "services/sip_edge/authenticator.h"
#include "services/sip_edge/calls.h"
#include "services/sip_edge/connection_limit.h"
#include "services/sip_edge/edge_metrics.h"
#include "services/sip_edge/guard.h"
#include "services/sip_edge/held_request.h"
#include "services/sip_edge/housekeeping.h"
#include "services/sip_edge/in_flight.h"
#include "services/sip_edge/instances.h"
#include "services/sip_edge/loop_queue.h"
#include "services/sip_edge/media_relays.h"
#include "services/sip_edge/peer_forwarding.h"
#include "services/sip_edge/registrar.h"
#include "services/sip_edge/sip_methods.h"
#include "services/sip_edge/source_filter.h"
#include "services/sip_edge/tls_keepalive.h"
#include "services/sip_edge/upstream_registrar.h"

namespace rwg::sip_edge {

// A media relay whose heartbeat is older is not given new sessions.
constexpr absl::Duration kRelayStaleAfter = absl::Seconds(15);
// The period of the loop's lag probe (rwg_sip_edge_loop_lag_seconds).
constexpr int kLoopProbeMs = 100;

namespace {

using Side = const char*;
constexpr Side kSetSide = "set";
constexpr Side kIcpSide = "icp";
// The largest SIP message a phone may send (R-SIP size limits).
constexpr size_t kMaxPhoneMessage = 65536;

// The message limit toward the iPBX: sofia-sip reads all that a TCP socket holds at once, so
// the limit must exceed the most a socket's receive buffer grows to (net.ipv4.tcp_rmem).
size_t IcpStreamLimit() {
  size_t limit = size_t{8} << 20;
  std::ifstream f("/proc/sys/net/ipv4/tcp_rmem");
  size_t lo = 0, def = 0, max = 0;
  if (f >> lo >> def >> max) limit = std::max(limit, 2 * max);
  return std::min<size_t>(limit, UINT32_MAX);
}

// With `advertise`, the URL names that host and binds the listener's address through maddr:
// sofia-sip then writes `advertise` as the sent-by of its Via headers.
std::string SofiaUrl(const std::string& listen, const char* scheme, const char* transport,
                     const std::string& advertise = "") {
  size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (!advertise.empty()) {
    if (host.empty() || host == "*") host = "0.0.0.0";
    return absl::StrCat(scheme, ":", advertise, ":", port, ";transport=", transport,
                        ";maddr=", host);
  }
  if (host == "0.0.0.0" || host.empty()) host = "*";
  return absl::StrCat(scheme, ":", host, ":", port, ";transport=", transport);
}

std::string UrlString(su_home_t* home, const url_t* u) {
  if (u == nullptr) return "";
  char* s = url_as_string(home, u);
  std::string out = s ? s : "";
  su_free(home, s);
  return out;
}

// The Digest credentials among `au` (Authorization or Proxy-Authorization) for `realm`.
std::optional<DigestParams> CredentialsFor(const msg_auth_t* au, const std::string& realm) {
  for (; au != nullptr; au = au->au_next) {
    if (au->au_scheme == nullptr || !absl::EqualsIgnoreCase(au->au_scheme, "Digest")) continue;
    std::vector<std::string> params;
    for (int i = 0; au->au_params && au->au_params[i]; ++i) params.push_back(au->au_params[i]);
    absl::StatusOr<DigestParams> p = ParseDigestParams(params);
    if (p.ok() && p->Get("realm") == realm) return *p;
  }
  return std::nullopt;
}

std::string PeerAddress(msg_t* msg, std::string* port) {
  su_addrinfo_t* ai = msg_addrinfo(msg);
  if (ai == nullptr || ai->ai_addr == nullptr) return "";
  char buf[INET6_ADDRSTRLEN] = {};
  const sockaddr* sa = ai->ai_addr;
  uint16_t p = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
    p = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
    p = ntohs(in6->sin6_port);
  }
  if (port) *port = std::to_string(p);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Edge::Impl : public CallHost, public RegistrarHost {
  // A request from the iPBX relayed to a phone.
  struct PendingRelay {
    Impl* impl;
    nta_incoming_t* irq;
    std::string method;
  };

  Impl(EdgeOptions o, core::RedisClient& redis, core::DeviceDirectory& devices,
       GatewayConfigWatcher& config, core::Clock& clock, core::Random& rng,
       prometheus::Registry& registry)
      : options(std::move(o)),
        devices(devices),
        config(config),
        bindings(redis),
        clock(clock),
        rng(rng),
        metrics(registry),
        registry(registry),
        redis(redis),
        protection(options.protection, clock),
        banstore(redis),
        authenticator(std::make_unique<Authenticator>(
            AuthenticatorOptions{options.algorithms, options.md5_only_user_agents,
                                 options.nonce_secret, absl::Minutes(5)},
            [this](const std::string& user, core::DeviceDirectory::DeviceCallback done) {
              LookUpDevice(user, std::move(done));
            },
            protection, clock, rng)),
        instances(NewInstanceDirectory(options.instance, IcpContactHostName(), redis, clock)) {}

  EdgeOptions options;
  core::DeviceDirectory& devices;
  GatewayConfigWatcher& config;
  core::BindingStore bindings;
  core::Clock& clock;
  core::Random& rng;
  // Lines that a guesser, or Redis gone, would otherwise write for every REGISTER.
  core::log::Limiter refused_log{clock};
  core::log::Limiter lookup_log{clock};
  EdgeMetrics metrics;
  prometheus::Registry& registry;
  core::RedisClient& redis;
  Protection protection;
  core::BanStore banstore;
  std::unique_ptr<Authenticator> authenticator;  // phones' digest credentials
  std::unique_ptr<InstanceDirectory> instances;  // this instance and the others, in Redis

  std::thread thread;
  std::atomic<bool> stop{false};
  su_home_t home[1] = {};
  sip_supported_t* supported = nullptr;  // option tags phones may require (from home)
  su_root_t* root = nullptr;
  nta_agent_t* set_agent = nullptr;  // phones
  nta_agent_t* icp_agent = nullptr;  // the iPBX and the other instances
  nta_leg_t* set_leg = nullptr;
  nta_leg_t* icp_leg = nullptr;
  su_timer_t* sweeper = nullptr;
  // The loop's lag probe: a one-shot timer re-armed each time, due kLoopProbeMs after it was set.
  // Timed by the monotonic clock, not the injected one: the lag is real elapsed time (a wall
  // clock stepped by NTP, or a test's manual clock, would show as lag or hide it).
  su_timer_t* probe = nullptr;
  std::chrono::steady_clock::time_point probe_due;
  InFlight<PendingRelay> relays_in_flight;
  std::unique_ptr<PeerForwarder> peers;         // requests for phones other instances hold
  std::unique_ptr<SourceFilter> source_filter;  // on the set-side listeners
  std::unique_ptr<AsyncRedis> async_redis;      // Redis on the SIP thread's loop
  std::unique_ptr<LoopQueue> loop_queue;        // other threads' results to the SIP thread
  std::thread events_thread;                    // the media relays' events (Redis pub/sub)
  absl::Mutex events_mu;
  LoopQueue* events_queue ABSL_GUARDED_BY(events_mu) = nullptr;
  std::unique_ptr<MediaRelays> relays;
  std::unique_ptr<Calls> calls;
  std::unique_ptr<UpstreamRegistrar> upstream_registrar;  // registrations toward the iPBX
  std::unique_ptr<Registrar> registrar;                   // the phones' registrations
  std::deque<core::Ban> recent_bans;         // imposed here in the last seconds (bounded)
  std::set<std::string> refreshing_devices;  // PhoneOf's device reads under way
  // The Redis work of every second, on a thread of its own (from Edge::Start to Edge::Stop).
  std::unique_ptr<Housekeeping> housekeeping;

  // -- lifecycle (SIP thread) ------------------------------------------------------------------

  // A transaction agent whose first transport is `url` (listening when `server`).
  nta_agent_t* CreateAgent(const std::string& url, bool tls, size_t max_message,
                           bool server = true) {
    return nta_agent_create(
        root, URL_STRING_MAKE(url.c_str()), nullptr, nullptr,
        NTATAG_SIP_T1X64(options.upstream_timeout_ms), NTATAG_UA(1), NTATAG_SERVER_RPORT(1),
        NTATAG_MAXSIZE(max_message), TPTAG_PONG2PING(1), TPTAG_SERVER(server),
        TAG_IF(tls, TPTAG_CERTIFICATE(options.tls_cert_dir.c_str())), TAG_END());
  }

  bool AddTport(nta_agent_t* a, const std::string& url, bool tls, bool server) {
    // As a TLS client (toward the iPBX) the peer's certificate must chain to cafile.pem and
    // name the host rwg connects to, unless the administrator turned that off.
    const unsigned verify =
        server || options.icp_tls_insecure ? TPTLS_VERIFY_NONE : TPTLS_VERIFY_SUBJECTS_OUT;
    return nta_agent_add_tport(a, URL_STRING_MAKE(url.c_str()), TPTAG_PONG2PING(1),
                               TPTAG_SERVER(server),
                               TAG_IF(tls, TPTAG_CERTIFICATE(options.tls_cert_dir.c_str())),
                               TAG_IF(tls, TPTAG_TLS_VERIFY_POLICY(verify)),
                               TAG_IF(tls, TPTAG_TLS_VERIFY_DEPTH(8)), TAG_END()) == 0;
  }

  absl::Status Setup() {
    su_init();
    su_home_init(home);
    root = su_root_create(nullptr);
    if (root == nullptr) return absl::InternalError("cannot create the SIP event loop");
    async_redis = std::make_unique<AsyncRedis>(root, redis.options(), clock);
    // Phones and the iPBX are served by two transaction agents: each side has its own
    // connections and its own limits. A phone's message may be at most kMaxPhoneMessage
    // bytes; the iPBX's connections carry the traffic of every phone, and sofia-sip reads
    // everything a TCP socket holds in one go, so their limit is above what a socket can
    // hold (a backlog must never read as one oversized message and close the iPBX's link).
    std::vector<std::pair<std::string, bool>> set_urls;  // url, is tls
    if (!options.tcp_listen.empty()) {
      set_urls.emplace_back(SofiaUrl(options.tcp_listen, "sip", "tcp", options.set_advertise_host),
                            false);
    }
    if (!options.tls_listen.empty()) {
      set_urls.emplace_back(SofiaUrl(options.tls_listen, "sips", "tls", options.set_advertise_host),
                            true);
    }
    if (!options.udp_listen.empty()) {
      set_urls.emplace_back(SofiaUrl(options.udp_listen, "sip", "udp", options.set_advertise_host),
                            false);
    }
    if (set_urls.empty()) {
      return absl::InvalidArgumentError("no SIP listener for phones configured");
    }
    set_agent = CreateAgent(set_urls[0].first, set_urls[0].second, kMaxPhoneMessage);
    if (set_agent == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", set_urls[0].first));
    }
    for (size_t i = 1; i < set_urls.size(); ++i) {
      if (!AddTport(set_agent, set_urls[i].first, set_urls[i].second, true)) {
        return absl::UnavailableError(absl::StrCat("cannot listen on ", set_urls[i].first));
      }
    }
    // Toward the iPBX: the listener for its requests (or, without one, a TCP client), and a
    // TLS client for an iPBX that takes TLS.
    const std::string icp_url = options.icp_listen.empty()
                                    ? std::string("sip:*:*;transport=tcp")
                                    : SofiaUrl(options.icp_listen, "sip", "tcp");
    icp_agent = CreateAgent(icp_url, false, IcpStreamLimit(), !options.icp_listen.empty());
    if (icp_agent == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", icp_url));
    }
    if (!options.tls_cert_dir.empty() &&
        !AddTport(icp_agent, "sips:*:*;transport=tls", true, false)) {
      return absl::InternalError("cannot set up TLS toward the iPBX");
    }
    peers = std::make_unique<PeerForwarder>(options.instance, options.forward_key, icp_agent,
                                            *async_redis, *instances, clock, metrics.responses);
    upstream_registrar = std::make_unique<UpstreamRegistrar>(
        icp_agent, config, IcpContactHostName(), clock, rng, metrics.upstream_latency,
        metrics.upstream_registrations);
    registrar = std::make_unique<Registrar>(
        RegistrarOptions{options.instance, options.min_expires, options.max_expires,
                         options.default_expires, options.upstream_timeout_ms,
                         options.upstream_expires},
        *this, *upstream_registrar, *async_redis, devices, config, clock, IcpContactHostName(),
        metrics.licence_refusals, metrics.upstream_refreshes);
    set_leg =
        nta_leg_tcreate(set_agent, &Impl::OnSetRequest, reinterpret_cast<nta_leg_magic_t*>(this),
                        NTATAG_NO_DIALOG(1), TAG_END());
    icp_leg =
        nta_leg_tcreate(icp_agent, &Impl::OnIcpRequest, reinterpret_cast<nta_leg_magic_t*>(this),
                        NTATAG_NO_DIALOG(1), TAG_END());
    if (set_leg == nullptr || icp_leg == nullptr) {
      return absl::InternalError("cannot create the default SIP leg");
    }
    std::vector<std::string> urls;
    urls.reserve(set_urls.size() + 1);
    for (const auto& u : set_urls) urls.push_back(u.first);
    if (!options.icp_listen.empty()) urls.push_back(icp_url);
    sweeper = su_timer_create(su_root_task(root), 1000);
    su_timer_set_for_ever(sweeper, &Impl::OnSweep, reinterpret_cast<su_timer_arg_t*>(this));
    probe = su_timer_create(su_root_task(root), kLoopProbeMs);
    for (const auto& u : urls) core::log::Info("SIP listening", {{"url", u}});
    if (!options.tls_listen.empty() && !TlsKeepaliveActive()) {
      core::log::Warn("RFC 5626 pings over TLS go unanswered: the TLS hooks are not bound");
    }
    if (!options.tls_listen.empty() && !TlsReadBuffersShared()) {
      core::log::Warn(
          "each TLS connection keeps a 16 KiB read buffer while idle: the TLS read hooks are "
          "not bound");
    }
    std::vector<int> ports, udp_ports;
    for (const std::string* l : {&options.tls_listen, &options.tcp_listen, &options.udp_listen}) {
      int port = 0;
      if (l->empty() || !absl::SimpleAtoi(l->substr(l->rfind(':') + 1), &port)) continue;
      (l == &options.udp_listen ? udp_ports : ports).push_back(port);
    }
    std::vector<int> fds = SourceFilter::FindListeners(ports);
    SetConnectionLimit(fds, static_cast<size_t>(std::max(0, options.max_connections_per_source)),
                       &metrics.connection_limit);
    if (options.max_connections_per_source > 0 && !ConnectionLimitActive()) {
      core::log::Warn("connections per source are not limited: accept() is not bound here");
    }
    if (options.tcp_keepalive_seconds > 0) {
      // Phones' connections inherit these from the listening sockets.
      for (int fd : fds) {
        if (absl::Status s = SetDeadPeerDetection(fd, options.tcp_keepalive_seconds); !s.ok()) {
          core::log::Warn("cannot set TCP keep-alive", {{"error", std::string(s.message())}});
        }
      }
    }
    for (int fd : SourceFilter::FindDatagramSockets(udp_ports)) fds.push_back(fd);
    source_filter = std::make_unique<SourceFilter>(fds);
    if (source_filter->fds().size() < ports.size() + udp_ports.size()) {
      core::log::Warn("banned sources are checked after parsing only: listening sockets not found");
    }
    loop_queue = std::make_unique<LoopQueue>(root);
    if (!loop_queue->ok()) return absl::InternalError("cannot watch the SIP thread's queue");
    relays = NewMediaRelays(
        MediaRelaysOptions{options.relay_token, options.relay_ca_file, options.relay_plaintext,
                           absl::Seconds(2), kRelayStaleAfter},
        *async_redis, *loop_queue, clock);
    CallOptions call_options;
    call_options.set_suite = options.set_srtp_suite;
    call_options.max_calls_per_device = options.max_calls_per_device;
    call_options.max_subscriptions_per_device = options.max_subscriptions_per_device;
    calls = std::make_unique<Calls>(call_options, *this, set_agent, icp_agent, *relays, clock, rng,
                                    registry);
    {
      absl::MutexLock lock(&events_mu);
      events_queue = loop_queue.get();
    }
    if (absl::Status s = instances->Advertise(); !s.ok()) {
      // The housekeeping advertises this instance again every second.
      core::log::Warn("cannot advertise this instance", {{"error", std::string(s.message())}});
    }
    ArmProbe();  // last: the set-up above is not the loop's lag
    return absl::OkStatus();
  }

  // Events for calls, on Redis pub/sub: the media relays publish "idle <session>" on
  // rwg:relay:events when a session's media stops; control publishes "hangup <call>" on
  // rwg:edge:events (rwgctl call hangup). Each is handled on the SIP thread.
  void CallEvents() {
    bool warned = false;
    while (!stop.load()) {
      absl::Status s = redis.Subscribe(
          {core::kRelayEventsChannel, core::kEdgeEventsChannel}, [this] { return stop.load(); },
          [this](const std::string&, const std::string& m) {
            absl::string_view v = m;
            std::function<void()> work;
            if (absl::ConsumePrefix(&v, "idle ")) {
              work = [this, session = std::string(v)] {
                if (calls) calls->OnMediaIdle(session);
              };
            } else if (absl::ConsumePrefix(&v, "hangup ")) {
              work = [this, id = std::string(v)] {
                if (calls) calls->HangupById(id);
              };
            } else {
              return;
            }
            PostToSipThread(std::move(work));
          });
      if (!s.ok() && !warned) {
        core::log::Warn("cannot follow call events", {{"error", std::string(s.message())}});
      }
      warned = !s.ok();
      for (int i = 0; i < 10 && !stop.load() && !s.ok(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  // Runs `work` on the SIP thread (dropped once it is going away).
  void PostToSipThread(std::function<void()> work) {
    absl::MutexLock lock(&events_mu);
    if (events_queue != nullptr) events_queue->Post(std::move(work));
  }

  void StartHousekeeping() {
    housekeeping = sip_edge::StartHousekeeping(
        HousekeepingOptions{options.instance, absl::Seconds(1), kRelayStaleAfter}, redis, devices,
        config, bindings, banstore, *instances, clock,
        HousekeepingGauges{metrics.redis_up, metrics.licences, metrics.registered,
                           metrics.usable_relays},
        // A call of a dead instance this one took over: ended on the SIP thread.
        [this](core::CallRecord record) {
          PostToSipThread([this, record = std::move(record)] {
            if (calls) calls->EndOrphan(record);
          });
        });
  }

  // -- CallHost ------------------------------------------------------------------------------

  std::optional<CallPhone> PhoneOnConnection(tport_t* tport, const std::string& set_username,
                                             const std::string& source) override {
    const LocalBinding* held = registrar->Find(set_username);
    if (held == nullptr || !held->reachable || held->contacts.empty()) return std::nullopt;
    const LocalBinding& b = *held;
    if (b.tport != tport) return std::nullopt;
    // UDP: one socket for every phone; the phone is known by its source.
    if (!b.route.empty() && b.route != UdpRoute(source)) return std::nullopt;
    return PhoneOf(b, set_username);
  }

  std::optional<CallPhone> PhoneForIcpUser(const std::string& icp_username) override {
    std::optional<std::string> user = registrar->SetUsernameOf(icp_username);
    if (!user || !PhoneConnection(*user)) return std::nullopt;
    return PhoneOf(*registrar->Find(*user), *user);
  }

  std::optional<std::pair<tport_t*, std::string>> PhoneConnection(
      const std::string& set_username) override {
    const LocalBinding* b = registrar->Find(set_username);
    if (b == nullptr || !b->reachable || b->contacts.empty() || b->tport == nullptr) {
      return std::nullopt;
    }
    return std::make_pair(b->tport, b->route);
  }

  // The phone's device as cached; on a miss (control changed a device since) the copy its
  // binding keeps, while the device is read again without blocking (and a device control
  // removed no longer makes calls once that read answers).
  std::optional<CallPhone> PhoneOf(const LocalBinding& b, const std::string& set_username) {
    std::optional<core::DeviceSecrets> dev = devices.Cached(set_username);
    if (!dev) {
      RefreshBindingDevice(set_username);
      if (b.device_removed) return std::nullopt;
      dev = b.device;
    }
    return CallPhone{*std::move(dev), b.tport, b.contacts[0], b.route};
  }

  void RefreshBindingDevice(const std::string& set_username) {
    if (!refreshing_devices.insert(set_username).second) return;  // a read is under way
    LookUpDevice(set_username, [this, set_username](
                                   const absl::StatusOr<std::optional<core::DeviceSecrets>>& dev) {
      refreshing_devices.erase(set_username);
      if (dev.ok() && registrar) registrar->UpdateDevice(set_username, *dev);
    });
  }

  // A device by set-side username without blocking the SIP thread: from the cache at once,
  // or once the SIP thread's Redis connection answers.
  void LookUpDevice(const std::string& user, core::DeviceDirectory::DeviceCallback done) {
    if (!async_redis) {
      return done(absl::UnavailableError("sip-edge is stopping: no Redis connection"));
    }
    devices.BySetUsername(user, *async_redis, std::move(done));
  }

  std::shared_ptr<const GatewayView> Config() override { return config.Get(); }
  std::string IcpContactHost() override { return IcpContactHostName(); }

  std::string SetContact(tport_t* tport) override {
    const bool tls = tport_has_tls(tport);
    const bool udp = tport_is_udp(tport);
    const std::string& listen =
        tls ? options.tls_listen : (udp ? options.udp_listen : options.tcp_listen);
    const std::string port = listen.substr(listen.rfind(':') + 1);
    return absl::StrCat("<sip:", config.Get()->public_name, ":", port,
                        ";transport=", tls ? "tls" : (udp ? "udp" : "tcp"), ">");
  }

  // The emergency table as last read (none before the first read).
  std::shared_ptr<const std::vector<core::EmergencyRoute>> EmergencyRoutes() {
    return housekeeping ? housekeeping->EmergencyRoutes() : nullptr;
  }

  std::optional<core::EmergencyRoute> Emergency(const std::string& location,
                                                const std::string& number) override {
    auto routes = EmergencyRoutes();
    if (!routes) return std::nullopt;
    return core::ResolveEmergency(*routes, location, number);
  }

  bool IsEmergencyNumber(const std::string& number) override {
    auto routes = EmergencyRoutes();
    if (!routes) return false;
    return std::any_of(routes->begin(), routes->end(),
                       [&](const core::EmergencyRoute& r) { return r.number == number; });
  }

  // An INVITE to a number that is special somewhere: never refused for rate reasons.
  // Whether `sip` comes over the connection (and, over UDP, from the source) a phone
  // registered through as its From user.
  bool FromRegisteredPhone(nta_incoming_t* irq, const sip_t* sip, const std::string& source) {
    const char* user =
        sip->sip_from && sip->sip_from->a_url->url_user ? sip->sip_from->a_url->url_user : nullptr;
    if (user == nullptr) return false;
    tport_t* tp = nta_incoming_transport(nullptr, irq, nullptr);
    const bool registered = PhoneOnConnection(tp, user, source).has_value();
    tport_unref(tp);
    return registered;
  }

  bool IsEmergencyCall(const sip_t* sip) {
    const char* number = sip->sip_request->rq_url->url_user;
    return sip->sip_request->rq_method == sip_method_invite && number != nullptr &&
           IsEmergencyNumber(number);
  }

  // What a write of a call's record came to. A failure is logged and the call goes on: the
  // record is written again at the call's next change, an expired one is forgotten by the
  // housekeeping, and Redis down shows in rwg_sip_edge_redis_up.
  static void CallRecordWritten(const absl::StatusOr<core::RedisReply>& r) {
    if (!r.ok()) {
      core::log::Debug("call record not written", {{"error", std::string(r.status().message())}});
    }
  }

  void SaveCall(const std::string& id, const std::string& record, bool first) override {
    if (first && housekeeping) housekeeping->AddOwnCall(id);
    async_redis->Command({"SET", core::CallKey(id), record, "EX", "86400"}, &CallRecordWritten);
    if (first) async_redis->Command({"SADD", core::kCallsKey, id}, &CallRecordWritten);
  }

  void DropCall(const std::string& id) override {
    if (housekeeping) housekeeping->DropOwnCall(id);
    async_redis->Command({"DEL", core::CallKey(id), absl::StrCat(core::CallKey(id), ":end")},
                         &CallRecordWritten);
    async_redis->Command({"SREM", core::kCallsKey, id}, &CallRecordWritten);
  }

  std::string Instance() override { return options.instance; }

  void CountResponse(const char* method, int status) override {
    metrics.responses.Add({{"method", MethodLabel(method)}, {"code", std::to_string(status)}})
        .Increment();
  }

  void Teardown() {
    if (calls) calls->HangupAll("shutdown");
    calls.reset();
    relays.reset();
    {
      absl::MutexLock lock(&events_mu);
      events_queue = nullptr;
    }
    loop_queue.reset();
    if (registrar) registrar->ReleaseConnections();
    if (sweeper) su_timer_destroy(sweeper);
    if (probe) su_timer_destroy(probe);
    async_redis.reset();  // what still waits on Redis is answered 503
    if (set_leg) nta_leg_destroy(set_leg);
    if (icp_leg) nta_leg_destroy(icp_leg);
    if (set_agent) nta_agent_destroy(set_agent);
    if (icp_agent) nta_agent_destroy(icp_agent);
    // What sofia-sip dropped with the agents without calling back.
    registrar.reset();
    upstream_registrar.reset();
    relays_in_flight.Clear();
    peers.reset();
    if (root) su_root_destroy(root);
    su_home_deinit(home);
    su_deinit();
  }

  void ArmProbe() {
    probe_due = std::chrono::steady_clock::now() + std::chrono::milliseconds(kLoopProbeMs);
    su_timer_set(probe, &Impl::OnProbe, reinterpret_cast<su_timer_arg_t*>(this));
  }

  static void OnProbe(su_root_magic_t*, su_timer_t*, su_timer_arg_t* arg) {
    Guard("OnProbe", [&] {
      auto* self = reinterpret_cast<Impl*>(arg);
      const std::chrono::duration<double> late = std::chrono::steady_clock::now() - self->probe_due;
      self->metrics.loop_lag.Observe(std::max(0.0, late.count()));
      self->ArmProbe();
    });
  }

  static void OnSweep(su_root_magic_t*, su_timer_t*, su_timer_arg_t* arg) {
    Guard("OnSweep", [&] {
      auto* self = reinterpret_cast<Impl*>(arg);
      const absl::Time now = self->clock.Now();
      if (self->calls) self->calls->Sweep();
      if (self->relays) self->relays->Sweep();
      if (self->registrar) self->registrar->ExpireBindings(now);
      self->async_redis->CheckTimeouts();
      if (self->registrar) self->registrar->RefreshUpstream(now);
      if (std::optional<FreshBans> fresh =
              self->housekeeping ? self->housekeeping->TakeFreshBans() : std::nullopt) {
        MergeFreshBans(*fresh, self->protection, self->recent_bans);
      }
      self->ApplySourceFilter();
    });
  }

  void Impose(core::Ban ban) {
    ban.instance = options.instance;
    metrics.bans.Add({{"kind", ban.kind}}).Increment();
    core::log::Warn(
        "ban", {{"id", ban.id}, {"reason", ban.reason}, {"until", absl::FormatTime(ban.until)}});
    // Stored without blocking the SIP thread; the ban holds here at once either way.
    if (async_redis) {
      core::BanStore::Put(ban, *async_redis, [id = ban.id](const absl::Status& s) {
        if (!s.ok()) {
          core::log::Warn("cannot store the ban",
                          {{"id", id}, {"error", std::string(s.message())}});
        }
      });
    }
    if (recent_bans.size() >= Protection::kMaxBans) recent_bans.pop_front();  // Redis down long
    recent_bans.push_back(ban);
    if (ban.kind == "source") ApplySourceFilter();
  }

  // The kernel drops new connections from sources under a ban; the connections they had are
  // shut down.
  void ApplySourceFilter() {
    if (!source_filter || source_filter->fds().empty()) return;
    absl::StatusOr<size_t> n = source_filter->Set(protection.BannedSources());
    if (!n.ok()) {
      core::log::Warn("cannot update the source filter",
                      {{"error", std::string(n.status().message())}});
      return;
    }
    metrics.filtered_sources.Set(static_cast<double>(*n));
  }

  // Drops a request unanswered and closes the connection it came on.
  int Drop(nta_incoming_t* irq) {
    metrics.dropped_banned.Increment();
    tport_t* tp = nta_incoming_transport(nullptr, irq, nullptr);
    if (tp != nullptr) {
      if (tport_is_reliable(tp) && !tport_is_primary(tp)) tport_shutdown(tp, 2);
      tport_unref(tp);
    }
    nta_incoming_destroy(irq);
    return 0;
  }

  // -- helpers -----------------------------------------------------------------------------

  int Reply(nta_incoming_t* irq, const char* method, int status, const char* phrase, tag_type_t tag,
            tag_value_t value, ...) {
    ta_list ta;
    ta_start(ta, tag, value);
    nta_incoming_treply(irq, status, phrase, ta_tags(ta));
    ta_end(ta);
    metrics.responses.Add({{"method", MethodLabel(method)}, {"code", std::to_string(status)}})
        .Increment();
    return status;
  }

  bool FromIcp(const std::string& peer) const {
    auto view = config.Get();
    return std::find(view->icp_addresses.begin(), view->icp_addresses.end(), peer) !=
           view->icp_addresses.end();
  }

  std::string IcpContactHostName() const {
    if (!options.icp_advertise.empty()) return options.icp_advertise;
    return options.icp_listen;
  }

  // -- instances ---------------------------------------------------------------------------

  // Where another instance takes requests from the iPBX (as of the last housekeeping round).
  std::string InstanceIcpAddress(const std::string& instance) override {
    return instances->Address(instance);
  }

  // -- requests ----------------------------------------------------------------------------

  static int OnSetRequest(nta_leg_magic_t* magic, nta_leg_t*, nta_incoming_t* irq,
                          const sip_t* sip) {
    return Guard("OnSetRequest", 500, [&]() -> int {
      return reinterpret_cast<Impl*>(magic)->HandleRequest(irq, sip, false);
    });
  }

  static int OnIcpRequest(nta_leg_magic_t* magic, nta_leg_t*, nta_incoming_t* irq,
                          const sip_t* sip) {
    return Guard("OnIcpRequest", 500, [&]() -> int {
      return reinterpret_cast<Impl*>(magic)->HandleRequest(irq, sip, true);
    });
  }

  // `icp_listener`: the request came to the listener for the iPBX, which serves only the iPBX
  // and the other instances; anyone else there is refused.
  int HandleRequest(nta_incoming_t* irq, const sip_t* sip, bool icp_listener) {
    const char* method = sip->sip_request->rq_method_name;
    msg_t* msg = nta_incoming_getrequest(irq);
    std::string port;
    std::string peer = PeerAddress(msg, &port);
    msg_destroy(msg);
    // The iPBX and the other instances are recognised on the listener for the iPBX only: on
    // the phones' listeners a source with the iPBX's address is a phone like any other.
    const bool icp = icp_listener && FromIcp(peer);
    metrics.requests.Add({{"method", MethodLabel(method)}, {"side", icp ? kIcpSide : kSetSide}})
        .Increment();
    if (icp) return HandleFromIcp(irq, sip, false);  // the iPBX is never banned
    if (icp_listener && peers->ForwardedByPeer(sip)) return HandleFromIcp(irq, sip, true);
    // A registered phone's emergency call is never refused for rate reasons (R-EMERG); a
    // banned source's packets are dropped by the kernel before they get here, though. An
    // emergency INVITE from anyone else counts like any request.
    if (!IsEmergencyCall(sip) || !FromRegisteredPhone(irq, sip, absl::StrCat(peer, ":", port))) {
      if (protection.SourceBanned(peer)) return Drop(irq);
      if (std::optional<core::Ban> ban = protection.CountRequest(peer)) {
        Impose(*ban);
        return Drop(irq);
      }
    }
    if (icp_listener) return Reply(irq, method, SIP_403_FORBIDDEN, TAG_END());
    if (int st = RefuseUnsupported(irq, sip, method); st != 0) return st;
    if (Calls::IsCallMethod(sip->sip_request->rq_method) || calls->Owns(sip, true)) {
      tport_t* tp = nta_incoming_transport(nullptr, irq, nullptr);
      const int r = calls->OnPhoneRequest(irq, sip, tp, absl::StrCat(peer, ":", port));
      tport_unref(tp);
      return r;
    }
    switch (sip->sip_request->rq_method) {
      case sip_method_register:
        return HandleRegister(irq, sip, peer, absl::StrCat(peer, ":", port));
      case sip_method_options:
        if (sip->sip_request->rq_url->url_user == nullptr) {
          return Reply(irq, method, SIP_200_OK, SIPTAG_ALLOW_STR("REGISTER, OPTIONS"), TAG_END());
        }
        [[fallthrough]];
      default:
        return Reply(irq, method, 501, "Not Implemented", TAG_END());
    }
  }

  // The user agent a request names ("" for none).
  static absl::string_view UserAgent(const sip_t* sip) {
    return sip->sip_user_agent != nullptr && sip->sip_user_agent->g_string != nullptr
               ? absl::string_view(sip->sip_user_agent->g_string)
               : absl::string_view();
  }

  // Answers `irq` with a 401 (WWW-Authenticate) or a 407 (Proxy-Authenticate) challenge.
  int SendChallenge(nta_incoming_t* irq, const sip_t* sip, const std::string& realm, bool stale,
                    bool proxy) {
    const std::vector<std::string> c = authenticator->Challenges(realm, stale, UserAgent(sip));
    const std::string c1 = c.size() > 1 ? c[1] : "";
    if (proxy) {
      return Reply(irq, "INVITE", SIP_407_PROXY_AUTH_REQUIRED,
                   SIPTAG_PROXY_AUTHENTICATE_STR(c[0].c_str()),
                   TAG_IF(!c1.empty(), SIPTAG_PROXY_AUTHENTICATE_STR(c1.c_str())), TAG_END());
    }
    return Reply(irq, "REGISTER", SIP_401_UNAUTHORIZED, SIPTAG_WWW_AUTHENTICATE_STR(c[0].c_str()),
                 TAG_IF(!c1.empty(), SIPTAG_WWW_AUTHENTICATE_STR(c1.c_str())), TAG_END());
  }

  // A failed digest answer: counted, and banned past the threshold.
  void CountAuthFailure(const std::string& ip, const std::string& user) {
    metrics.auth_failures.Increment();
    if (std::optional<core::Ban> ban = authenticator->CountFailure(ip, user)) Impose(*ban);
  }

  // The emergency call of a phone that is not registered (e.g. refused a licence): it proves
  // who it is with its set-side credentials (407, Proxy-Authorization), and its device's
  // location applies (R-EMERG: never refused for licence reasons).
  std::optional<CallPhone> AuthenticateEmergencyCaller(nta_incoming_t* irq, const sip_t* sip,
                                                       tport_t* tport, const std::string& source,
                                                       int* answered) override {
    const std::string realm = config.Get()->public_name;
    const std::string ip = source.substr(0, source.rfind(':'));
    // Password guessing through emergency INVITEs meets the REGISTER's bans and counts.
    auto held = std::make_shared<HeldRequest>(irq, metrics.responses);
    std::optional<CallPhone> phone;
    authenticator->Check(
        CredentialsFor(sip->sip_proxy_authorization, realm), "INVITE", realm, ip,
        [this, irq, sip, tport, held, realm, source, &phone](const AuthResult& auth) {
          if (!held->held()) {  // at once: the caller goes on with the phone
            // `sip`, `tport` and `phone` are the caller's: used only before it returned.
            held->Resume("emergency INVITE", [&](const sip_t* /*request*/) {
              int st = 0;
              phone = EmergencyCaller(irq, sip, tport, realm, source, auth, &st);
              return st;
            });
            return;
          }
          // Later: the call starts now, over the connection the INVITE came on.
          held->Resume("emergency INVITE", [&](const sip_t* request) -> int {
            tport_t* tp = nta_incoming_transport(nullptr, irq, nullptr);
            int st = 0;
            std::optional<CallPhone> p =
                EmergencyCaller(irq, request, tp, realm, source, auth, &st);
            if (p) st = calls ? calls->NewEmergencyCall(irq, request, *p) : 503;  // 503: stopping
            tport_unref(tp);
            return st;
          });
        });
    *answered = held->Release();
    return phone;
  }

  // The emergency caller `auth` says, or nullopt with `*answered` the status answered.
  std::optional<CallPhone> EmergencyCaller(nta_incoming_t* irq, const sip_t* sip, tport_t* tport,
                                           const std::string& realm, const std::string& source,
                                           const AuthResult& auth, int* answered) {
    const std::string ip = source.substr(0, source.rfind(':'));
    switch (auth.outcome) {
      case AuthResult::Outcome::kChallenge:
        *answered = SendChallenge(irq, sip, realm, auth.stale, true);
        return std::nullopt;
      case AuthResult::Outcome::kBanned:
        *answered = Reply(irq, "INVITE", SIP_403_FORBIDDEN, TAG_END());
        return std::nullopt;
      case AuthResult::Outcome::kUnavailable:
        *answered = Reply(irq, "INVITE", 503, "Service Unavailable", TAG_END());
        return std::nullopt;
      case AuthResult::Outcome::kRefused:
      case AuthResult::Outcome::kReplayed:
        CountAuthFailure(ip, auth.user);
        core::log::Info("emergency call refused", {{"user", auth.user}, {"source", source}});
        *answered = Reply(irq, "INVITE", SIP_403_FORBIDDEN, TAG_END());
        return std::nullopt;
      case AuthResult::Outcome::kAccepted:
        break;
    }
    std::string contact;
    if (sip->sip_contact != nullptr) contact = UrlString(home, sip->sip_contact->m_url);
    std::string route;
    if (tport_is_udp(tport)) route = UdpRoute(source);
    return CallPhone{*auth.device, tport, contact, route};
  }

  // Same answer for an unknown user and a wrong password.
  int Forbidden(nta_incoming_t* irq, const std::string& ip, const std::string& user,
                const std::string& source, const char* why) override {
    CountAuthFailure(ip, user);
    core::log::Info(refused_log, "registration refused",
                    {{"user", user}, {"source", source}, {"reason", why}});
    return Reply(irq, "REGISTER", SIP_403_FORBIDDEN, TAG_END());
  }

  // A REGISTER: its device is looked up without blocking the SIP thread (at once when
  // cached); the REGISTER is answered once it is known.
  int HandleRegister(nta_incoming_t* irq, const sip_t* sip, const std::string& ip,
                     const std::string& source) {
    auto view = config.Get();
    const std::string realm = view->public_name;
    auto held = std::make_shared<HeldRequest>(irq, metrics.responses);
    authenticator->Check(CredentialsFor(sip->sip_authorization, realm), "REGISTER", realm, ip,
                         [this, irq, held, realm, ip, source](const AuthResult& auth) {
                           held->Resume("REGISTER", [&](const sip_t* request) {
                             return AnswerRegister(irq, request, auth, realm, ip, source);
                           });
                         });
    return held->Release();
  }

  int AnswerRegister(nta_incoming_t* irq, const sip_t* sip, const AuthResult& auth,
                     const std::string& realm, const std::string& ip, const std::string& source) {
    const std::string& user = auth.user;
    switch (auth.outcome) {
      case AuthResult::Outcome::kChallenge:
        return SendChallenge(irq, sip, realm, auth.stale, false);
      case AuthResult::Outcome::kBanned:
        // The same answer as a wrong password: a guesser learns nothing from the ban.
        return Reply(irq, "REGISTER", SIP_403_FORBIDDEN, TAG_END());
      case AuthResult::Outcome::kUnavailable:
        core::log::Warn(lookup_log, "device lookup failed",
                        {{"error", std::string(auth.error.message())}});
        return Reply(irq, "REGISTER", 503, "Service Unavailable", SIPTAG_RETRY_AFTER_STR("30"),
                     TAG_END());
      case AuthResult::Outcome::kRefused:
        return Forbidden(irq, ip, user, source, auth.reason);
      case AuthResult::Outcome::kReplayed:
        return SendChallenge(irq, sip, realm, true, false);
      case AuthResult::Outcome::kAccepted:
        break;
    }
    return registrar->OnRegister(irq, sip, user, *auth.device, ip, source);
  }

  // Extensions a request requires that rwg does not know: answered 420 with Unsupported;
  // returns 0 when none. Session timers pass through to the other end and 100rel is kept on
  // each side (services/sip_edge/: TimerHeaders in call_sip.cc, Answer in calls.cc, Prack in
  // forwarding.cc).
  int RefuseUnsupported(nta_incoming_t* irq, const sip_t* sip, const char* method) {
    if (supported == nullptr) supported = sip_supported_make(home, "timer, 100rel");
    const int st = nta_check_required(irq, sip, supported, TAG_END());
    if (st != 0) {
      metrics.responses.Add({{"method", MethodLabel(method)}, {"code", std::to_string(st)}})
          .Increment();
    }
    return st;
  }

  // -- requests from the iPBX ---------------------------------------------------------------

  int HandleFromIcp(nta_incoming_t* irq, const sip_t* sip, bool forwarded) {
    const char* method = sip->sip_request->rq_method_name;
    const sip_method_t m = sip->sip_request->rq_method;
    if (m == sip_method_options && sip->sip_request->rq_url->url_user == nullptr) {
      return Reply(irq, method, SIP_200_OK, TAG_END());  // the iPBX's keep-alive to rwg
    }
    // Of the requests another instance forwards, only a new call's INVITE belongs to calls.
    if ((Calls::IsCallMethod(m) || calls->Owns(sip, false)) &&
        (!forwarded || m == sip_method_invite)) {
      if (int st = RefuseUnsupported(irq, sip, method); st != 0) return st;
      return calls->OnIcpRequest(irq, sip, forwarded);
    }
    if (m != sip_method_options && m != sip_method_notify && m != sip_method_message &&
        m != sip_method_info) {
      return Reply(irq, method, 501, "Not Implemented", TAG_END());
    }
    const char* icp_user = sip->sip_request->rq_url->url_user;
    if (icp_user == nullptr) return Reply(irq, method, SIP_404_NOT_FOUND, TAG_END());
    const std::optional<std::string> user = registrar->SetUsernameOf(icp_user);
    const LocalBinding* held = user ? registrar->Find(*user) : nullptr;
    if (held == nullptr && !forwarded) return peers->Forward(irq, sip, icp_user);
    if (held == nullptr || held->contacts.empty() || !held->reachable) {
      return Reply(irq, method, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
    }
    auto view = config.Get();
    const LocalBinding& b = *held;
    // A fresh request: nothing of the iPBX's addressing reaches the phone.
    const std::string request = absl::StrCat(method, " ", b.contacts[0], " SIP/2.0");
    const char* from_user =
        sip->sip_from && sip->sip_from->a_url->url_user ? sip->sip_from->a_url->url_user : "ipbx";
    const std::string from = absl::StrCat(
        "<sip:", from_user, "@", view->public_name, ">;tag=",
        sip->sip_from && sip->sip_from->a_tag ? sip->sip_from->a_tag : core::RandomHex(rng, 6));
    const std::string to = absl::StrCat("<sip:", *user, "@", view->public_name, ">");
    const std::string call_id = absl::StrCat(
        core::Sha256Hex(sip->sip_call_id ? sip->sip_call_id->i_id : "").substr(0, 24), "@rwg");
    const std::string cseq = absl::StrCat(sip->sip_cseq ? sip->sip_cseq->cs_seq : 1, " ", method);
    msg_t* msg = nta_msg_create(set_agent, 0);
    sip_t* out = sip_object(msg);
    sip_add_tl(msg, out, SIPTAG_REQUEST_STR(request.c_str()), SIPTAG_FROM_STR(from.c_str()),
               SIPTAG_TO_STR(to.c_str()), SIPTAG_CALL_ID_STR(call_id.c_str()),
               SIPTAG_CSEQ_STR(cseq.c_str()), SIPTAG_MAX_FORWARDS_STR("70"),
               SIPTAG_EVENT(sip->sip_event), SIPTAG_SUBSCRIPTION_STATE(sip->sip_subscription_state),
               SIPTAG_CONTENT_TYPE(sip->sip_content_type), SIPTAG_PAYLOAD(sip->sip_payload),
               TAG_END());
    auto* relay = relays_in_flight.Add(this, irq, method);
    nta_outgoing_t* orq = nta_outgoing_mcreate(
        set_agent, &Impl::OnRelayResponse, reinterpret_cast<nta_outgoing_magic_t*>(relay),
        b.route.empty() ? nullptr : URL_STRING_MAKE(b.route.c_str()), msg, NTATAG_TPORT(b.tport),
        TAG_END());
    if (orq == nullptr) {
      relays_in_flight.Remove(relay);
      return Reply(irq, method, SIP_480_TEMPORARILY_UNAVAILABLE, TAG_END());
    }
    return 0;
  }

  // A new call from the iPBX for a phone another instance holds (peer_forwarding.h).
  int ProxyInvite(nta_incoming_t* irq, const sip_t* sip, const std::string& icp_user) override {
    return peers->ProxyInvite(irq, sip, icp_user);
  }

  static int OnRelayResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip) {
    return Guard("OnRelayResponse", 0, [&]() -> int {
      auto* r = reinterpret_cast<PendingRelay*>(magic);
      const int status = sip ? sip->sip_status->st_status : nta_outgoing_status(orq);
      if (status < 200) return 0;
      const char* phrase = sip && sip->sip_status->st_phrase ? sip->sip_status->st_phrase : "";
      r->impl->Reply(r->irq, r->method.c_str(), status, phrase, TAG_END());
      nta_incoming_destroy(r->irq);
      nta_outgoing_destroy(orq);
      r->impl->relays_in_flight.Remove(r);
      return 0;
    });
  }
};

// ---------------------------------------------------------------------------------------------

Edge::Edge(EdgeOptions options, core::RedisClient& redis, core::DeviceDirectory& devices,
           GatewayConfigWatcher& config, core::Clock& clock, core::Random& rng,
           prometheus::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), redis, devices, config, clock, rng,
                                   registry)) {}

Edge::~Edge() { Stop(); }

absl::Status Edge::Start() {
  std::promise<absl::Status> ready;
  std::future<absl::Status> started = ready.get_future();
  Impl* impl = impl_.get();
  impl->StartHousekeeping();
  impl->thread = std::thread([impl, &ready]() {
    absl::Status s = impl->Setup();
    const bool ok = s.ok();
    ready.set_value(s);
    while (ok && !impl->stop.load()) su_root_step(impl->root, 100);
    impl->Teardown();
  });
  absl::Status s = started.get();
  if (!s.ok()) {
    impl->thread.join();
    impl->housekeeping.reset();
    return s;
  }
  impl->events_thread = std::thread([impl]() { impl->CallEvents(); });
  return s;
}

void Edge::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->stop = true;
  if (impl_->events_thread.joinable()) impl_->events_thread.join();
  impl_->thread.join();
  impl_->housekeeping.reset();
}

}  // namespace rwg::sip_edge
