# shellcheck shell=bash
# tools/k8s/oci.sh: container images without a registry, Docker or buildah. Sourced only.
#
# An image here is one layer: a root filesystem packed as a tar, with an OCI config, manifest
# and index written by hand (tar, sha256sum, jq), then imported into the cluster's containerd
# in the namespace the kubelet uses (`ctr -n k8s.io images import`). Pods use such an image by
# its exact name with `imagePullPolicy: Never` (or IfNotPresent); avoid the tag `latest`, which
# makes the kubelet pull.
#
#   oci_image_build ROOTFS NAME:TAG [OPTION...] [-- ENTRYPOINT [ARG...]]
#       ROOTFS: a directory (packed as is, ownership and modes kept: chown in it first if the
#       image's user must own something; the directory itself is made 0755, the image's /)
#       or an existing tar of one.
#       --user USER[:GROUP]   the user the image runs as (name or number)
#       --workdir DIR         working directory (default /)
#       --env NAME=VALUE      one more environment variable (repeatable; PATH is set)
#       --cmd ARG             one more default argument (repeatable)
#       --port N[/tcp|/udp]   an exposed port, for information (repeatable)
#       --label NAME=VALUE    an image label (repeatable)
#       --archive FILE        where to write the OCI archive (default
#                             $OCI_ARCHIVE_DIR/<name>_<tag>.oci.tar)
#       --no-import           only write the archive
#     Prints the image name and its layer size. The image name should start with
#     $K8S_IMAGE_PREFIX/ (rwg.local/): a name the kubelet never pulls.
#   oci_import ARCHIVE        import an OCI archive into containerd (k8s.io namespace)
#   oci_image_exists NAME:TAG whether containerd has it
#   oci_images                list the images under $K8S_IMAGE_PREFIX/
#   oci_rootfs_init ROOTFS    a minimal root: /etc/passwd (root, nobody, rwg 10001), group,
#                             nsswitch.conf, /tmp (1777)
#   oci_rootfs_add ROOTFS FILE...
#                             copy executables into ROOTFS at the same paths, with every
#                             shared library ldd lists for them and the dynamic loader
#   oci_busybox_rootfs ROOTFS busybox-static and its applets (/bin/sh, wget, nc, httpd...)
#   oci_pause_image           build and import $K8S_PAUSE_IMAGE (the sandbox image) from the
#                             static pause built with the Kubernetes binaries
# Needs the cluster's containerd running to import (./tools/rwg k8s up starts it).

if ! declare -F k8s_bin_dir >/dev/null; then
  # shellcheck source=tools/k8s/lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  # shellcheck source=tools/k8s/deps.sh
  . "$K8S_TOOLS/deps.sh"
  # shellcheck source=tools/k8s/build.sh
  . "$K8S_TOOLS/build.sh"
fi
OCI_ARCHIVE_DIR=${OCI_ARCHIVE_DIR:-$K8S_STATE/images}

oci_ctr() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# Moves FILE into the blob store DIR/blobs/sha256 under its digest; prints "sha256:<hex> <size>".
oci_blob() {
  local dir=$1 file=$2 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mv "$file" "$dir/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}

oci_image_build() {
  [ $# -ge 2 ] || die "usage: oci_image_build ROOTFS NAME:TAG [OPTION...] [-- ENTRYPOINT...]"
  local rootfs=$1 ref=$2
  shift 2
  case "$ref" in *:*) ;; *) die "image name without a tag: $ref" ;; esac
  local user="" workdir=/ archive="" import=1
  local envs=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
  local args=() ports=() labels=() entrypoint=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --user) user=$2; shift 2 ;;
      --workdir) workdir=$2; shift 2 ;;
      --env) envs+=("$2"); shift 2 ;;
      --cmd) args+=("$2"); shift 2 ;;
      --port) ports+=("$2"); shift 2 ;;
      --label) labels+=("$2"); shift 2 ;;
      --archive) archive=$2; shift 2 ;;
      --no-import) import=0; shift ;;
      --) shift; entrypoint=("$@"); break ;;
      *) die "oci_image_build: unknown option $1" ;;
    esac
  done
  [ -e "$rootfs" ] || die "oci_image_build: no rootfs $rootfs"
  # The directory's own mode becomes that of the image's /: mktemp -d makes it 0700.
  [ -d "$rootfs" ] && chmod 755 "$rootfs"
  if [ -z "$archive" ]; then
    mkdir -p "$OCI_ARCHIVE_DIR"
    archive=$OCI_ARCHIVE_DIR/$(echo "${ref#*/}" | tr '/:' '__').oci.tar
  fi

  local tmp layer config manifest
  tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/rwg-oci.XXXXXX")
  mkdir -p "$tmp/blobs/sha256"
  # The layer: an uncompressed tar, reproducible (sorted, fixed times, numeric owners).
  if [ -d "$rootfs" ]; then
    tar --numeric-owner --sort=name --mtime=@0 --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
        -C "$rootfs" -cf "$tmp/layer.tar" .
  else
    cp "$rootfs" "$tmp/layer.tar"
  fi
  layer=$(oci_blob "$tmp" "$tmp/layer.tar")

  # jq builds the JSON from bash arrays passed as positional arguments.
  local arch
  arch=$(dpkg --print-architecture)
  jq -n --arg arch "$arch" --arg user "$user" --arg workdir "$workdir" \
        --arg diff "${layer% *}" \
        --argjson env "$(oci_json_array "${envs[@]}")" \
        --argjson cmd "$(oci_json_array "${args[@]}")" \
        --argjson entrypoint "$(oci_json_array "${entrypoint[@]}")" \
        --argjson ports "$(oci_json_array "${ports[@]}")" \
        --argjson labels "$(oci_json_array "${labels[@]}")" '
    def nonempty: if length == 0 then null else . end;
    {
      created: "1970-01-01T00:00:00Z", architecture: $arch, os: "linux",
      config: ({
        User: $user, WorkingDir: $workdir, Env: $env,
        Entrypoint: ($entrypoint | nonempty), Cmd: ($cmd | nonempty),
        ExposedPorts: ($ports | map({key: (if test("/") then . else . + "/tcp" end), value: {}})
                       | from_entries | nonempty),
        Labels: ($labels | map(capture("^(?<key>[^=]*)=(?<value>.*)$")) | from_entries | nonempty)
      } | with_entries(select(.value != null and .value != ""))),
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created: "1970-01-01T00:00:00Z", created_by: "rwg tools/k8s/oci.sh"}]
    }' > "$tmp/config.json"
  config=$(oci_blob "$tmp" "$tmp/config.json")

  jq -n --arg cd "${config% *}" --argjson cs "${config#* }" \
        --arg ld "${layer% *}" --argjson ls "${layer#* }" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]
  }' > "$tmp/manifest.json"
  manifest=$(oci_blob "$tmp" "$tmp/manifest.json")

  # containerd names the imported image after the io.containerd.image.name annotation.
  jq -n --arg md "${manifest% *}" --argjson ms "${manifest#* }" --arg ref "$ref" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md,
                 size: $ms, annotations: {"io.containerd.image.name": $ref,
                                          "org.opencontainers.image.ref.name": ($ref | sub(".*:"; ""))}}]
  }' > "$tmp/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$tmp/oci-layout"
  mkdir -p "$(dirname "$archive")"
  tar --sort=name --mtime=@0 --numeric-owner -C "$tmp" -cf "$archive.tmp" oci-layout index.json blobs
  mv "$archive.tmp" "$archive"
  rm -rf "$tmp"
  [ "$import" = 0 ] || oci_import "$archive"
  say "image $ref: layer $(( ${layer#* } / 1024 )) KiB, $archive"
}

# Prints its arguments as a JSON array of strings.
oci_json_array() {
  local a
  for a in "$@"; do printf '%s' "$a" | jq -Rs .; done | jq -sc .
}

oci_import() {
  [ -S "$CONTAINERD_SOCK" ] || die "containerd is not running ($CONTAINERD_SOCK): ./tools/rwg k8s up"
  oci_ctr images import --all-platforms "$1" >/dev/null
}

oci_image_exists() { oci_ctr images ls -q "name==$1" 2>/dev/null | grep -qx "$1"; }

oci_images() { oci_ctr images ls -q | grep "^$K8S_IMAGE_PREFIX/" || true; }

oci_rootfs_init() {
  local r=$1
  mkdir -p "$r/etc" "$r/tmp"
  chmod 1777 "$r/tmp"
  cat > "$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
rwg:x:10001:10001:rwg:/nonexistent:/usr/sbin/nologin
EOF
  cat > "$r/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
rwg:x:10001:
EOF
  echo 'hosts: files dns' > "$r/etc/nsswitch.conf"
}

oci_rootfs_add() {
  local r=$1 f lib
  shift
  for f in "$@"; do
    [ -f "$f" ] || die "oci_rootfs_add: no file $f"
    install -D -m 755 "$f" "$r$f"
    # ldd's lines: "libx.so.1 => /path (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
    # (modes kept: the dynamic loader must stay executable)
    while read -r lib; do
      [ -e "$r$lib" ] && continue
      mkdir -p "$r$(dirname "$lib")"
      cp -L --preserve=mode "$lib" "$r$lib"
    done < <(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true)
  done
}

oci_busybox_rootfs() {
  local r=$1 applet
  oci_rootfs_init "$r"
  install -D -m 755 /bin/busybox "$r/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$r/bin/$applet"
  done
}

oci_pause_image() {
  local bin tmp
  bin=$(k8s_bin_dir)/pause
  [ -x "$bin" ] || die "no pause binary at $bin: ./tools/rwg k8s build"
  tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/rwg-pause.XXXXXX")
  install -m 755 "$bin" "$tmp/pause"
  oci_image_build "$tmp" "$K8S_PAUSE_IMAGE" --user 65535:65535 -- /pause
  rm -rf "$tmp"
}
