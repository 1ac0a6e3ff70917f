#!/usr/bin/env bash
# tormr over Tor, measured on the private testnet in one run:
#   - bulk transfer of a bucket (default 256 MiB of incompressible bytes, like
#     sealed data) to and from a data layer onion service: tormr's parallel
#     ranged transfer (4 and 8 circuits) and one onion stream;
#   - the same file from a C tor onion service through C tor's own client
#     (curl over its SOCKS port): this network's native single-stream baseline;
#   - a 64 MiB word count (native Rust mapper/reducer) over Tor with a bulletin
#     and 2 workers as separate processes, against the same job in local mode.
#
#   bench/tor.sh [MIB]        (TORMR_TESTNET_DIR reuses a running testnet)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-256}
OUT=bench/out
mkdir -p "$OUT"
GEN=../shared/bench/gen_corpus.py

cargo build --release --bin tormr --examples
R="${CARGO_TARGET_DIR:-$PWD/target}"/release
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tormr-torbench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${own_net:-}" ] && "$R/tormr" testnet down --dir "$TORMR_TESTNET_DIR" >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT
if [ -z "${TORMR_TESTNET_DIR:-}" ]; then
    export TORMR_TESTNET_DIR="$scratch/testnet"
    own_net=1
    echo "==> bringing up the private Tor network"
    "$R/tormr" testnet up --dir "$TORMR_TESTNET_DIR" >/dev/null
fi
CONF="$TORMR_TESTNET_DIR/arti.toml"
results="$OUT/tor-results.jsonl"
: > "$results"

echo "==> C tor baseline: curl over C tor's SOCKS port from a C tor onion service"
head -c $((MIB << 20)) /dev/urandom > "$scratch/file.bin"
echo ok > "$scratch/ping.txt"
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
socks_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$scratch" && exec python3 -m http.server "$http_port" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
base=$(grep -E '^(TestingTorNetwork|DirAuthority|PathsNeededToBuildCircuits|TestingDirAuthVote|V3AuthNIntervalsValid)' "$TORMR_TESTNET_DIR/relay0/torrc")
for role in service client; do
    mkdir -p "$scratch/ctor-$role"
    chmod 700 "$scratch/ctor-$role"
    {
        echo "$base"
        echo "DataDirectory $scratch/ctor-$role"
        echo "Log notice file $scratch/ctor-$role/notice.log"
        echo "SafeLogging 0"
        echo "__OwningControllerProcess $$"
    } > "$scratch/ctor-$role/torrc"
done
printf 'SocksPort 0\nHiddenServiceDir %s\nHiddenServicePort 80 127.0.0.1:%s\n' "$scratch/ctor-service/hs" "$http_port" >> "$scratch/ctor-service/torrc"
printf 'SocksPort 127.0.0.1:%s\n' "$socks_port" >> "$scratch/ctor-client/torrc"
tor -f "$scratch/ctor-service/torrc" >/dev/null & pids+=($!)
tor -f "$scratch/ctor-client/torrc" >/dev/null & pids+=($!)
for _ in $(seq 120); do [ -f "$scratch/ctor-service/hs/hostname" ] && break; sleep 1; done
onion=$(cat "$scratch/ctor-service/hs/hostname")
# Wait until the service answers (a tiny file: python's server ignores
# Range, so probing the big one would time out forever), then time a full
# download.
for _ in $(seq 60); do
    curl -s --max-time 20 --socks5-hostname "127.0.0.1:$socks_port" -o /dev/null "http://$onion/ping.txt" && break
    sleep 2
done
start=$(date +%s.%N)
curl -s --socks5-hostname "127.0.0.1:$socks_port" -o "$scratch/ctor.out" "http://$onion/file.bin"
end=$(date +%s.%N)
cmp "$scratch/ctor.out" "$scratch/file.bin"
python3 -c "import json; s=$end-$start; print(json.dumps({'label': 'C tor client (curl over SOCKS), one stream', 'mib': $MIB, 'download_s': round(s,2), 'download_mib_s': round($MIB/s,2)}))" | tee -a "$results"
rm -f "$scratch/ctor.out"

echo "==> tormr transfers (one stream, then 4 and 8 circuits in parallel)"
TORMR_BENCH_MIB=$MIB cargo bench -p tormr-onion --bench transfer 2>/dev/null | grep '^{' | tee -a "$results"

echo "==> 64 MiB word count: local mode, then over Tor (bulletin and 2 workers as processes)"
corpus="$OUT/corpus-64.txt"
[ -f "$corpus" ] || python3 "$GEN" 64 "$corpus"
wc_job() { # CLUSTER-ARGS... -- OUTPUT
    "$R/tormr" submit "$@" -input "$corpus" -mapper wc-map -reducer wc-reduce -combiner wc-reduce \
        -file "$R/examples/wc-map" -file "$R/examples/wc-reduce" -D tormr.bucket.bytes=8m
}
start=$(date +%s.%N); wc_job --cluster 'local[2]' -output "$scratch/wc-local" 2>/dev/null; end=$(date +%s.%N)
python3 -c "import json; print(json.dumps({'label': 'wordcount 64 MiB, local[2]', 'seconds': round($end-$start,2)}))" | tee -a "$results"
"$R/tormr" bulletin serve --state "$scratch/bulletin" --tor-config "$CONF" > "$scratch/bulletin.addr" 2>/dev/null & pids+=($!)
for _ in $(seq 60); do [ -s "$scratch/bulletin.addr" ] && break; sleep 1; done
board=$(head -1 "$scratch/bulletin.addr")
for i in 1 2; do
    "$R/tormr" worker --bulletin "$board" --state "$scratch/worker$i" --tor-config "$CONF" --allow-unsandboxed-jobs 2>/dev/null & pids+=($!)
done
start=$(date +%s.%N)
wc_job --cluster "tor://$board" --workers 2 --tor-config "$CONF" -output "$scratch/wc-tor" 2>/dev/null
end=$(date +%s.%N)
python3 -c "import json; print(json.dumps({'label': 'wordcount 64 MiB, over Tor (2 worker processes)', 'seconds': round($end-$start,2)}))" | tee -a "$results"
cat "$scratch/wc-local"/part-* | cmp - <(cat "$scratch/wc-tor"/part-*) && echo "outputs identical"

python3 - "$results" <<'PY' | tee "$OUT/tor-results.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {r["label"]: r for r in rows}
print("| transfer | MiB | upload MiB/s | download MiB/s |")
print("|---|---:|---:|---:|")
for r in rows:
    if "mib" in r:
        print(f"| {r['label']} | {r['mib']} | {r.get('upload_mib_s', '—')} | {r['download_mib_s']} |")
print()
print("| job | seconds |")
print("|---|---:|")
for r in rows:
    if "seconds" in r:
        print(f"| {r['label']} | {r['seconds']} |")
par, one = by.get("tormr parallel transfer, 8 circuits"), by.get("one onion stream")
ctor = by.get("C tor client (curl over SOCKS), one stream")
loc, tor = by.get("wordcount 64 MiB, local[2]"), by.get("wordcount 64 MiB, over Tor (2 worker processes)")
print()
if par and one:
    print(f"- parallel / one stream, download: {par['download_mib_s'] / one['download_mib_s']:.2f} (target >= 4); upload: {par['upload_mib_s'] / one['upload_mib_s']:.2f}")
if par and ctor:
    print(f"- parallel / C tor single stream, download: {par['download_mib_s'] / ctor['download_mib_s']:.2f} (target >= 2)")
if loc and tor:
    print(f"- Tor-mode job / local-mode job, time: {tor['seconds'] / loc['seconds']:.2f} (target <= 3)")
PY
