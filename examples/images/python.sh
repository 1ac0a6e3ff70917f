#!/usr/bin/env bash
# Builds the example image `tormr-example/python`: a minimal Debian rootfs
# (debootstrap --variant=minbase) with python3 and mrjob, for the Python
# Streaming and mrjob examples, made without any registry: debootstrap reads
# Debian's package archive, pip reads PyPI, and `docker import` turns the
# folder into an image. Tagged with a digest of this script and the mrjob
# version, so a second run builds nothing. Prints the image name.
#
#   image=$(examples/images/python.sh)
#   tormr submit --cluster 'local[2]' --image "$image" -input corpus.txt -output out \
#       -mapper 'python3 mapper.py' -reducer 'python3 reducer.py' \
#       -file examples/wordcount/mapper.py -file examples/wordcount/reducer.py
set -euo pipefail
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MRJOB=${MRJOB:-0.7.4}
docker version >/dev/null 2>&1 || { echo "no Docker engine answers: start it (systemctl start docker)" >&2; exit 1; }
tag=$( (cat "$0"; echo "$SUITE $MRJOB") | sha256sum | cut -c1-12)
image="tormr-example/python:$tag"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing debootstrap" >&2
        apt-get install -y -qq debootstrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq debootstrap; } >&2
    else
        echo "debootstrap is needed to build $image: sudo apt-get install debootstrap" >&2
        exit 1
    fi
fi
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root to build $image" >&2; exit 1; }
root=$(mktemp -d "${TMPDIR:-/tmp}/tormr-python-image.XXXXXX")
trap 'rm -rf "$root"' EXIT
echo "debootstrap $SUITE (minbase + python3) into $root; a few minutes" >&2
debootstrap --variant=minbase --include=python3,python3-distutils "$SUITE" "$root" "$MIRROR" >&2
# mrjob is pure Python (it needs distutils, a separate package in Debian);
# its optional YAML support is left out.
py=$(chroot "$root" python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
echo "installing mrjob $MRJOB for $py" >&2
python3 -m pip install --quiet --no-deps --no-compile --target "$root/usr/local/lib/$py/dist-packages" "mrjob==$MRJOB" >&2
chroot "$root" python3 -c 'import mrjob' >&2
# Keep the image small: no package caches, docs or locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "$image"
