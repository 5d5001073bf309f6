# shellcheck shell=bash
# tools/k8s/cluster.sh: start, stop and show the single-node cluster. Sourced by tools/k8s/k8s.
#   k8s_up       containerd -> etcd -> kube-apiserver -> controller-manager, scheduler ->
#                kubelet -> kube-proxy -> dnsmasq + dns-sync; waits for the node Ready
#   k8s_down     stops them (pods first) and undoes the host changes: pod network namespaces,
#                cni0, KUBE-*/CNI-* iptables chains, sysctls, kubelet cgroups and directories
#   k8s_status   what runs, the node
#
# Host changes are recorded in $K8S_RUN/host.orig by the first `up` and undone by `down`.

# Processes in start order; `down` stops them in reverse.
K8S_PROCESSES=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet
               kube-proxy dnsmasq dns-sync)

# Host settings the cluster changes: set by `up` (ip_forward, bridge netfilter), by the kubelet
# (overcommit, panic, keys) or by kube-proxy (route_localnet).
K8S_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet
             net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
             vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
             kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Paths outside the state directory that containerd 1.6, the kubelet and CNI insist on; removed
# by `down` when `up` found them missing.
K8S_HOST_DIRS=(/run/containerd /var/log/pods /var/log/containers /run/netns /var/lib/kubelet)

K8S_PORTS=("$K8S_API_PORT" 2379 2380 10250)

# The node's address: the one of the interface of the default route (RWG_K8S_NODE_IP overrides).
k8s_node_ip() {
  if [ -n "${RWG_K8S_NODE_IP:-}" ]; then echo "$RWG_K8S_NODE_IP"; return; fi
  local dev ip
  dev=$(ip -4 route show default | awk '{ print $5; exit }')
  [ -n "$dev" ] && ip=$(ip -4 -o addr show dev "$dev" scope global | awk '{ print $4; exit }')
  [ -n "${ip:-}" ] || ip=$(ip -4 -o addr show scope global | awk '{ print $4; exit }')
  [ -n "${ip:-}" ] || die "no IPv4 address for the node (set RWG_K8S_NODE_IP)"
  echo "${ip%/*}"
}

kubectl_() { KUBECONFIG=$KUBECONFIG_FILE "$(k8s_client_dir)/kubectl" "$@"; }

# launch NAME COMMAND...: starts a process in its own session, output to K8S_LOG/NAME.log.
launch() {
  local name=$1
  shift
  if running "$name"; then return 0; fi
  [ -f "$K8S_LOG/$name.log" ] && mv "$K8S_LOG/$name.log" "$K8S_LOG/$name.log.1"
  setsid "$@" > "$K8S_LOG/$name.log" 2>&1 < /dev/null &
  echo $! > "$(pid_file "$name")"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.5 s; on a timeout shows LOG's end.
wait_for() {
  local what=$1 seconds=$2 i
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@" >/dev/null 2>&1; then
      say "$what ready (${K8S_T0:+$(since "$K8S_T0")s})"
      return 0
    fi
    sleep 0.5
  done
  say "$what not ready after ${seconds}s"
  local log=$K8S_LOG/$what.log
  [ "$what" = node ] && log=$K8S_LOG/kubelet.log
  if [ -f "$log" ]; then
    tail -15 "$log" >&2
  fi
  die "start failed (logs in $K8S_LOG/; ./tools/rwg k8s down cleans up)"
}

# put FILE: writes standard input to FILE unless FILE already holds exactly that (kube-proxy 1.20
# exits when its configuration file is rewritten, even with the same content).
put() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else chmod 600 "$tmp"; mv "$tmp" "$1"; fi
}

port_busy() { ss -Htln "sport = :$1" | grep -q .; }

k8s_save_host() {
  local f=$K8S_RUN/host.orig k d
  [ -f "$f" ] && return 0
  {
    for k in "${K8S_SYSCTLS[@]}"; do
      [ -e "/proc/sys/${k//.//}" ] && echo "sysctl $k=$(sysctl -n "$k")"
    done
    for d in "${K8S_HOST_DIRS[@]}"; do
      [ -e "$d" ] || echo "dir $d"
    done
  } > "$f.tmp"
  mv "$f.tmp" "$f"
}

k8s_restore_host() {
  local f=$K8S_RUN/host.orig kind value
  [ -f "$f" ] || return 0
  while read -r kind value; do
    case "$kind" in
      sysctl) sysctl -qw "$value" || say "could not restore $value" ;;
      # Shared places: only what is left empty; the cluster's own: all of it.
      dir) case "$value" in
             /run/netns|/run/containerd) find "$value" -depth -type d -empty -delete 2>/dev/null ;;
             *) rm -rf "${value:?}" ;;
           esac ;;
    esac
  done < "$f"
  rm -f "$f"
}

# A CA of the cluster's own (openssl) and the API server's serving certificate for every name
# it is reached by: 127.0.0.1 and the node's address from the host, the Service address and
# kubernetes.default.svc from pods. The API server's self-made certificate has no 127.0.0.1.
k8s_pki() {
  local ip=$1 p=$K8S_PKI
  mkdir -p "$p"
  chmod 700 "$p"
  if [ ! -f "$p/ca.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=rwg-k8s-ca \
      -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
    rm -f "$p/apiserver.crt" "$p/kubelet-client.crt"
  fi
  if [ ! -f "$p/apiserver.crt" ] ||
     ! openssl x509 -in "$p/apiserver.crt" -noout -ext subjectAltName | grep -q "IP Address:$ip\b"; then
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
      -keyout "$p/apiserver.key" -out "$p/apiserver.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' \
      "IP:127.0.0.1,IP:$ip,IP:$K8S_SVC_API_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      > "$p/apiserver.ext"
    openssl x509 -req -days 3650 -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" \
      -CAcreateserial -extfile "$p/apiserver.ext" -out "$p/apiserver.crt" 2>/dev/null
  fi
  # The API server's client certificate toward the kubelet.
  if [ ! -f "$p/kubelet-client.crt" ]; then
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout "$p/kubelet-client.key" -out "$p/kubelet-client.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > "$p/client.ext"
    openssl x509 -req -days 3650 -in "$p/kubelet-client.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" \
      -CAcreateserial -extfile "$p/client.ext" -out "$p/kubelet-client.crt" 2>/dev/null
  fi
  # Service account tokens are signed with this key.
  if [ ! -f "$p/sa.key" ]; then
    openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  fi
  # Static bearer tokens: cluster-admin (system:masters) and the node (Node authorizer).
  if [ ! -f "$p/tokens.csv" ]; then
    openssl rand -hex 24 > "$p/admin.token"
    openssl rand -hex 24 > "$p/node.token"
    {
      echo "$(cat "$p/admin.token"),admin,admin,system:masters"
      echo "$(cat "$p/node.token"),system:node:$K8S_NODE,system:node:$K8S_NODE,system:nodes"
    } > "$p/tokens.csv"
  fi
}

# kubeconfig FILE TOKEN_FILE: a kubeconfig for https://127.0.0.1, the CA inline.
k8s_kubeconfig() {
  put "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rwg
  cluster:
    server: https://127.0.0.1:$K8S_API_PORT
    certificate-authority-data: $(base64 -w0 "$K8S_PKI/ca.crt")
users:
- name: rwg-$(basename "$2" .token)
  user:
    token: $(cat "$2")
contexts:
- name: rwg
  context: {cluster: rwg, user: rwg-$(basename "$2" .token)}
current-context: rwg
EOF
}

k8s_config_containerd() {
  put "$K8S_ETC/containerd.toml" <<EOF
version = 2
root = "$K8S_DATA/containerd"
state = "$K8S_RUN/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE (as on these VMs) runc cannot lower oom_score_adj below the
  # parent's (the pause container asks for -998): clamp it instead of failing.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$K8S_RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_ETC/cni"
EOF
  mkdir -p "$K8S_ETC/cni"
  put "$K8S_ETC/cni/10-rwg.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "rwg",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "ranges": [[{"subnet": "$K8S_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$K8S_DATA/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

k8s_config_node() {
  local ip=$1
  put "$K8S_ETC/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Only clients with a certificate of the cluster's CA (the API server, for logs, exec and
# port-forward) reach the kubelet's API.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$K8S_PKI/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: ["$ip"]
resolvConf: /etc/resolv.conf
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
podPidsLimit: 4096
# No CAP_SYS_RESOURCE: the kubelet cannot lower its own oom_score_adj to the default -999.
oomScoreAdj: 0
EOF
  put "$K8S_ETC/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$KUBECONFIG_FILE"}
mode: iptables
hostnameOverride: $K8S_NODE
clusterCIDR: $K8S_CLUSTER_CIDR
# No conntrack sysctl writes (the host's values stay as they are).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
EOF
}

# KUBE-RWG-DNS: port 53 of the node's address for pods and local programs only (removed by
# `down` with the other KUBE-* chains).
k8s_dns_firewall() {
  local ip=$1 proto
  iptables -N KUBE-RWG-DNS 2>/dev/null || iptables -F KUBE-RWG-DNS
  iptables -A KUBE-RWG-DNS -s "$K8S_CLUSTER_CIDR" -j RETURN
  iptables -A KUBE-RWG-DNS -m addrtype --src-type LOCAL -j RETURN
  iptables -A KUBE-RWG-DNS -j DROP
  for proto in udp tcp; do
    iptables -C INPUT -d "$ip" -p "$proto" --dport 53 -j KUBE-RWG-DNS 2>/dev/null ||
      iptables -I INPUT -d "$ip" -p "$proto" --dport 53 -j KUBE-RWG-DNS
  done
}

k8s_all_running() {
  local name
  for name in "${K8S_PROCESSES[@]}"; do
    running "$name" || return 1
  done
}

# node_ready [SINCE]: the node is Ready, by a heartbeat of the kubelet at or after SINCE
# (UTC, 2006-01-02T15:04:05Z): after a restart the node keeps its old Ready status for a while.
node_ready() {
  local status
  status=$(kubectl_ get node "$K8S_NODE" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}' 2>/dev/null) ||
    return 1
  [ "${status% *}" = True ] && [[ ! "${status#* }" < "${1:-}" ]]
}

k8s_up() {
  local t0 bin ip p
  t0=$(now)
  K8S_T0=$t0
  [ "$(id -u)" -eq 0 ] || die "the cluster needs root"
  k8s_deps
  k8s_build
  bin=$(k8s_bin_dir)
  PATH="$bin:$(k8s_client_dir):$PATH"
  export PATH

  if k8s_all_running && node_ready ""; then
    say "already running"
    k8s_usage
    return 0
  fi
  if ! running kube-apiserver && ! running etcd; then
    for p in "${K8S_PORTS[@]}"; do
      port_busy "$p" && die "port $p is in use by another program: is another cluster running?"
    done
  fi
  ip=$(k8s_node_ip)
  mkdir -p "$K8S_RUN/pid" "$K8S_LOG" "$K8S_ETC" "$K8S_DATA"
  k8s_save_host
  sysctl -qw net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 ||
    die "no net.bridge.bridge-nf-call-iptables (br_netfilter): Services would not work from pods"

  k8s_config_containerd
  launch containerd containerd --config "$K8S_ETC/containerd.toml"
  wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
  oci_image_exists "$K8S_PAUSE_IMAGE" || oci_pause_image >/dev/null

  k8s_pki "$ip"
  k8s_kubeconfig "$KUBECONFIG_FILE" "$K8S_PKI/admin.token"
  k8s_kubeconfig "$K8S_ETC/kubelet.kubeconfig" "$K8S_PKI/node.token"

  launch etcd etcd --name rwg --data-dir "$K8S_DATA/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster rwg=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --quota-backend-bytes 2147483648
  wait_for etcd 30 env ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:2379 endpoint health

  launch kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="$ip" --secure-port="$K8S_API_PORT" \
    --tls-cert-file="$K8S_PKI/apiserver.crt" --tls-private-key-file="$K8S_PKI/apiserver.key" \
    --client-ca-file="$K8S_PKI/ca.crt" \
    --token-auth-file="$K8S_PKI/tokens.csv" --anonymous-auth=false \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$K8S_PKI/sa.pub" \
    --service-account-signing-key-file="$K8S_PKI/sa.key" \
    --service-cluster-ip-range="$K8S_SVC_CIDR" --service-node-port-range=30000-32767 \
    --allow-privileged=true --kubelet-preferred-address-types=InternalIP,Hostname \
    --kubelet-client-certificate="$K8S_PKI/kubelet-client.crt" \
    --kubelet-client-key="$K8S_PKI/kubelet-client.key"
  wait_for kube-apiserver 120 kubectl_ get --raw /readyz

  launch kube-controller-manager kube-controller-manager --kubeconfig="$KUBECONFIG_FILE" \
    --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false --port=0 --bind-address=127.0.0.1 --secure-port=10257 \
    --cert-dir="$K8S_DATA/controller-manager" \
    --service-account-private-key-file="$K8S_PKI/sa.key" --root-ca-file="$K8S_PKI/ca.crt" \
    --use-service-account-credentials=false --controllers='*,-nodeipam' \
    --service-cluster-ip-range="$K8S_SVC_CIDR"
  launch kube-scheduler kube-scheduler --kubeconfig="$KUBECONFIG_FILE" \
    --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false --port=0 --bind-address=127.0.0.1 --secure-port=10259 \
    --cert-dir="$K8S_DATA/scheduler"

  k8s_config_node "$ip"
  local kubelet_start
  kubelet_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # --pod-infra-container-image is ignored with a remote runtime: containerd's sandbox_image is
  # the one used.
  launch kubelet kubelet --config="$K8S_ETC/kubelet.yaml" \
    --kubeconfig="$K8S_ETC/kubelet.kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
    --root-dir="$K8S_DATA/kubelet" --cert-dir="$K8S_DATA/kubelet/pki" \
    --hostname-override="$K8S_NODE" --node-ip="$ip" \
    --pod-infra-container-image="$K8S_PAUSE_IMAGE" --register-node=true --v=1
  launch kube-proxy kube-proxy --config="$K8S_ETC/kube-proxy.yaml"

  # Cluster DNS: dnsmasq on the node's address (the kubelet's clusterDNS) answers cluster.local
  # from the hosts file dns-sync keeps, and forwards the rest to the host's resolvers. It
  # answers pods and this host only, not the node's network.
  k8s_dns_firewall "$ip"
  mkdir -p "$K8S_RUN/dns"
  touch "$K8S_RUN/dns/hosts"
  launch dnsmasq dnsmasq --keep-in-foreground --no-hosts --addn-hosts="$K8S_RUN/dns/hosts" \
    --listen-address="$ip" --bind-interfaces --port=53 --user=root --group=root \
    --local=/cluster.local/ --domain-needed --cache-size=0 --log-facility=- --pid-file=
  launch dns-sync "$K8S_TOOLS/dns-sync" "https://127.0.0.1:$K8S_API_PORT" \
    "$K8S_PKI/admin.token" "$K8S_PKI/ca.crt" "$K8S_RUN/dns/hosts" "$(pid_file dnsmasq)"

  wait_for node 180 node_ready "$kubelet_start"
  local name
  for name in "${K8S_PROCESSES[@]}"; do
    running "$name" || { tail -5 "$K8S_LOG/$name.log" >&2; die "$name exited (log: $K8S_LOG/$name.log)"; }
  done
  k8s_smoke
  say "cluster up in $(since "$t0")s: node $K8S_NODE Ready ($ip), a pod runs"
  k8s_usage
}

# k8s_smoke: a pod on the pod network must start and answer the kubelet's TCP probe from the
# node, or up fails and says why: a Ready node alone does not prove that containerd, runc and
# the CNI plugins can run a pod, nor that the node reaches pod addresses (every readiness
# probe of the chart does that).
K8S_SMOKE_POD=rwg-smoke
K8S_SMOKE_IMAGE=$K8S_IMAGE_PREFIX/busybox:smoke
k8s_smoke_create() {
  kubectl_ apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $K8S_SMOKE_POD, namespace: default, labels: {app: $K8S_SMOKE_POD}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  # What rwg's chart asks of every pod: the runtime's seccomp profile, a non-root user, a
  # read-only root, no capability, a memory-backed emptyDir.
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: httpd
      image: "$K8S_SMOKE_IMAGE"
      imagePullPolicy: Never
      command: [/bin/httpd, -f, -p, "8080", -h, /scratch]
      readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
      volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {medium: Memory, sizeLimit: 1Mi}}]
EOF
}
k8s_smoke_ready() {
  [ "$(kubectl_ get pod -n default "$K8S_SMOKE_POD" \
        -o 'jsonpath={.status.containerStatuses[0].ready}' 2>/dev/null)" = true ]
}
k8s_smoke() {
  local i
  kubectl_ delete pod -n default "$K8S_SMOKE_POD" --ignore-not-found --grace-period=0 \
    --force >/dev/null 2>&1 || true
  if ! oci_image_exists "$K8S_SMOKE_IMAGE"; then
    local r
    r=$(mktemp -d "${TMPDIR:-/var/tmp}/rwg-smoke.XXXXXX")
    oci_busybox_rootfs "$r"
    oci_image_build "$r" "$K8S_SMOKE_IMAGE" --user 65534:65534 >/dev/null
    rm -rf "$r"
  fi
  # The namespace's default service account appears a moment after the controller manager.
  for ((i = 0; i < 60; i++)); do
    k8s_smoke_create >/dev/null 2>&1 && break
    sleep 0.5
  done
  ((i < 60)) || { k8s_smoke_create >&2 || true; die "could not create a pod"; }
  for ((i = 0; i < 180; i++)); do
    if k8s_smoke_ready; then
      kubectl_ delete pod -n default "$K8S_SMOKE_POD" --grace-period=0 --force --wait=false \
        >/dev/null 2>&1 || true
      say "pod ready (${K8S_T0:+$(since "$K8S_T0")s})"
      return 0
    fi
    sleep 0.5
  done
  say "a pod did not start, or the node could not reach it, in 90 s:"
  kubectl_ describe pod -n default "$K8S_SMOKE_POD" 2>&1 | sed -n '/^Events:/,$p' | tail -12 >&2
  local log
  for log in containerd kubelet; do
    echo "--- $K8S_LOG/$log.log (errors)" >&2
    grep -E 'level=error|^E[0-9]{4}' "$K8S_LOG/$log.log" | tail -8 | cut -c1-400 >&2
  done
  die "the cluster cannot run a pod (logs in $K8S_LOG/; ./tools/rwg k8s down cleans up)"
}

k8s_usage() {
  cat <<EOF
  kubeconfig: $KUBECONFIG_FILE
  use it:     export KUBECONFIG=$KUBECONFIG_FILE
              PATH=$(k8s_client_dir):\$PATH     (kubectl, helm)
          or: eval "\$(./tools/k8s/k8s env)"
          or: ./tools/rwg k8s kubectl get pods -A
  images:     rwg.local/NAME:TAG from tools/k8s/oci.sh, imagePullPolicy: Never
  logs:       $K8S_LOG/
  stop:       ./tools/rwg k8s down
EOF
}

k8s_env() {
  # shellcheck disable=SC2016 # $PATH is for the shell that evaluates these lines
  printf 'export KUBECONFIG=%q\nexport PATH=%q:"$PATH"\n' "$KUBECONFIG_FILE" "$(k8s_client_dir)"
}

# stop NAME: SIGTERM to the process's group, SIGKILL after 10 s.
stop() {
  local name=$1 pid i
  if ! running "$name"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  pid=$(cat "$(pid_file "$name")")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
}

# Every container and pod sandbox containerd runs for the cluster, killed and deleted. Prints
# the network namespaces of the sandboxes (bind mounts under /run/netns) to remove afterwards.
k8s_kill_pods() {
  running containerd || return 0
  local c
  for c in $(oci_ctr containers ls -q 2>/dev/null); do
    oci_ctr containers info "$c" 2>/dev/null |
      jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty'
  done | sort -u
  for c in $(oci_ctr tasks ls -q 2>/dev/null); do
    oci_ctr tasks kill -s KILL "$c" >/dev/null 2>&1 || true
  done
  sleep 1
  for c in $(oci_ctr tasks ls -q 2>/dev/null); do
    oci_ctr tasks delete -f "$c" >/dev/null 2>&1 || true
  done
  for c in $(oci_ctr containers ls -q 2>/dev/null); do
    oci_ctr containers delete "$c" >/dev/null 2>&1 || true
  done
}

# The KUBE-* chains of the kubelet and kube-proxy and the CNI-* chains of the bridge and
# portmap plugins: the jumps to them from the built-in chains, then the chains themselves.
k8s_flush_iptables() {
  local ipt table chain rule
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle; do
      "$ipt-save" -t "$table" 2>/dev/null | sed -n '/^-A [A-Z]* .*-j \(KUBE\|CNI\)-/p' |
        while read -r rule; do
          eval "$ipt -t $table -D ${rule#-A }" 2>/dev/null || true
        done
      for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

# The kubelet's pod cgroups (cgroupfs driver: /sys/fs/cgroup/<controller>/kubepods/...), empty
# once every pod is gone; the deepest first.
k8s_remove_cgroups() {
  local d
  find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -type d -name 'kubepods*' 2>/dev/null |
    awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- | while read -r d; do
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

k8s_down() {
  local t0 name netns n purge=${1:-} bin
  t0=$(now)
  [ "$(id -u)" -eq 0 ] || die "the cluster needs root"
  # The node side first, so that nothing restarts pods while they are removed.
  stop dns-sync
  stop dnsmasq
  stop kube-proxy
  stop kubelet
  netns=$(k8s_kill_pods)
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
    stop "$name"
  done
  # Shims left behind (they outlive containerd): those started for our containerd only.
  local pid
  for pid in $(pgrep -f '^[^ ]*containerd-shim-runc-v2 ' || true); do
    grep -qaF "$CONTAINERD_SOCK" "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done

  # kube-proxy's own clean-up of its rules (any cached build will do).
  bin=$(find "$K8S_CACHE" -mindepth 3 -maxdepth 3 -path '*/bin/kube-proxy' 2>/dev/null | head -1)
  if [ -n "$bin" ]; then "$bin" --cleanup >/dev/null 2>&1 || true; fi
  k8s_flush_iptables
  for n in $netns /run/netns/cni-*; do
    [ -e "$n" ] || continue
    umount "$n" 2>/dev/null || true
    rm -f "$n"
  done
  if ip link show cni0 >/dev/null 2>&1; then ip link del cni0; fi
  rm -rf "$K8S_DATA/cni-ipam"
  # Mounts left below the state directory (pod volumes, container root filesystems, shm).
  { grep -oE " ($K8S_STATE|/run/containerd)/[^ ]*" /proc/mounts || true; } | sort -r |
    while read -r n; do umount -l "$n" 2>/dev/null || true; done
  k8s_remove_cgroups
  rm -rf "$K8S_RUN/containerd" "$K8S_RUN/runc" "$K8S_RUN/dns"
  k8s_restore_host
  if [ "$purge" = --purge ]; then
    rm -rf "$K8S_DATA" "$K8S_PKI" "$K8S_ETC" "$KUBECONFIG_FILE" "${OCI_ARCHIVE_DIR:?}"
    say "cluster data deleted"
  fi
  say "stopped in $(since "$t0")s"
}

k8s_status() {
  local name any=0
  for name in "${K8S_PROCESSES[@]}"; do
    if running "$name"; then
      say "$name running (pid $(cat "$(pid_file "$name")"))"
      any=1
    else
      say "$name stopped"
    fi
  done
  if [ "$any" = 1 ] && running kube-apiserver; then
    kubectl_ get nodes -o wide 2>/dev/null || true
    kubectl_ get pods -A -o wide 2>/dev/null || true
    say "kubeconfig: $KUBECONFIG_FILE"
  fi
}
