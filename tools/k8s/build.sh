# shellcheck shell=bash
# tools/k8s/build.sh: the Kubernetes binaries, built from Debian's `kubernetes` source package
# and cached under $K8S_CACHE/<debian source version>/bin/. Sourced by tools/k8s/k8s.
#   k8s_build     build them unless that version is cached (one build at a time: a lock)
#   k8s_bin_dir   where the binaries of the current source version are
#
# The build runs under nice 19 / idle I/O class; about 20 CPU-minutes, 2.7 GB of disk while it
# runs (removed afterwards unless RWG_K8S_KEEP_BUILD=1), ~400 MB kept.

k8s_cache_key() { local v; v=$(k8s_source_version); echo "${v//:/_}"; }
k8s_bin_dir() { echo "$K8S_CACHE/$(k8s_cache_key)/bin"; }

# The upstream version inside a Debian version: 1:1.20.5+really1.20.2-1 -> v1.20.2.
k8s_upstream_version() {
  local v=${1#*:}
  v=${v%-*}
  case "$v" in *+really*) v=${v##*+really} ;; esac
  v=${v%%[+~]*}
  echo "v$v"
}

k8s_build() {
  local version key dir
  version=$(k8s_source_version)
  key=${version//:/_}
  dir=$K8S_CACHE/$key
  [ -f "$dir/bin/.complete" ] && return 0
  mkdir -p "$K8S_CACHE"
  # Never two builds at once (two checkouts, or up while build runs): the second one waits
  # and then finds the first one's result.
  exec 9>"$K8S_CACHE/.build.lock"
  if ! flock -n 9; then
    say "another Kubernetes build is running; waiting for it"
    flock 9
  fi
  if [ ! -f "$dir/bin/.complete" ]; then
    k8s_build_locked "$version" "$dir"
  fi
  exec 9>&-
}

k8s_build_locked() {
  local version=$1 dir=$2 t0 work src gover
  t0=$(now)
  say "building Kubernetes from Debian source $version (about 20 CPU-minutes, under nice 19)"
  mkdir -p "$K8S_CACHE/src"
  if ! ls "$K8S_CACHE/src/kubernetes_${version#*:}.dsc" >/dev/null 2>&1; then
    k8s_source_version >/dev/null  # makes sure deb-src entries are there
    (cd "$K8S_CACHE/src" &&
     apt_get -o APT::Sandbox::User=root source -qq --download-only "kubernetes=$version") \
      >/dev/null || die "apt-get source kubernetes=$version failed"
  fi
  work=$dir/work
  src=$work/src
  rm -rf "$work" "$dir/bin.tmp"
  mkdir -p "$work"
  # (apt checked the files against the signed Sources index; dpkg-source cannot check the
  # maintainer's signature without debian-keyring and says so: its output goes to the log.)
  dpkg-source -x "$K8S_CACHE/src/kubernetes_${version#*:}.dsc" "$src" > "$dir/unpack.log" 2>&1 ||
    die "dpkg-source -x failed (log: $dir/unpack.log)"

  # The vendored modern-go/reflect2 1.0.1 crashes (SIGSEGV in json-iterator's map iteration)
  # with Debian's Go >= 1.18; Debian's reflect2 1.0.2 and the json-iterator packaged against it
  # replace the vendored copies.
  local lib
  for lib in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    [ -d "/usr/share/gocode/src/$lib" ] || die "/usr/share/gocode/src/$lib missing (Debian -dev package)"
    rm -rf "${src:?}/vendor/$lib"
    cp -rL "/usr/share/gocode/src/$lib" "$src/vendor/$lib"
  done

  # Not a git checkout: the version the binaries report comes from this file.
  gover=$(k8s_upstream_version "$version")
  local major=${gover#v} minor
  minor=${major#*.}
  minor=${minor%%.*}
  major=${major%%.*}
  cat > "$work/version.env" <<EOF
KUBE_GIT_VERSION='$gover'
KUBE_GIT_MAJOR='$major'
KUBE_GIT_MINOR='$minor'
KUBE_GIT_TREE_STATE='clean'
EOF

  local what="" b
  for b in "${K8S_BINARIES[@]}"; do what+=" cmd/$b"; done
  mkdir -p "$work/home"
  if ! (cd "$src" &&
        HOME=$work/home GOPATH=$work/gopath GOCACHE=$work/gocache GOPROXY=off \
        GOTOOLCHAIN=local CGO_ENABLED=0 KUBE_GIT_VERSION_FILE=$work/version.env \
        background make WHAT="${what# }" GOLDFLAGS="-s -w") > "$dir/build.log" 2>&1; then
    tail -20 "$dir/build.log" >&2
    die "Kubernetes build failed (log: $dir/build.log)"
  fi

  mkdir -p "$dir/bin.tmp"
  for b in "${K8S_BINARIES[@]}"; do
    install -m 755 "$src/_output/bin/$b" "$dir/bin.tmp/$b"
  done
  # The sandbox ("pause") image's program, from the same tree, linked statically so that its
  # image is that one file.
  local pause_c
  pause_c=$(find "$src/build/pause" -name pause.c | head -1)
  [ -n "$pause_c" ] || die "no pause.c in the source tree"
  background gcc -Os -static -DVERSION="$gover-rwg" -o "$dir/bin.tmp/pause" "$pause_c"
  strip "$dir/bin.tmp/pause"
  echo "$version" > "$dir/bin.tmp/.complete"
  rm -rf "${dir:?}/bin"
  mv "$dir/bin.tmp" "$dir/bin"
  [ "${RWG_K8S_KEEP_BUILD:-0}" = 1 ] || rm -rf "$work"
  say "built Kubernetes $gover in $(since "$t0")s into $dir/bin"
}
