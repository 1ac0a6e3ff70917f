#!/usr/bin/env bash
# Builds the image the Docker executor's tests run hostile code in: a static
# busybox (sh, nc, wget, sleep, …) and nothing else, made offline with
# `docker import` from Debian's busybox-static. Prints the image name; does
# nothing when the image already exists.
set -euo pipefail
IMAGE=${1:-tormr-test-busybox:1}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
fi
busybox=$(command -v busybox || true)
# ldd fails on a static binary: that is the one we can copy alone.
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    echo "a static busybox is needed to build $IMAGE: apt-get install busybox-static" >&2
    exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/job" "$root/etc"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo 'nobody:x:65534:65534:nobody:/tmp:/bin/sh' > "$root/etc/passwd"
echo 'nogroup:x:65534:' > "$root/etc/group"
tar -C "$root" -c . | docker import - "$IMAGE" >/dev/null
echo "$IMAGE"
