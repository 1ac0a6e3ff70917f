#!/usr/bin/env python3
"""Writes the k-means input: N points "x,y" (4 decimals) drawn around K random
centres, deterministically from SEED.

Usage: make_points.py [N [K [SEED]]]   (defaults: 2000 4 7)

    python3 examples/kmeans/make_points.py 2000 4 7 > points.txt
"""
import random
import sys


def main(argv):
    if len(argv) > 3:
        sys.exit(__doc__)
    n = int(argv[0]) if len(argv) > 0 else 2000
    k = int(argv[1]) if len(argv) > 1 else 4
    seed = int(argv[2]) if len(argv) > 2 else 7
    rng = random.Random(seed)
    centres = [(rng.uniform(-10, 10), rng.uniform(-10, 10)) for _ in range(k)]
    for _ in range(n):
        cx, cy = rng.choice(centres)
        sys.stdout.write("%.4f,%.4f\n" % (rng.gauss(cx, 1.5), rng.gauss(cy, 1.5)))


if __name__ == "__main__":
    main(sys.argv[1:])
