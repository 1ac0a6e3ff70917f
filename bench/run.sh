#!/usr/bin/env bash
# tormr's throughput benchmark: one table, every row measured in this run on
# this machine, on the deterministic corpus from ../shared/bench/gen_corpus.py.
#
#   bench/run.sh [SIZE_MB] [SLICE_MB]     (defaults 1024 and 128)
#
# Rows on the full corpus: a tight single-process Rust count (the near-limit),
# tormr local[2] with the native Rust word count, and with Python Streaming
# scripts. Rows on a slice (the slow peers): tormr native again for the
# ratios, a Dask bag on 2 processes, PySpark local[2], and mrjob's own
# mr_word_freq_count.py through tormr and through mrjob's local runner.
# Python peers are installed into bench/out/venv from PyPI.
set -euo pipefail
# This sandbox exports PYTHONUNBUFFERED=1, which makes every Python peer (and
# every Python task) issue one write() per output token; no user machine runs
# like that, so the benchmark measures every row without it.
unset PYTHONUNBUFFERED
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1024}
SLICE_MB=${2:-128}
OUT=bench/out
mkdir -p "$OUT"
GEN=../shared/bench/gen_corpus.py
[ -f "$GEN" ] || { echo "bench needs $GEN (the shared corpus generator) beside the repository" >&2; exit 1; }

corpus="$OUT/corpus-${SIZE_MB}.txt"
slice="$OUT/corpus-${SLICE_MB}.txt"
[ -f "$corpus" ] || { echo "==> generating a ${SIZE_MB} MiB corpus"; python3 "$GEN" "$SIZE_MB" "$corpus"; }
[ -f "$slice" ] || { echo "==> generating a ${SLICE_MB} MiB corpus"; python3 "$GEN" "$SLICE_MB" "$slice"; }

echo "==> building tormr (release)"
cargo build --release --bin tormr --examples
R=target/release

venv="$OUT/venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "==> installing the Python peers (pyspark, dask, mrjob) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet pyspark 'dask[bag]' mrjob
fi
command -v java >/dev/null || echo "warning: no java on PATH; the PySpark row will fail" >&2
PY="$PWD/$venv/bin/python"
MRJOB_WFC=$("$PY" -c 'import mrjob.examples.mr_word_freq_count as m; print(m.__file__)')

results="$OUT/results.jsonl"
: > "$results"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tormr-bench.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
size() { stat -L -c %s "$1"; }
measure() { # LABEL INPUT -- CMD...
    local label=$1 input=$2; shift 2
    echo "==> $label"
    python3 bench/measure.py "$label" "$(size "$input")" "$@" | tee -a "$results"
}
tormr_native() { # INPUT OUTPUT
    "$R/tormr" submit --cluster 'local[2]' -input "$1" -output "$2" -mapper wc-map -reducer wc-reduce \
        -file "$R/examples/wc-map" -file "$R/examples/wc-reduce"
}
export -f tormr_native
export R

# The machine is shared and noisy: the fast rows run ROUNDS times, interleaved
# so drift hits every row alike, and the table reports medians.
ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
    echo "==> round $round of $ROUNDS"
    rm -rf "$scratch"/native "$scratch"/native-slice "$scratch"/dask "$scratch"/spark
    measure "rust single process (near-limit)" "$corpus" -- "$R/examples/wc-tight" "$corpus"
    measure "tormr local[2] native rust" "$corpus" -- bash -c "tormr_native '$corpus' '$scratch/native'"
    measure "tormr local[2] native rust (slice)" "$slice" -- bash -c "tormr_native '$slice' '$scratch/native-slice'"
    measure "dask bag, 2 processes (slice)" "$slice" -- "$PY" bench/wc_dask.py "$slice" "$scratch/dask"
    measure "pyspark local[2] (slice)" "$slice" -- "$PY" bench/wc_pyspark.py "$slice" "$scratch/spark"
done
# The slow rows once each (minutes apiece).
measure "tormr local[2] python streaming" "$corpus" -- "$R/tormr" submit --cluster 'local[2]' -input "$corpus" -output "$scratch/py" \
    -mapper "$PY mapper.py" -reducer "$PY reducer.py" -combiner "$PY reducer.py" \
    -file examples/wordcount/mapper.py -file examples/wordcount/reducer.py
measure "tormr local[2] mrjob mr_word_freq_count (slice)" "$slice" -- "$R/tormr" submit --cluster 'local[2]' --python "$PY" \
    --mrjob "$MRJOB_WFC" -input "$slice" -output "$scratch/mrjob-tormr"
measure "mrjob local runner mr_word_freq_count (slice)" "$slice" -- "$PY" "$MRJOB_WFC" -r local --no-conf "$slice" -o "$scratch/mrjob-local"

echo "==> checking every word count against the single-process count"
"$R/examples/wc-tight" "$corpus" | LC_ALL=C sort > "$scratch/expected-full"
"$R/examples/wc-tight" "$slice" | LC_ALL=C sort > "$scratch/expected-slice"
for d in native py; do cat "$scratch/$d"/part-* | LC_ALL=C sort | cmp -s - "$scratch/expected-full" || echo "MISMATCH: $d" >&2; done
for d in native-slice dask spark; do cat "$scratch/$d"/part* | LC_ALL=C sort | cmp -s - "$scratch/expected-slice" || echo "MISMATCH: $d" >&2; done
for d in mrjob-tormr mrjob-local; do
    cat "$scratch/$d"/part* | "$PY" -c 'import sys, json
for l in sys.stdin:
    k, v = l.rstrip("\n").split("\t"); print("%s\t%s" % (json.loads(k), v))' | LC_ALL=C sort | cmp -s - "$scratch/expected-slice" || echo "MISMATCH: $d" >&2
done

python3 bench/table.py "$results" | tee "$OUT/results.md"
