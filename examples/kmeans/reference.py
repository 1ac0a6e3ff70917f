#!/usr/bin/env python3
"""K-means without MapReduce: the centroids run_kmeans.py must print.

Usage: reference.py [--k K] [--iterations N] POINTS_FILE
Runs the same N iterations in one process, with the same initial centroids
(the first K points), the same exact arithmetic and rounding
(kmeans_common.py) and the same rule for empty clusters, and prints
"cid<TAB>x,y,count" lines.
"""
import argparse
import os
import sys
from decimal import Decimal

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmeans_common import fmt, mean, nearest, parse_point  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("points")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--iterations", type=int, default=6)
    args = p.parse_args()

    with open(args.points) as f:
        points = [parse_point(line.strip()) for line in f if line.strip()]
    centroids = {cid: points[cid] for cid in range(args.k)}
    counts = {cid: 0 for cid in range(args.k)}
    for _ in range(args.iterations):
        sums = {}
        for pt in points:
            s = sums.setdefault(nearest(centroids, pt), [Decimal(0), Decimal(0), 0])
            s[0] += pt[0]
            s[1] += pt[1]
            s[2] += 1
        counts = {cid: 0 for cid in centroids}
        for cid, (sx, sy, n) in sums.items():
            centroids[cid] = mean(sx, sy, n)
            counts[cid] = n
    for cid in sorted(centroids):
        x, y = centroids[cid]
        sys.stdout.write("%d\t%s,%s,%d\n" % (cid, fmt(x), fmt(y), counts[cid]))


if __name__ == "__main__":
    main()
