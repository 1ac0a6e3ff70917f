#!/usr/bin/env bash
# Docker executor vs process executor, measured side by side in one run:
#   - per-task overhead: a word count (native Rust) over many tiny buckets, so
#     each task's own work is negligible and its time is the executor's
#     (container create, attach, start, first byte, wait, removal);
#   - a 64 MiB word count with the default buckets, with each executor.
# Rounds are interleaved (process, docker, process, docker…) and medians kept.
#
# and, from the executor's debug log, the phases of one container run.
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
    case $exec in
        docker) args+=(--image "$image") ;;
        docker-fresh) args+=(--image "$image" -D tormr.container.reuse=false) ;;
        *) args+=(-file "$R/examples/wc-map" -file "$R/examples/wc-reduce") ;;
    esac
    local start end
    start=$(date +%s.%N)
    # Each container run logs where its time went (debug level, one line).
    RUST_LOG=warn,tormr_worker::executor::docker=debug \
        "$R/tormr" submit --cluster 'local[2]' -input "$input" -output "$out" "${args[@]}" --json > "$scratch/summary.json" 2>> "$scratch/phases-$exec-$bucket.log"
    end=$(date +%s.%N)
    python3 - "$scratch/summary.json" "$start" "$end" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
# Executor runs: each map task runs the mapper, then the combiner once per
# partition; each reduce task runs the reducer.
maps = sum(p["tasks"] for p in d["phases"] if p["phase"] == "map")
reduces = sum(p["tasks"] for p in d["phases"] if p["phase"] == "reduce")
n = maps * (1 + reduces) + reduces
print(f"{float(sys.argv[3]) - float(sys.argv[2]):.3f} {n}")
PY
    cat "$out"/part-* | md5sum | cut -d' ' -f1 > "$scratch/digest-$exec-$bucket"
    rm -rf "$out"
}

results="$OUT/executor-results.jsonl"
: > "$results"
for round in $(seq "$ROUNDS"); do
    for exec in process docker docker-fresh; do
        read -r secs tasks < <(job "$exec" "$small" 16k)
        echo "{\"round\": $round, \"executor\": \"$exec\", \"job\": \"1 MiB in 16 KiB buckets\", \"seconds\": $secs, \"runs\": $tasks}" | tee -a "$results"
        read -r secs tasks < <(job "$exec" "$big" 64m)
        echo "{\"round\": $round, \"executor\": \"$exec\", \"job\": \"64 MiB, 64 MiB buckets\", \"seconds\": $secs, \"runs\": $tasks}" | tee -a "$results"
    done
done
for size in 16k 64m; do
    cmp "$scratch/digest-process-$size" "$scratch/digest-docker-$size"
    cmp "$scratch/digest-process-$size" "$scratch/digest-docker-fresh-$size"
done
echo "outputs identical"

python3 - "$results" <<'PY' | tee "$OUT/executor-results.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
jobs = sorted({r["job"] for r in rows})
med = lambda job, ex: statistics.median(r["seconds"] for r in rows if r["job"] == job and r["executor"] == ex)
tasks = lambda job: max(r["runs"] for r in rows if r["job"] == job)
print("| job | executor runs | process s | docker, kept containers s | docker, fresh containers s | kept / process | fresh / process | fresh / kept | overhead per run, kept | fresh |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for job in jobs:
    p, k, f, n = med(job, "process"), med(job, "docker"), med(job, "docker-fresh"), tasks(job)
    per = lambda d: f"{(d - p) / n * 1000:.0f} ms" if n else "—"
    print(f"| {job} | {n} | {p:.2f} | {k:.2f} | {f:.2f} | {k / p:.2f} | {f / p:.2f} | {f / k:.2f} | {per(k)} | {per(f)} |")
PY

# Where one run's time goes (all docker rounds of the tiny buckets), for
# fresh containers and for kept ones (where "create" is taking or making the
# container, "start" starting the exec, "remove" checking it fresh).
for exec in docker-fresh docker; do
python3 - "$scratch/phases-$exec-16k.log" "$exec" <<'PY' | tee -a "$OUT/executor-results.md"
import re, statistics, sys
rows = [[float(x) for x in re.findall(r"(-?[\d.]+) ms", l)]
        for l in open(sys.argv[1]) if "container run phases" in l]
names = ["create", "attach", "start", "start → first byte", "start → exit", "remove / give back"]
print()
print(f"| {sys.argv[2]} run phase ({len(rows)} runs) | median ms | mean ms |")
print("|---|---:|---:|")
for i, name in enumerate(names):
    v = [r[i] for r in rows if r[i] >= 0]
    print(f"| {name} | {statistics.median(v):.1f} | {statistics.mean(v):.1f} |")
PY
done
