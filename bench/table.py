#!/usr/bin/env python3
"""Turn bench/out/results.jsonl into the benchmark's markdown table and ratios.
Rows measured several times are reported by their median run."""
import json
import statistics
import sys

runs = {}
for r in map(json.loads, open(sys.argv[1])):
    runs.setdefault(r["label"], []).append(r)


def median_run(rs):
    ordered = sorted(rs, key=lambda r: r["seconds"])
    return ordered[len(ordered) // 2]


rows = {label: median_run(rs) for label, rs in runs.items()}


def rate(r):
    return r["input_mib"] / r["seconds"]


print("| run | input MiB | runs | seconds (median) | min–max | MiB/s | peak RSS MiB (process tree, max) | exit |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for label, r in rows.items():
    secs = [x["seconds"] for x in runs[label]]
    rss = max(x["peak_rss_mib"] for x in runs[label])
    fails = max(x["exit"] for x in runs[label])
    print(f"| {label} | {r['input_mib']:.0f} | {len(secs)} | {r['seconds']:.2f} | {min(secs):.2f}–{max(secs):.2f} | {rate(r):.1f} | {rss:.0f} | {fails} |")


def ratio(text, a, b):
    if a in rows and b in rows:
        print(f"- {text}: {rate(rows[a]) / rate(rows[b]):.2f}")


print()
print("Ratios of median throughputs, same run:")
ratio("tormr native / single-process Rust (target >= 0.5)", "tormr local[2] native rust", "rust single process (near-limit)")
ratio("tormr native / Dask bag (target >= 5)", "tormr local[2] native rust (slice)", "dask bag, 2 processes (slice)")
ratio("tormr native / PySpark", "tormr local[2] native rust (slice)", "pyspark local[2] (slice)")
ratio("tormr mrjob / mrjob local runner (target >= 1.5)", "tormr local[2] mrjob mr_word_freq_count (slice)", "mrjob local runner mr_word_freq_count (slice)")
ratio("tormr python streaming / single-process Rust", "tormr local[2] python streaming", "rust single process (near-limit)")
