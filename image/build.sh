#!/usr/bin/env bash
# Builds the extdns OCI image from a built binary, offline: no registry, no container engine.
#
#   bash image/build.sh BINARY ARCHIVE [IMAGE_NAME]      (make image does this)
#
# 1. stages target/image/rootfs: the binary (debug info stripped), the shared libraries
#    `ldd` lists for it at the paths it lists, CA certificates, /etc/passwd and /etc/group
#    with the non-root user of the Containerfile's USER;
# 2. umoci writes an OCI layout with that rootfs as its one layer and USER, ENTRYPOINT and
#    CMD from the Containerfile; the layer is then written again with GNU tar (umoci's is
#    not a complete tar archive) and the manifest re-pointed at it;
# 3. the layout is tarred into ARCHIVE, an OCI archive that `skopeo copy oci-archive:...`,
#    `ctr images import` and `kind load image-archive` read. Its index names the image
#    IMAGE_NAME (default docker.io/library/extdns:latest, what `image: extdns:latest` means).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:?usage: build.sh BINARY ARCHIVE [IMAGE_NAME]}
ARCHIVE=${2:?usage: build.sh BINARY ARCHIVE [IMAGE_NAME]}
NAME=${3:-docker.io/library/extdns:latest}
TAG=${NAME##*:}
WORK=$ROOT/target/image
ROOTFS=$WORK/rootfs
LAYOUT=$WORK/oci
CONTAINERFILE=$ROOT/Containerfile
die() { echo "image/build.sh: $*" >&2; exit 1; }
for tool in umoci jq ldd objcopy tar gzip sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (bash e2e/install-tools.sh installs it)"
done
[ -x "$BIN" ] || die "no binary at $BIN (build it first)"

# USER, ENTRYPOINT and CMD come from the Containerfile, so both ways build the same image.
directive() { sed -n "s/^$1 //p" "$CONTAINERFILE" | tail -1; }
USER_SPEC=$(directive USER)
ENTRYPOINT=$(directive ENTRYPOINT)
CMD=$(directive CMD)
[ -n "$USER_SPEC" ] && [ -n "$ENTRYPOINT" ] || die "Containerfile lacks USER or ENTRYPOINT"
UID_=${USER_SPEC%%:*}
GID_=${USER_SPEC##*:}
[ "$UID_" -gt 0 ] 2>/dev/null || die "Containerfile USER must be a non-root numeric uid, got $USER_SPEC"

rm -rf "$ROOTFS" "$LAYOUT"
mkdir -p "$ROOTFS"/{usr/local/bin,etc/ssl/certs,tmp}
chmod 1777 "$ROOTFS/tmp"
# Debug info is half a gigabyte in a debug build and nothing at run time.
objcopy --strip-debug "$BIN" "$ROOTFS/usr/local/bin/extdns"
chmod 0755 "$ROOTFS/usr/local/bin/extdns"
# Every library the dynamic loader resolves for the binary, and the loader itself.
ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nextdns:x:%s:%s:extdns:/nonexistent:/sbin/nologin\n' "$UID_" "$GID_" >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nextdns:x:%s:\n' "$GID_" >"$ROOTFS/etc/group"
printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"

rootless=()
[ "$(id -u)" -eq 0 ] || rootless=(--rootless)
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$TAG"
umoci insert "${rootless[@]}" --image "$LAYOUT:$TAG" "$ROOTFS" /
config=(--image "$LAYOUT:$TAG" --os linux --architecture amd64 --config.user "$USER_SPEC"
    --config.env PATH=/usr/local/bin --config.workingdir /)
while read -r arg; do config+=(--config.entrypoint "$arg"); done < <(jq -r '.[]' <<<"$ENTRYPOINT")
[ -z "$CMD" ] || while read -r arg; do config+=(--config.cmd "$arg"); done < <(jq -r '.[]' <<<"$CMD")
umoci config "${config[@]}"
umoci gc --layout "$LAYOUT"

# umoci 0.4.7's layer tar stops right after the last file's last byte: no padding to a
# 512-byte block and no end-of-archive blocks. Go's reader (containerd) tolerates that, GNU
# tar and Python's tarfile do not. The layer is written again by GNU tar from the same rootfs
# (a complete archive every reader takes), and the config, manifest and index are re-pointed
# at it with their digests.
blob_path() { echo "$LAYOUT/blobs/${1%%:*}/${1#*:}"; }
put_blob() { # FILE -> prints its digest after storing it as a blob
    local d
    d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
    mv "$1" "$(blob_path "$d")"
    echo "$d"
}
manifest_digest=$(jq -r '.manifests[0].digest' "$LAYOUT/index.json")
manifest=$(blob_path "$manifest_digest")
[ "$(jq '.layers | length' "$manifest")" = 1 ] || die "expected one layer in the umoci manifest"
layer_tar=$WORK/layer.tar
tar -C "$ROOTFS" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$layer_tar" .
tar -tf "$layer_tar" >/dev/null || die "GNU tar cannot read back the layer it wrote"
diff_id="sha256:$(sha256sum "$layer_tar" | cut -d' ' -f1)"
gzip -n -9 -c "$layer_tar" >"$WORK/layer.tar.gz"
rm -f "$layer_tar"
layer_size=$(stat -c %s "$WORK/layer.tar.gz")
layer_digest=$(put_blob "$WORK/layer.tar.gz")
config_digest=$(jq -r '.config.digest' "$manifest")
jq -c --arg id "$diff_id" '.rootfs.diff_ids = [$id]' "$(blob_path "$config_digest")" >"$WORK/config.json"
config_size=$(stat -c %s "$WORK/config.json")
config_digest=$(put_blob "$WORK/config.json")
jq -c --arg c "$config_digest" --argjson cs "$config_size" --arg l "$layer_digest" --argjson ls "$layer_size" \
    '.config.digest = $c | .config.size = $cs | .layers[0].digest = $l | .layers[0].size = $ls' \
    "$manifest" >"$WORK/manifest.json"
manifest_size=$(stat -c %s "$WORK/manifest.json")
manifest_digest=$(put_blob "$WORK/manifest.json")
jq --arg m "$manifest_digest" --argjson ms "$manifest_size" \
    '.manifests[0].digest = $m | .manifests[0].size = $ms' "$LAYOUT/index.json" >"$LAYOUT/index.json.new"
mv "$LAYOUT/index.json.new" "$LAYOUT/index.json"
umoci gc --layout "$LAYOUT"
# containerd names an imported image by this annotation (ref.name alone is only a tag).
jq --arg name "$NAME" '.manifests |= map(.annotations["io.containerd.image.name"] = $name)' \
    "$LAYOUT/index.json" >"$LAYOUT/index.json.new"
mv "$LAYOUT/index.json.new" "$LAYOUT/index.json"
mkdir -p "$(dirname "$ARCHIVE")"
tar -C "$LAYOUT" --sort=name --owner=0 --group=0 --numeric-owner -cf "$ARCHIVE.tmp" .
mv "$ARCHIVE.tmp" "$ARCHIVE"
echo "image/build.sh: $NAME ($(du -h "$ARCHIVE" | cut -f1)) in $ARCHIVE"
