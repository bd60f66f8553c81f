#!/usr/bin/env bash
# Checks the OCI archive `make image` wrote: reads every layer with GNU tar and Python's tarfile
# (readers other than umoci, which wrote it), unpacks it with umoci, runs `extdns version` and
# `extdns crdgen` inside its rootfs (chroot, as the image's user), and checks that the image
# runs as the non-root uid config/manager/deployment.yaml sets in runAsUser.
#
#   bash image/test.sh [ARCHIVE]      (default target/extdns-image.tar; make image-test)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARCHIVE=${1:-$ROOT/target/extdns-image.tar}
fail() { echo "image/test.sh: FAIL: $*" >&2; exit 1; }
[ -f "$ARCHIVE" ] || fail "no image archive at $ARCHIVE (make image)"
WORK=$(mktemp -d "$ROOT/target/image-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/layout"
tar -C "$WORK/layout" -xf "$ARCHIVE"

tag=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$WORK/layout/index.json")
name=$(jq -r '.manifests[0].annotations["io.containerd.image.name"]' "$WORK/layout/index.json")
[ "$tag" != null ] || fail "index.json names no tag"
[ "$name" != null ] || fail "index.json names no image for containerd"
blob() { echo "$WORK/layout/blobs/${1%%:*}/${1#*:}"; }
manifest=$(blob "$(jq -r '.manifests[0].digest' "$WORK/layout/index.json")")
config=$(blob "$(jq -r '.config.digest' "$manifest")")
# Every blob is what its digest says.
for d in $(jq -r '.manifests[].digest' "$WORK/layout/index.json") $(jq -r '.config.digest, .layers[].digest' "$manifest"); do
    [ "sha256:$(sha256sum "$(blob "$d")" | cut -d' ' -f1)" = "$d" ] || fail "blob $d does not match its digest"
done

# Every layer is a complete tar archive for readers other than the one that wrote it (umoci's
# Go reader tolerates a truncated one): GNU tar must list and extract it with exit status 0,
# Python's tarfile must read every member, and the binary they extract must be the one umoci
# unpacks below.
layers=$(jq -r '.layers[].digest' "$manifest")
[ -n "$layers" ] || fail "the manifest lists no layer"
i=0
for d in $layers; do
    i=$((i + 1))
    zcat "$(blob "$d")" >"$WORK/layer$i.tar" || fail "layer $d is not gzip data"
    tar -tf "$WORK/layer$i.tar" >/dev/null || fail "GNU tar cannot list layer $d (exit status $?)"
    mkdir "$WORK/gnutar$i"
    tar -C "$WORK/gnutar$i" --no-same-owner -xf "$WORK/layer$i.tar" || fail "GNU tar cannot extract layer $d"
    python3 - "$WORK/layer$i.tar" <<'PY' || fail "Python's tarfile cannot read layer $d"
import sys, tarfile
with tarfile.open(sys.argv[1], mode="r:") as t:
    members = t.getmembers()
    for m in members:
        if m.isfile():
            data = t.extractfile(m).read()
            if len(data) != m.size:
                sys.exit("%s: %d bytes stored, %d read" % (m.name, m.size, len(data)))
    print("image/test.sh: Python's tarfile reads %d members of %s" % (len(members), sys.argv[1].rsplit("/", 1)[-1]))
PY
    rm -f "$WORK/layer$i.tar"
done

want_uid=$(sed -n 's/^ *runAsUser: *\([0-9]*\).*/\1/p' "$ROOT/config/manager/deployment.yaml" | head -1)
[ -n "$want_uid" ] || fail "config/manager/deployment.yaml sets no runAsUser"
user=$(jq -r '.config.User' "$config")
[ "${user%%:*}" = "$want_uid" ] || fail "image User is '$user', the Deployment runs as uid $want_uid"
[ "$want_uid" != 0 ] || fail "the Deployment runs as root"
entrypoint=$(jq -r '.config.Entrypoint[0]' "$config")

rootless=()
[ "$(id -u)" -eq 0 ] || rootless=(--rootless)
umoci unpack "${rootless[@]}" --image "$WORK/layout:$tag" "$WORK/bundle" >/dev/null
rootfs=$WORK/bundle/rootfs
cmp -s "$rootfs$entrypoint" "$WORK/gnutar1$entrypoint" || fail "GNU tar extracts another $entrypoint than umoci unpacks"
grep -q "^[^:]*:x:$want_uid:" "$rootfs/etc/passwd" || fail "/etc/passwd in the image has no user with uid $want_uid"
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA certificates in the image"
# The runtime config umoci derives from the image config runs the process as that uid.
[ "$(jq -r '.process.user.uid' "$WORK/bundle/config.json")" = "$want_uid" ] || fail "runtime config does not run as uid $want_uid"

# Inside the rootfs only: a library missing from the image fails here, not in a cluster.
run() {
    if [ "$(id -u)" -eq 0 ]; then
        chroot --userspec="$user" "$rootfs" "$entrypoint" "$@"
    else
        unshare --map-root-user chroot "$rootfs" "$entrypoint" "$@"
    fi
}
version=$(run version) || fail "extdns version failed inside the image"
echo "image/test.sh: inside the image: $version"
run crdgen >"$WORK/crds.yaml" || fail "extdns crdgen failed inside the image"
cmp -s "$WORK/crds.yaml" "$ROOT/crds/extdns.io.yaml" || fail "crdgen inside the image differs from crds/extdns.io.yaml"
echo "image/test.sh: ok: $name runs as uid $want_uid; version and crdgen run inside it"
