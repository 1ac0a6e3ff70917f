#!/usr/bin/env bash
# Docker executor vs process executor, measured side by side in one run:
#   - per-task overhead: a word count (native Rust) over many tiny buckets, so
#     each task's own work is negligible and its time is the executor's
#     (container create, attach, start, first byte, wait, removal);
#   - a 64 MiB word count with the default buckets, with each executor.
# Rounds are interleaved (process, docker, process, docker…) and medians kept.
#
#   bench/executor.sh [ROUNDS]      (writes bench/out/executor-results.md)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --bin tormr --examples
R="${CARGO_TARGET_DIR:-$PWD/target}"/release
image=$(examples/images/native-wordcount.sh)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tormr-execbench.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
small="$scratch/small.txt"
python3 ../shared/bench/gen_corpus.py 1 "$small" 2>/dev/null || head -c 1048576 /dev/urandom | base64 > "$small"
big="$OUT/corpus-64.txt"
[ -f "$big" ] || python3 ../shared/bench/gen_corpus.py 64 "$big"

job() { # EXECUTOR INPUT BUCKET -> prints seconds and map task count
    local exec=$1 input=$2 bucket=$3 out="$scratch/out-$RANDOM$RANDOM"
    local args=(-mapper wc-map -reducer wc-reduce -combiner wc-reduce -numReduceTasks 2 -D "tormr.bucket.bytes=$bucket")
    if [ "$exec" = docker ]; then args+=(--image "$image"); else args+=(-file "$R/examples/wc-map" -file "$R/examples/wc-reduce"); fi
    local start end
    start=$(date +%s.%N)
    "$R/tormr" submit --cluster 'local[2]' -input "$input" -output "$out" "${args[@]}" --json > "$scratch/summary.json" 2>/dev/null
    end=$(date +%s.%N)
    python3 - "$scratch/summary.json" "$start" "$end" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
# Executor runs: each map task runs the mapper and the combiner, each
# reduce task the reducer.
n = sum(p["tasks"] * (2 if p["phase"] == "map" else 1) for p in d["phases"])
print(f"{float(sys.argv[3]) - float(sys.argv[2]):.3f} {n}")
PY
    cat "$out"/part-* | md5sum | cut -d' ' -f1 > "$scratch/digest-$exec-$bucket"
    rm -rf "$out"
}

results="$OUT/executor-results.jsonl"
: > "$results"
for round in $(seq "$ROUNDS"); do
    for exec in process docker; do
        read -r secs tasks < <(job "$exec" "$small" 16k)
        echo "{\"round\": $round, \"executor\": \"$exec\", \"job\": \"1 MiB in 16 KiB buckets\", \"seconds\": $secs, \"runs\": $tasks}" | tee -a "$results"
        read -r secs tasks < <(job "$exec" "$big" 64m)
        echo "{\"round\": $round, \"executor\": \"$exec\", \"job\": \"64 MiB, 64 MiB buckets\", \"seconds\": $secs, \"runs\": $tasks}" | tee -a "$results"
    done
done
cmp "$scratch/digest-process-16k" "$scratch/digest-docker-16k" && cmp "$scratch/digest-process-64m" "$scratch/digest-docker-64m" && echo "outputs identical"

python3 - "$results" <<'PY' | tee "$OUT/executor-results.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
jobs = sorted({r["job"] for r in rows})
med = lambda job, ex: statistics.median(r["seconds"] for r in rows if r["job"] == job and r["executor"] == ex)
tasks = lambda job: max(r["runs"] for r in rows if r["job"] == job)
print("| job | executor runs | process s (median) | docker s (median) | docker / process | overhead per run |")
print("|---|---:|---:|---:|---:|---:|")
for job in jobs:
    p, d, n = med(job, "process"), med(job, "docker"), tasks(job)
    per = f"{(d - p) / n * 1000:.0f} ms" if n else "—"
    print(f"| {job} | {n} | {p:.2f} | {d:.2f} | {d / p:.2f} | {per} |")
PY
