#!/usr/bin/env bash
# Builds the example image `tormr-example/wordcount-native`: the native Rust
# word count (wc-map, wc-reduce) as static binaries in an image made from
# scratch, offline (no registry): rustc links them statically, and the image
# is a two-file root filesystem given to `docker import`. Tagged with a digest
# of the sources, so a second run with the same sources builds nothing.
# Prints the image name.
#
#   examples/images/native-wordcount.sh
#   tormr submit --cluster 'local[2]' --image "$(examples/images/native-wordcount.sh)" \
#       -input corpus.txt -output out -mapper wc-map -reducer wc-reduce -combiner wc-reduce
set -euo pipefail
cd "$(dirname "$0")/../native"
command -v rustc >/dev/null || { echo "rustc is needed: install Rust from https://rustup.rs" >&2; exit 1; }
docker version >/dev/null 2>&1 || { echo "no Docker engine answers: start it (systemctl start docker)" >&2; exit 1; }
tag=$(cat wc_map.rs wc_reduce.rs words.rs | sha256sum | cut -c1-12)
image="tormr-example/wordcount-native:$tag"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
host=$(rustc -vV | sed -n 's/^host: //p')
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin"
for prog in wc_map wc_reduce; do
    echo "compiling $prog (static, $host)" >&2
    rustc --edition 2021 -O -C target-feature=+crt-static --target "$host" \
        -o "$root/usr/local/bin/${prog/_/-}" "$prog.rs"
done
# No shell, no libc, nothing else: the commands must be plain words.
tar -C "$root" -c --owner=0 --group=0 . | docker import - "$image" >/dev/null
echo "$image"
